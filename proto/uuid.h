// RFC 4122 UUIDs in their canonical text form (8-4-4-4-12 hex digits).
// Instances are keyed by UUID; anything else is rejected with a message that
// says what is wrong with the text.
#pragma once

#include <array>
#include <compare>
#include <cstdint>
#include <functional>
#include <string>
#include <string_view>

#include "proto/result.h"

namespace vtpm {

class Uuid {
 public:
  using Bytes = std::array<std::uint8_t, 16>;

  Uuid() = default;  // the nil UUID
  explicit Uuid(const Bytes& bytes) : bytes_(bytes) {}

  // Accepts upper or lower case; rejects braces, "urn:uuid:", missing
  // dashes, the nil UUID and trailing garbage.
  static Result<Uuid> parse(std::string_view text);
  // A random (version 4, variant 1) UUID from 16 random bytes.
  static Uuid from_random(const Bytes& random_bytes);

  std::string to_string() const;  // lower case, canonical
  const Bytes& bytes() const { return bytes_; }
  bool is_nil() const;

  auto operator<=>(const Uuid&) const = default;

 private:
  Bytes bytes_{};
};

}  // namespace vtpm

template <>
struct std::hash<vtpm::Uuid> {
  std::size_t operator()(const vtpm::Uuid& id) const noexcept;
};
