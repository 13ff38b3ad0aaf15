// A libxenvchan client in another domain (a stub domain, a tool), as
// libxenvchan_client_init/read/write/close behave: read ring-ref and
// event-channel under the server's xs_path (xenstore permissions apply),
// bind the event channel, map the header page with an unmap notification
// on cli_live, check the orders, map the rings (the read ring read-only),
// mark itself live, ask for write notifications and wake the server.
// Destruction is libxenvchan_close (or a crash: the unmap notification
// clears cli_live and notifies either way).
//
// On top, what a TPM client does: send() queues a packet, pump() moves
// bytes both ways without blocking, and a whole TPM response is picked
// off the stream by its header's size.
#pragma once

#include <deque>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "tests/support/xen/sim_xen.h"
#include "tests/support/xen/vchan_ring.h"

namespace vtpm::xen::sim {

class VchanClient {
 public:
  static Result<std::unique_ptr<VchanClient>> connect(Hypervisor& hv, DomId self, DomId server, const std::string& xs_path);
  ~VchanClient();
  VchanClient(const VchanClient&) = delete;
  VchanClient& operator=(const VchanClient&) = delete;

  // libxenvchan_is_open from the client's side: the server's srv_live.
  bool server_open() const { return io_->peer_live() != 0; }
  Result<std::size_t> read(std::span<std::uint8_t> out) { return io_->read(out); }
  Result<std::size_t> write(std::span<const std::uint8_t> in) { return io_->write(in); }
  std::size_t buffer_space() { return io_->buffer_space(); }
  // An event with nothing behind it (an event storm is many of these).
  Status notify();
  std::uint8_t* header() const { return header_->data(); }

  void send(std::vector<std::uint8_t> bytes);
  // One non-blocking round; true once a whole TPM response is buffered.
  bool pump();
  std::optional<std::vector<std::uint8_t>> take_response();
  bool failed() const { return failed_; }  // the server went away under us
  std::size_t unsent() const { return outbox_.size(); }
  std::size_t partial_writes() const { return partial_writes_; }

 private:
  VchanClient() = default;
  std::optional<std::size_t> buffered_response_size() const;

  std::unique_ptr<SimEvents> events_;
  Port port_ = 0;
  std::unique_ptr<PageRun> header_;
  std::unique_ptr<PageRun> write_ring_, read_ring_;
  std::unique_ptr<VchanIo> io_;
  std::deque<std::uint8_t> outbox_;
  std::vector<std::uint8_t> inbox_;
  bool failed_ = false;
  std::size_t partial_writes_ = 0;
};

}  // namespace vtpm::xen::sim
