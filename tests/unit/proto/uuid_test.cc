#include "proto/uuid.h"

#include <doctest/doctest.h>

#include <string>
#include <unordered_set>

namespace vtpm {
namespace {

constexpr const char* kLower = "6f1c2d3e-4a5b-4c6d-8e7f-0123456789ab";
constexpr const char* kUpper = "6F1C2D3E-4A5B-4C6D-8E7F-0123456789AB";

Uuid::Bytes expected_bytes() {
  return {0x6f, 0x1c, 0x2d, 0x3e, 0x4a, 0x5b, 0x4c, 0x6d, 0x8e, 0x7f, 0x01, 0x23, 0x45, 0x67, 0x89, 0xab};
}

void check_rejected(const std::string& text, const std::string& expected_fragment) {
  CAPTURE(text);
  auto id = Uuid::parse(text);
  REQUIRE_FALSE(id.ok());
  CHECK(id.error().code == ErrorCode::kInvalidArgument);
  CHECK_MESSAGE(id.error().message.find(expected_fragment) != std::string::npos, id.error().message);
}

}  // namespace

TEST_CASE("uuid: parses a lower-case canonical UUID into its bytes") {
  auto id = Uuid::parse(kLower);
  REQUIRE(id.ok());
  CHECK(id->bytes() == expected_bytes());
  CHECK_FALSE(id->is_nil());
}

TEST_CASE("uuid: accepts upper case and equals the lower-case parse") {
  auto upper = Uuid::parse(kUpper);
  auto lower = Uuid::parse(kLower);
  REQUIRE(upper.ok());
  REQUIRE(lower.ok());
  CHECK(*upper == *lower);
}

TEST_CASE("uuid: accepts mixed case") {
  auto id = Uuid::parse("6f1C2d3E-4a5B-4c6D-8e7F-0123456789aB");
  REQUIRE(id.ok());
  CHECK(id->bytes() == expected_bytes());
}

TEST_CASE("uuid: to_string is canonical lower case") {
  auto id = Uuid::parse(kUpper);
  REQUIRE(id.ok());
  CHECK(id->to_string() == kLower);
}

TEST_CASE("uuid: to_string round-trips through parse") {
  const Uuid original(expected_bytes());
  auto again = Uuid::parse(original.to_string());
  REQUIRE(again.ok());
  CHECK(*again == original);
}

TEST_CASE("uuid: rejects braces") {
  check_rejected(std::string("{") + kLower + "}", "expected 36 characters");
}

TEST_CASE("uuid: rejects the urn:uuid: prefix") {
  check_rejected(std::string("urn:uuid:") + kLower, "expected 36 characters");
}

TEST_CASE("uuid: rejects missing dashes") {
  check_rejected("6f1c2d3e4a5b4c6d8e7f0123456789ab", "got 32");
}

TEST_CASE("uuid: rejects a dash in the wrong place at the right length") {
  check_rejected("6f1c2d3e4-a5b-4c6d-8e7f-0123456789ab", "expected '-' at position 8");
}

TEST_CASE("uuid: rejects wrong lengths") {
  check_rejected("", "got 0");
  check_rejected(std::string(kLower).substr(0, 35), "got 35");
  check_rejected(std::string(kLower) + "0", "got 37");
  check_rejected(std::string(kLower) + " ", "got 37");
  check_rejected(std::string(1000, 'a'), "got 1000");
}

TEST_CASE("uuid: rejects non-hex characters and names the position") {
  check_rejected("6f1c2d3e-4a5b-4c6d-8e7f-0123456789ag", "non-hex character at position 35");
  check_rejected("gf1c2d3e-4a5b-4c6d-8e7f-0123456789ab", "position 0");
  check_rejected(" 6f1c2d3-4a5b-4c6d-8e7f-0123456789ab", "position 0");
  check_rejected("6f1c2d3e-4a5b-4c6d-8e7f-0123456789a\n", "position 35");
  check_rejected(std::string("6f1c2d3e-4a5b-4c6d-8e7f-0123456789a") + '\0', "position 35");
}

TEST_CASE("uuid: rejects the nil UUID") {
  check_rejected("00000000-0000-0000-0000-000000000000", "nil UUID");
}

TEST_CASE("uuid: default-constructed UUID is nil") {
  CHECK(Uuid().is_nil());
  CHECK(Uuid().to_string() == "00000000-0000-0000-0000-000000000000");
}

TEST_CASE("uuid: from_random sets version 4 and the RFC 4122 variant") {
  for (std::uint8_t fill : {std::uint8_t{0x00}, std::uint8_t{0xff}, std::uint8_t{0x5a}, std::uint8_t{0xa5}}) {
    CAPTURE(int(fill));
    Uuid::Bytes random{};
    random.fill(fill);
    const Uuid id = Uuid::from_random(random);
    CHECK((id.bytes()[6] & 0xf0) == 0x40);
    CHECK((id.bytes()[8] & 0xc0) == 0x80);
    CHECK((id.bytes()[6] & 0x0f) == (fill & 0x0f));
    CHECK((id.bytes()[8] & 0x3f) == (fill & 0x3f));
    for (std::size_t i = 0; i < random.size(); ++i) {
      if (i != 6 && i != 8) CHECK(id.bytes()[i] == fill);
    }
    const std::string text = id.to_string();
    CHECK(text[14] == '4');
    CHECK(std::string("89ab").find(text[19]) != std::string::npos);
    auto parsed = Uuid::parse(text);
    REQUIRE(parsed.ok());
    CHECK(*parsed == id);
  }
}

TEST_CASE("uuid: ordering and hashing follow the bytes") {
  Uuid::Bytes a{};
  Uuid::Bytes b{};
  a[15] = 1;
  b[0] = 1;
  CHECK(Uuid(a) < Uuid(b));
  CHECK(Uuid(a) != Uuid(b));
  std::unordered_set<Uuid> set{Uuid(a), Uuid(b), Uuid(a)};
  CHECK(set.size() == 2);
  CHECK(std::hash<Uuid>{}(Uuid(a)) == std::hash<Uuid>{}(Uuid(a)));
}

}  // namespace vtpm
