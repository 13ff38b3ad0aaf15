// Shared by the libFuzzer targets in tests/fuzz/ (docs/fuzzing.md): a front-to-back reader of the
// fuzz input (so seed files read like the formats they feed) and the invariant check, which traps
// so libFuzzer records the input as a crash.
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <vector>

// Violated invariant: not just "does not crash" but "answers correctly".
#define FUZZ_CHECK(cond)          \
  do {                            \
    if (!(cond)) __builtin_trap(); \
  } while (0)

namespace vtpm::fuzz {

// Reads fields off the front of the input; past the end every read yields zeros / empty.
class Input {
 public:
  Input(const std::uint8_t* data, std::size_t size) : b_(data, size) {}
  std::uint8_t u8() { return pos_ < b_.size() ? b_[pos_++] : 0; }
  std::uint16_t u16() { return static_cast<std::uint16_t>((u8() << 8) | u8()); }
  std::uint32_t u32() { return (std::uint32_t{u16()} << 16) | u16(); }
  std::uint64_t u64() { return (std::uint64_t{u32()} << 32) | u32(); }
  std::span<const std::uint8_t> bytes(std::size_t n) {
    n = std::min(n, b_.size() - pos_);
    auto s = b_.subspan(pos_, n);
    pos_ += n;
    return s;
  }
  std::span<const std::uint8_t> rest() { return bytes(b_.size() - pos_); }
  std::size_t remaining() const { return b_.size() - pos_; }

 private:
  std::span<const std::uint8_t> b_;
  std::size_t pos_ = 0;
};

// Chunk sizes for feeding a stream piecewise, reproducible from one seed byte (xorshift).
class Chunker {
 public:
  explicit Chunker(std::uint8_t seed) : state_(0x9e3779b9u ^ (std::uint32_t{seed} * 0x01000193u)) {}
  // 1..max; small chunks dominate so split fields and headers are common.
  std::size_t next(std::size_t max) {
    state_ ^= state_ << 13;
    state_ ^= state_ >> 17;
    state_ ^= state_ << 5;
    const std::size_t cap = (state_ & 3) == 0 ? max : std::min<std::size_t>(max, 16);
    return 1 + (state_ >> 8) % cap;
  }

 private:
  std::uint32_t state_;
};

inline std::string as_string(std::span<const std::uint8_t> b) { return std::string(b.begin(), b.end()); }

}  // namespace vtpm::fuzz
