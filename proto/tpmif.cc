#include "proto/tpmif.h"

#include <atomic>
#include <charconv>
#include <cstring>

namespace vtpm::tpmif {
namespace {

constexpr std::size_t kStateOffset = 4;
constexpr std::size_t kLocalityOffset = 5;
constexpr std::size_t kExtraPagesOffset = 7;

// The header is copied byte by byte through volatile loads: the compiler
// may neither re-read a field later nor merge the copy with later uses.
void fetch_header(ConstPage page, std::uint8_t (&out)[kHeaderSize]) {
  const volatile std::uint8_t* src = page.data();
  for (std::size_t i = 0; i < kHeaderSize; ++i) out[i] = src[i];
}

}  // namespace

std::uint8_t load_state(ConstPage page) {
  const volatile std::uint8_t* p = page.data() + kStateOffset;
  const std::uint8_t s = *p;
  std::atomic_thread_fence(std::memory_order_acquire);
  return s;
}

void store_state(Page page, PageState state) {
  std::atomic_thread_fence(std::memory_order_release);
  volatile std::uint8_t* p = page.data() + kStateOffset;
  *p = static_cast<std::uint8_t>(state);
  std::atomic_thread_fence(std::memory_order_seq_cst);
}

Taken take_request(ConstPage page) {
  std::uint8_t header[kHeaderSize];
  fetch_header(page, header);
  std::atomic_thread_fence(std::memory_order_acquire);
  std::uint32_t length = 0;
  std::memcpy(&length, header, sizeof length);  // host byte order, as the guest wrote it
  const std::size_t offset = data_offset(header[kExtraPagesOffset]);
  Taken taken;
  if (length > kPageSize - offset) {
    taken.bad = BadRequest{offset, "request length " + std::to_string(length) + " at offset " + std::to_string(offset) +
                                       " goes past the shared page"};
    return taken;
  }
  if (length < 10) {
    taken.bad = BadRequest{offset, "request length " + std::to_string(length) + " is shorter than a TPM header"};
    return taken;
  }
  Request r;
  r.locality = header[kLocalityOffset];
  r.offset = offset;
  r.command.resize(length);
  std::memcpy(r.command.data(), page.data() + offset, length);
  taken.request = std::move(r);
  return taken;
}

Status put_response(Page page, std::size_t offset, std::span<const std::uint8_t> response) {
  if (offset > kPageSize || response.size() > kPageSize - offset) {
    return make_error(ErrorCode::kTooLarge, "response of " + std::to_string(response.size()) + " bytes at offset " +
                                                std::to_string(offset) + " does not fit the shared page");
  }
  std::memcpy(page.data() + offset, response.data(), response.size());
  const auto length = static_cast<std::uint32_t>(response.size());
  std::memcpy(page.data(), &length, sizeof length);
  store_state(page, PageState::kFinish);
  return Status::success();
}

Status put_request(Page page, std::span<const std::uint8_t> command, std::uint8_t locality) {
  const std::size_t offset = data_offset(page[kExtraPagesOffset]);
  if (command.size() > kPageSize - offset) {
    return make_error(ErrorCode::kTooLarge, "command of " + std::to_string(command.size()) + " bytes does not fit");
  }
  std::memcpy(page.data() + offset, command.data(), command.size());
  const auto length = static_cast<std::uint32_t>(command.size());
  std::memcpy(page.data(), &length, sizeof length);
  page[kLocalityOffset] = locality;
  store_state(page, PageState::kSubmit);
  return Status::success();
}

std::vector<std::uint8_t> read_response(ConstPage page) {
  std::uint8_t header[kHeaderSize];
  fetch_header(page, header);
  std::uint32_t length = 0;
  std::memcpy(&length, header, sizeof length);
  const std::size_t offset = data_offset(header[kExtraPagesOffset]);
  const std::size_t n = std::min<std::size_t>(length, kPageSize - offset);
  return {page.begin() + static_cast<std::ptrdiff_t>(offset), page.begin() + static_cast<std::ptrdiff_t>(offset + n)};
}

const char* xenbus_state_name(XenbusState s) {
  switch (s) {
    case XenbusState::kUnknown: return "Unknown";
    case XenbusState::kInitialising: return "Initialising";
    case XenbusState::kInitWait: return "InitWait";
    case XenbusState::kInitialised: return "Initialised";
    case XenbusState::kConnected: return "Connected";
    case XenbusState::kClosing: return "Closing";
    case XenbusState::kClosed: return "Closed";
  }
  return "?";
}

std::optional<std::uint32_t> parse_uint(std::string_view text, std::uint32_t max) {
  if (text.empty() || text.size() > 10) return std::nullopt;
  std::uint32_t v = 0;
  const auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), v);
  if (ec != std::errc{} || end != text.data() + text.size() || v > max) return std::nullopt;
  return v;
}

std::optional<XenbusState> parse_xenbus_state(std::string_view text) {
  const auto v = parse_uint(text, 6);
  if (!v) return std::nullopt;
  return static_cast<XenbusState>(*v);
}

}  // namespace vtpm::tpmif
