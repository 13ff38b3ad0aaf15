#include <doctest/doctest.h>

#include <array>
#include <cstring>

#include "proto/tpmif.h"

namespace vtpm::tpmif {
namespace {

struct PageBuf {
  alignas(4096) std::array<std::uint8_t, kPageSize> bytes{};
  Page page() { return Page(bytes); }
  void set_length(std::uint32_t n) { std::memcpy(bytes.data(), &n, 4); }
};

std::vector<std::uint8_t> packet(std::size_t n) {
  std::vector<std::uint8_t> p(n);
  for (std::size_t i = 0; i < n; ++i) p[i] = static_cast<std::uint8_t>(i * 31 + 7);
  return p;
}

}  // namespace

TEST_CASE("tpmif: a request round-trips at offset 8, locality and state included") {
  PageBuf b;
  const auto cmd = packet(22);
  REQUIRE(put_request(b.page(), cmd, 3).ok());
  CHECK(load_state(b.page()) == static_cast<std::uint8_t>(PageState::kSubmit));
  const Taken t = take_request(b.page());
  REQUIRE(t.request.has_value());
  CHECK(!t.bad.has_value());
  CHECK(t.request->command == cmd);
  CHECK(t.request->locality == 3);
  CHECK(t.request->offset == 8);
  // The taken copy is independent of the page (single fetch).
  b.bytes[8] ^= 0xFF;
  CHECK(t.request->command == cmd);
}

TEST_CASE("tpmif: lengths past the page or below a header are refused with the answer offset") {
  PageBuf b;
  for (std::uint32_t n : {4089u, 4096u, 0x7FFFFFFFu, 0xFFFFFFFFu, 0u, 9u}) {
    CAPTURE(n);
    b.set_length(n);
    const Taken t = take_request(b.page());
    CHECK(!t.request.has_value());
    REQUIRE(t.bad.has_value());
    CHECK(t.bad->offset == 8);
  }
  b.set_length(4088);
  CHECK(take_request(b.page()).request.has_value());
  b.bytes[7] = 255;  // nr_extra_pages: data at 8 + 1020
  b.set_length(4096 - 1028);
  const Taken t = take_request(b.page());
  REQUIRE(t.request.has_value());
  CHECK(t.request->offset == 1028);
  b.set_length(4096 - 1028 + 1);
  CHECK(take_request(b.page()).bad->offset == 1028);
}

TEST_CASE("tpmif: responses are written at the request's offset, FINISH last; too large is refused untouched") {
  PageBuf b;
  const auto rsp = packet(30);
  REQUIRE(put_response(b.page(), 8, rsp).ok());
  CHECK(load_state(b.page()) == static_cast<std::uint8_t>(PageState::kFinish));
  CHECK(read_response(b.page()) == rsp);
  PageBuf c;
  CHECK(!put_response(c.page(), 8, packet(kMaxPacket + 1)).ok());
  CHECK(load_state(c.page()) == 0);
  CHECK(put_response(c.page(), 8, packet(kMaxPacket)).ok());
  CHECK(!put_response(c.page(), 5000, packet(1)).ok());
  // A frontend reading a lying length gets at most the page.
  PageBuf d;
  d.set_length(0xFFFFFFFF);
  CHECK(read_response(d.page()).size() == kMaxPacket);
  CHECK(!put_request(d.page(), packet(kMaxPacket + 1), 0).ok());
}

TEST_CASE("tpmif: xenstore numbers and states from a hostile writer") {
  CHECK(parse_uint("0", 10) == 0u);
  CHECK(parse_uint("4294967295", 0xFFFFFFFFu) == 0xFFFFFFFFu);
  for (const char* bad : {"", "-1", "+1", " 1", "1 ", "1\n", "0x10", "abc", "4294967296", "99999999999", "11"}) {
    CAPTURE(bad);
    CHECK(!parse_uint(bad, 10).has_value());
  }
  CHECK(parse_xenbus_state("4") == XenbusState::kConnected);
  CHECK(!parse_xenbus_state("7").has_value());
  CHECK(std::string(xenbus_state_name(XenbusState::kInitWait)) == "InitWait");
}

}  // namespace vtpm::tpmif
