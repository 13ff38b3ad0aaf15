#include "proto/hex.h"

#include <doctest/doctest.h>

#include <string>

namespace vtpm {
namespace {

void check_rejected(std::string_view text, const std::string& expected_fragment) {
  CAPTURE(std::string(text));
  auto bytes = from_hex(text);
  REQUIRE_FALSE(bytes.ok());
  CHECK(bytes.error().code == ErrorCode::kInvalidArgument);
  CHECK_MESSAGE(bytes.error().message.find(expected_fragment) != std::string::npos, bytes.error().message);
}

}  // namespace

TEST_CASE("hex: to_hex writes lower-case pairs") {
  const Bytes bytes{0x00, 0x01, 0x7f, 0x80, 0xab, 0xff};
  CHECK(to_hex(bytes) == "00017f80abff");
  CHECK(to_hex(Bytes{}).empty());
}

TEST_CASE("hex: every byte value round-trips") {
  Bytes all;
  for (int i = 0; i < 256; ++i) all.push_back(static_cast<std::uint8_t>(i));
  auto back = from_hex(to_hex(all));
  REQUIRE(back.ok());
  CHECK(*back == all);
}

TEST_CASE("hex: accepts upper and mixed case") {
  auto upper = from_hex("ABCDEF");
  REQUIRE(upper.ok());
  CHECK(*upper == Bytes{0xab, 0xcd, 0xef});
  auto mixed = from_hex("aBcDeF");
  REQUIRE(mixed.ok());
  CHECK(*mixed == Bytes{0xab, 0xcd, 0xef});
}

TEST_CASE("hex: empty text is zero bytes") {
  auto empty = from_hex("");
  REQUIRE(empty.ok());
  CHECK(empty->empty());
  auto blank = from_hex(" \t\r\n");
  REQUIRE(blank.ok());
  CHECK(blank->empty());
}

TEST_CASE("hex: whitespace between byte pairs is ignored") {
  auto bytes = from_hex(" 80 01\t00 00\r\n00 0c \n");
  REQUIRE(bytes.ok());
  CHECK(*bytes == Bytes{0x80, 0x01, 0x00, 0x00, 0x00, 0x0c});
}

TEST_CASE("hex: whitespace inside a byte pair is rejected") {
  check_rejected("8 0", "whitespace splits a byte at offset 1");
  check_rejected("80 0\n1", "offset 4");
}

TEST_CASE("hex: odd digit count is rejected") {
  check_rejected("0", "odd number of digits");
  check_rejected("abc", "odd number of digits");
  check_rejected("ab c", "odd number of digits");
}

TEST_CASE("hex: non-hex characters are rejected with their offset") {
  check_rejected("0g", "invalid character at offset 1");
  check_rejected("0x10", "invalid character at offset 1");
  check_rejected("00,11", "invalid character at offset 2");
  check_rejected("zz", "offset 0");
  check_rejected(std::string_view("00\0" "0", 4), "offset 2");
  check_rejected("\xff\xfe", "offset 0");
}

}  // namespace vtpm
