// Xen tpmif v2: the single shared page between a guest's xen-tpmfront and
// the vTPM backend (Xen public/io/tpmif.h). Host byte order throughout.
//
//   0  u32 length          request (front->back) / response (back->front)
//   4  u8  state           PageState
//   5  u8  locality        of the current request
//   6  u8  pad
//   7  u8  nr_extra_pages  grant refs that follow; never implemented by any
//                          frontend, so vtpmd maps none of them
//   8  u32 extra_pages[n]
//   8+4n   TPM packet (big-endian TCG command or response)
//
// The page is writable by the guest at any time: every guest-writable field
// is fetched exactly once into a local copy (take_request), and a length or
// offset that would leave the page is refused, never followed. Pure: the
// caller owns the mapping; this code only reads and writes the span it is
// given. Also the xenstore value formats the handshake reads.
#pragma once

#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "proto/result.h"

namespace vtpm::tpmif {

inline constexpr std::size_t kPageSize = 4096;
inline constexpr std::size_t kHeaderSize = 8;
// The largest packet a single page carries; vtpmd's tpmif instances use it
// as their TPM buffer size, so TPM_CAP_PROP_INPUT_BUFFER tells the guest.
inline constexpr std::size_t kMaxPacket = kPageSize - kHeaderSize;

// The backend only ever writes kIdle or kFinish; the frontend kSubmit or kCancel.
enum class PageState : std::uint8_t { kIdle = 0, kSubmit = 1, kFinish = 2, kCancel = 3 };

using Page = std::span<std::uint8_t, kPageSize>;
using ConstPage = std::span<const std::uint8_t, kPageSize>;

// One read of the state byte (acquire: what the frontend wrote before it
// set the state is visible after).
std::uint8_t load_state(ConstPage page);
// One write of the state byte (release: everything written before it is
// visible to the peer first).
void store_state(Page page, PageState state);

// Where the packet starts for a given nr_extra_pages (always inside the page).
constexpr std::size_t data_offset(std::uint8_t nr_extra_pages) {
  return kHeaderSize + 4u * nr_extra_pages;
}

// A request as fetched once from the page.
struct Request {
  std::vector<std::uint8_t> command;
  std::uint8_t locality = 0;
  std::size_t offset = kHeaderSize;  // where the response goes
};

// A request the page cannot describe (length past the page, shorter than a
// TPM header): the offset to answer at and why.
struct BadRequest {
  std::size_t offset = kHeaderSize;
  std::string why;
};

// Fetches length, locality and nr_extra_pages once, checks that the packet
// lies inside the page and copies it out once. The TPM packet itself is not
// judged here (Service validates it against the instance).
struct Taken {
  std::optional<Request> request;
  std::optional<BadRequest> bad;
};
Taken take_request(ConstPage page);

// Writes length and response at `offset`, then state = FINISH (release).
// Fails (and writes nothing) if the response does not fit.
Status put_response(Page page, std::size_t offset, std::span<const std::uint8_t> response);

// Frontend side (the test model and tools): writes the packet at the data
// offset for the page's nr_extra_pages, length, locality, then SUBMIT.
Status put_request(Page page, std::span<const std::uint8_t> command, std::uint8_t locality);
// Frontend side: the response as xen-tpmfront's vtpm_recv copies it (length
// clipped to the page).
std::vector<std::uint8_t> read_response(ConstPage page);

// XenbusState values.
enum class XenbusState : int {
  kUnknown = 0, kInitialising = 1, kInitWait = 2, kInitialised = 3, kConnected = 4, kClosing = 5, kClosed = 6,
};
const char* xenbus_state_name(XenbusState s);

// Xenstore values from a possibly hostile writer: decimal without sign,
// leading junk, trailing junk (a trailing NUL or newline included) or
// overflow past `max`.
std::optional<std::uint32_t> parse_uint(std::string_view text, std::uint32_t max);
std::optional<XenbusState> parse_xenbus_state(std::string_view text);

}  // namespace vtpm::tpmif
