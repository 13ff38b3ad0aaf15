// Fuzz target: the Xen tpmif v2 shared page (proto/tpmif.h) as a hostile guest writes it, and the
// xenstore values the backend parses (ring-ref, event-channel, frontend-id, states).
// Input: u8 mode, then either the page's bytes (zero-padded to 4096; mode even) or a xenstore
// value (mode odd) with a u32 maximum in front.
// Invariants (page): a request is taken or refused, never both; a taken one lies inside the page
// at 8 + 4 * nr_extra_pages, holds 10.. bytes, is exactly the page's bytes there and carries the
// page's locality; a refused one has a length field past the page or below a header; a response
// put at the request's offset reads back the same and leaves state FINISH.
// Invariants (values): a parsed number was all decimal digits, within its maximum, and prints
// back to the same digits; a xenbus state parses exactly when the number does with maximum 6.
#include <array>
#include <cstring>
#include <string>

#include "proto/tpmif.h"
#include "tests/fuzz/fuzz_util.h"

using namespace vtpm;

namespace {

void fuzz_page(std::span<const std::uint8_t> data) {
  alignas(4096) std::array<std::uint8_t, tpmif::kPageSize> bytes{};
  if (!data.empty()) std::memcpy(bytes.data(), data.data(), std::min(data.size(), bytes.size()));
  const tpmif::ConstPage page(bytes);
  const tpmif::Taken taken = tpmif::take_request(page);
  FUZZ_CHECK(taken.request.has_value() != taken.bad.has_value());
  std::uint32_t length = 0;
  std::memcpy(&length, bytes.data(), 4);
  const std::size_t offset = tpmif::data_offset(bytes[7]);
  if (taken.bad) {
    FUZZ_CHECK(taken.bad->offset == offset);
    FUZZ_CHECK(length < 10 || length > tpmif::kPageSize - offset);
    FUZZ_CHECK(!taken.bad->why.empty());
    return;
  }
  const tpmif::Request& r = *taken.request;
  FUZZ_CHECK(r.offset == offset);
  FUZZ_CHECK(r.command.size() == length && length >= 10 && offset + length <= tpmif::kPageSize);
  FUZZ_CHECK(std::memcmp(r.command.data(), bytes.data() + offset, length) == 0);
  FUZZ_CHECK(r.locality == bytes[5]);
  // The response path over a copy of the page.
  alignas(4096) std::array<std::uint8_t, tpmif::kPageSize> out = bytes;
  const tpmif::Page writable(out);
  FUZZ_CHECK(tpmif::put_response(writable, r.offset, r.command).ok());
  FUZZ_CHECK(tpmif::load_state(writable) == static_cast<std::uint8_t>(tpmif::PageState::kFinish));
  FUZZ_CHECK(tpmif::read_response(writable) == r.command);
  FUZZ_CHECK(!tpmif::put_response(writable, r.offset, std::vector<std::uint8_t>(tpmif::kPageSize - r.offset + 1)).ok());
}

void fuzz_value(vtpm::fuzz::Input& in) {
  const std::uint32_t max = in.u32();
  const std::string text = vtpm::fuzz::as_string(in.rest());
  const auto v = tpmif::parse_uint(text, max);
  if (v) {
    FUZZ_CHECK(!text.empty() && *v <= max);
    for (char c : text) FUZZ_CHECK(c >= '0' && c <= '9');
    const std::size_t nz = text.find_first_not_of('0');
    FUZZ_CHECK(std::to_string(*v) == (nz == std::string::npos ? "0" : text.substr(nz)));
  }
  const auto s = tpmif::parse_xenbus_state(text);
  FUZZ_CHECK(s.has_value() == tpmif::parse_uint(text, 6).has_value());
  if (s) FUZZ_CHECK(std::string(tpmif::xenbus_state_name(*s)) != "?");
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  vtpm::fuzz::Input in(data, size);
  if (in.u8() % 2 == 0) {
    fuzz_page(size > 0 ? std::span<const std::uint8_t>(data + 1, size - 1) : std::span<const std::uint8_t>());
  } else {
    fuzz_value(in);
  }
  return 0;
}
