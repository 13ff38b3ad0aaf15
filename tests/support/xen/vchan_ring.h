// The vchan shared-ring protocol (Xen's libxenvchan, struct vchan_interface
// in <xen/io/libxenvchan.h>) as both ends speak it: a header page with two
// producer/consumer index pairs (left: client -> server, right: server ->
// client), the ring orders, liveness bytes and notification-request bits,
// then the grant list; rings of order 10/11 live inside the header page,
// larger ones in pages of their own. The layout is mirrored here so the
// simulation builds without libxen-dev; it is checked against the real
// header when that is installed.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <span>

#include "proto/result.h"

namespace vtpm::xen::sim {

namespace vchan_layout {
inline constexpr std::size_t kLeftCons = 0, kLeftProd = 4, kRightCons = 8, kRightProd = 12;
inline constexpr std::size_t kLeftOrder = 16, kRightOrder = 18;
inline constexpr std::size_t kCliLive = 20, kSrvLive = 21, kCliNotify = 22, kSrvNotify = 23;
inline constexpr std::size_t kGrants = 24;
inline constexpr std::uint8_t kNotifyWrite = 1, kNotifyRead = 2;
inline constexpr int kPageShift = 12;
inline constexpr int kSmallRingShift = 10, kLargeRingShift = 11;  // in-page rings
inline constexpr std::size_t kSmallRingOffset = 1024, kLargeRingOffset = 2048;
inline constexpr int kMaxRingShift = 20;
}  // namespace vchan_layout

// One end's reads and writes on a mapped vchan, with libxenvchan's
// notification discipline: a reader that finds too little data asks for a
// WRITE notification, a writer that finds too little space asks for a READ
// one, and each side sends an event only when the other asked.
class VchanIo {
 public:
  struct Ring {
    std::size_t cons_offset = 0;  // in the header page
    std::size_t prod_offset = 0;
    std::uint8_t* buffer = nullptr;
    int order = 0;
  };
  VchanIo(std::uint8_t* header, bool server, Ring read, Ring write, std::function<Status()> notify)
      : header_(header), server_(server), read_(read), write_(write), notify_(std::move(notify)) {}

  // libxenvchan_is_open: the peer's liveness byte (a server: 2 while no
  // client has come yet).
  std::uint8_t peer_live() const;
  std::size_t data_ready();
  std::size_t buffer_space();
  // Nonblocking stream read/write: how much was moved; an error when the
  // peer is gone (read: and nothing is left).
  Result<std::size_t> read(std::span<std::uint8_t> out);
  Result<std::size_t> write(std::span<const std::uint8_t> in);

 private:
  std::uint32_t load(std::size_t offset) const;
  void store(std::size_t offset, std::uint32_t value);
  std::size_t raw_ready() const;
  std::size_t raw_space() const;
  void request_notify(std::uint8_t bit);
  Status send_notify(std::uint8_t bit);

  std::uint8_t* header_;
  bool server_;
  Ring read_;
  Ring write_;
  std::function<Status()> notify_;
};

}  // namespace vtpm::xen::sim
