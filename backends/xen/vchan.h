// The vchan platform boundary: a libxenvchan server as an interface shaped
// after its API (libxenvchan_server_init, fd_for_select, wait, is_open,
// data_ready, buffer_space, nonblocking read/write, close). Two
// implementations: real_vchan (libxenvchan, built when libxen-dev is found)
// and the simulation in tests/support/xen/sim_vchan, which speaks the same
// shared-ring protocol (struct vchan_interface) over simulated grants,
// event channels and xenstore.
//
// Thread affinity: loop thread. fd() becomes readable when the peer
// notified; wait() consumes that event.
#pragma once

#include <cstddef>
#include <memory>
#include <span>
#include <string>

#include "backends/xen/platform.h"

namespace vtpm::xen {

// libxenvchan_is_open() for a server.
enum class VchanState : std::uint8_t { kClosed = 0, kConnected = 1, kWaiting = 2 };

inline const char* vchan_state_name(VchanState state) {
  switch (state) {
    case VchanState::kConnected: return "connected";
    case VchanState::kWaiting: return "waiting";
    case VchanState::kClosed: break;
  }
  return "closed";
}

struct VchanServerParams {
  DomId client = 0;      // the only domain that may connect
  std::string xs_path;   // ring-ref and event-channel are published here
  std::size_t read_min = 4096;   // the left ring (client writes, server reads)
  std::size_t write_min = 4096;  // the right ring (server writes, client reads)
};

// One server end. Destruction is libxenvchan_close: the client sees the
// server gone, the pages are unshared, the port closed, the xenstore
// nodes removed.
class VchanServer {
 public:
  virtual ~VchanServer() = default;
  virtual int fd() const = 0;
  // Consumes the pending notification (the fd must be readable).
  virtual Status wait() = 0;
  virtual VchanState state() const = 0;
  // Both ask the peer for a notification when the value changes.
  virtual std::size_t data_ready() = 0;
  virtual std::size_t buffer_space() = 0;
  // Nonblocking: as much as fits / is there (0 is no error); an error once
  // the client has closed and nothing is left to read.
  virtual Result<std::size_t> read(std::span<std::uint8_t> out) = 0;
  virtual Result<std::size_t> write(std::span<const std::uint8_t> in) = 0;
};

class Vchans {
 public:
  virtual ~Vchans() = default;
  virtual Result<std::unique_ptr<VchanServer>> server_init(const VchanServerParams& params) = 0;
};

}  // namespace vtpm::xen
