// A raw TPM-packet channel over one vchan, for a client in another domain
// (a stub domain, a tool) that prefers it to tpmif: TPM packets in (framed
// as on swtpm's data channel, proto/tpm_stream), responses out, one
// command in flight, through Service like every channel. The server is
// polled on the loop; a response larger than the free ring space is
// written as the client frees it. When the client closes (or breaks the
// framing, which is logged and costs only its own connection) the server
// is closed and created again at the same xenstore path for the next
// client.
//
// Thread affinity: loop thread.
#pragma once

#include <uv.h>

#include <memory>
#include <string>
#include <vector>

#include "backends/xen/vchan.h"
#include "src/core/log.h"
#include "src/core/read_buffer.h"
#include "src/core/service.h"
#include "src/core/uv_handle.h"

namespace vtpm::xen {

// The persisted per-instance setting (JSON in the instance's record).
struct VchanSpec {
  DomId client = 0;
  std::string xs_path;
  std::size_t read_min = 4096;   // ring sizes, as libxenvchan_server_init takes them
  std::size_t write_min = 4096;

  std::string to_json() const;
  static Result<VchanSpec> from_json(const std::string& text);
};

struct VchanStatus {
  VchanSpec spec;
  VchanState state = VchanState::kClosed;
  std::uint64_t connections = 0;  // clients that connected so far
  std::uint64_t commands = 0;
  std::uint64_t refused = 0;      // connections closed for breaking the framing
  std::string error;              // why no server is up (state closed), if so
};

class VchanChannel : public std::enable_shared_from_this<VchanChannel> {
 public:
  VchanChannel(uv_loop_t* loop, const Logger& log, Service& service, Vchans& vchans, Uuid id, VchanSpec spec);
  ~VchanChannel();
  VchanChannel(const VchanChannel&) = delete;
  VchanChannel& operator=(const VchanChannel&) = delete;

  // Creates the server (published in xenstore) and polls it.
  Status open();
  VchanStatus status() const;

 private:
  void on_readable();
  void pump();
  // Writes what fits of the pending response.
  bool flush();
  // Reads and starts the next command, if one is complete.
  void next_command();
  void refuse(const std::string& why, std::uint32_t rc);
  // Closes the server and creates the next one (the client left).
  void reopen();
  void shut();
  std::string who() const;

  uv_loop_t* loop_;
  const Logger& log_;
  Service& service_;
  Vchans& vchans_;
  Uuid id_;
  VchanSpec spec_;
  std::unique_ptr<VchanServer> server_;
  std::unique_ptr<UvHandle<uv_poll_t>> poll_;
  std::uint64_t generation_ = 0;  // per server: answers for an earlier client are dropped
  ReadBuffer in_;
  std::vector<std::uint8_t> out_;
  bool busy_ = false;
  bool connected_ = false;
  std::uint64_t connections_ = 0;
  std::uint64_t commands_ = 0;
  std::uint64_t refused_ = 0;
  std::string error_;
};

}  // namespace vtpm::xen
