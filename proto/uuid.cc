#include "proto/uuid.h"

#include <cstring>

namespace vtpm {
namespace {

constexpr std::size_t kTextLength = 36;

bool is_dash_position(std::size_t i) { return i == 8 || i == 13 || i == 18 || i == 23; }

int hex_value(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

}  // namespace

Result<Uuid> Uuid::parse(std::string_view text) {
  if (text.size() != kTextLength) {
    return make_error(ErrorCode::kInvalidArgument,
                      "invalid UUID '" + std::string(text.substr(0, 64)) + "': expected 36 characters " +
                          "(xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx), got " + std::to_string(text.size()));
  }
  Bytes bytes{};
  std::size_t nibble = 0;
  for (std::size_t i = 0; i < text.size(); ++i) {
    const char c = text[i];
    if (is_dash_position(i)) {
      if (c != '-') {
        return make_error(ErrorCode::kInvalidArgument, "invalid UUID '" + std::string(text) +
                                                           "': expected '-' at position " + std::to_string(i));
      }
      continue;
    }
    const int v = hex_value(c);
    if (v < 0) {
      return make_error(ErrorCode::kInvalidArgument, "invalid UUID '" + std::string(text) +
                                                         "': non-hex character at position " + std::to_string(i));
    }
    bytes[nibble / 2] = static_cast<std::uint8_t>(bytes[nibble / 2] | (nibble % 2 == 0 ? v << 4 : v));
    ++nibble;
  }
  Uuid id(bytes);
  if (id.is_nil()) {
    return make_error(ErrorCode::kInvalidArgument, "invalid UUID: the nil UUID cannot name an instance");
  }
  return id;
}

Uuid Uuid::from_random(const Bytes& random_bytes) {
  Bytes b = random_bytes;
  b[6] = static_cast<std::uint8_t>((b[6] & 0x0f) | 0x40);  // version 4
  b[8] = static_cast<std::uint8_t>((b[8] & 0x3f) | 0x80);  // RFC 4122 variant
  return Uuid(b);
}

std::string Uuid::to_string() const {
  static constexpr char kDigits[] = "0123456789abcdef";
  std::string out;
  out.reserve(kTextLength);
  for (std::size_t i = 0; i < bytes_.size(); ++i) {
    if (i == 4 || i == 6 || i == 8 || i == 10) out.push_back('-');
    out.push_back(kDigits[bytes_[i] >> 4]);
    out.push_back(kDigits[bytes_[i] & 0x0f]);
  }
  return out;
}

bool Uuid::is_nil() const {
  for (auto b : bytes_) {
    if (b != 0) return false;
  }
  return true;
}

}  // namespace vtpm

std::size_t std::hash<vtpm::Uuid>::operator()(const vtpm::Uuid& id) const noexcept {
  std::uint64_t a = 0;
  std::uint64_t b = 0;
  std::memcpy(&a, id.bytes().data(), 8);
  std::memcpy(&b, id.bytes().data() + 8, 8);
  return std::hash<std::uint64_t>{}(a ^ (b * 0x9e3779b97f4a7c15ULL));
}
