#include "backends/xen/real_vchan.h"

#include <fcntl.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

#include <sys/ioctl.h>

extern "C" {
#include <libxenvchan.h>
#include <xen/sys/gntalloc.h>
}

namespace vtpm::xen {
namespace {

class RealVchanServer final : public VchanServer {
 public:
  explicit RealVchanServer(libxenvchan* ctrl) : ctrl_(ctrl) {
    ctrl_->blocking = 0;
    const int fd = libxenvchan_fd_for_select(ctrl_);
    ::fcntl(fd, F_SETFL, ::fcntl(fd, F_GETFL) | O_NONBLOCK);  // wait() must not block the loop
  }
  ~RealVchanServer() override { libxenvchan_close(ctrl_); }
  RealVchanServer(const RealVchanServer&) = delete;
  RealVchanServer& operator=(const RealVchanServer&) = delete;

  int fd() const override { return libxenvchan_fd_for_select(ctrl_); }
  Status wait() override {
    if (libxenvchan_wait(ctrl_) < 0 && errno != EAGAIN) {
      return make_error(ErrorCode::kIo, std::string("libxenvchan_wait: ") + std::strerror(errno));
    }
    return Status::success();
  }
  VchanState state() const override {
    switch (libxenvchan_is_open(ctrl_)) {
      case 1: return VchanState::kConnected;
      case 2: return VchanState::kWaiting;
      default: return VchanState::kClosed;
    }
  }
  std::size_t data_ready() override { return static_cast<std::size_t>(std::max(0, libxenvchan_data_ready(ctrl_))); }
  std::size_t buffer_space() override { return static_cast<std::size_t>(std::max(0, libxenvchan_buffer_space(ctrl_))); }
  Result<std::size_t> read(std::span<std::uint8_t> out) override {
    const int n = libxenvchan_read(ctrl_, out.data(), out.size());
    if (n < 0) return make_error(ErrorCode::kIo, "vchan closed by the client");
    return static_cast<std::size_t>(n);
  }
  Result<std::size_t> write(std::span<const std::uint8_t> in) override {
    const int n = libxenvchan_write(ctrl_, in.data(), in.size());
    if (n < 0) return make_error(ErrorCode::kIo, "vchan closed by the client");
    return static_cast<std::size_t>(n);
  }

 private:
  libxenvchan* ctrl_;
};

class RealVchans final : public Vchans {
 public:
  Result<std::unique_ptr<VchanServer>> server_init(const VchanServerParams& p) override {
    libxenvchan* ctrl = libxenvchan_server_init(nullptr, p.client, p.xs_path.c_str(), p.read_min, p.write_min);
    if (ctrl == nullptr) {
      return make_error(ErrorCode::kUnavailable, "libxenvchan_server_init(domain " + std::to_string(p.client) + ", " +
                                                     p.xs_path + "): " + std::strerror(errno) +
                                                     " (is the xen-gntalloc module loaded?)");
    }
    return std::unique_ptr<VchanServer>(std::make_unique<RealVchanServer>(ctrl));
  }
};

}  // namespace

std::unique_ptr<Vchans> open_real_vchans() { return std::make_unique<RealVchans>(); }

std::vector<unsigned long> vchan_ioctls() {
  return {IOCTL_GNTALLOC_ALLOC_GREF, IOCTL_GNTALLOC_DEALLOC_GREF, IOCTL_GNTALLOC_SET_UNMAP_NOTIFY,
          IOCTL_EVTCHN_BIND_UNBOUND_PORT};
}

}  // namespace vtpm::xen
