// Big-endian field writer and bounds-checked reader for the on-disk formats
// in state/ (sealed blobs, the manifest, the master key file). Pure.
#pragma once

#include <cstdint>
#include <cstring>
#include <span>
#include <vector>

namespace vtpm::state {

using Bytes = std::vector<std::uint8_t>;

class ByteWriter {
 public:
  void u8(std::uint8_t v) { out_.push_back(v); }
  void u16(std::uint16_t v) { put(v, 2); }
  void u32(std::uint32_t v) { put(v, 4); }
  void u64(std::uint64_t v) { put(v, 8); }
  void raw(std::span<const std::uint8_t> b) { out_.insert(out_.end(), b.begin(), b.end()); }
  std::size_t size() const { return out_.size(); }
  Bytes& bytes() { return out_; }
  Bytes take() { return std::move(out_); }

 private:
  void put(std::uint64_t v, int n) {
    for (int i = n - 1; i >= 0; --i) out_.push_back(static_cast<std::uint8_t>(v >> (8 * i)));
  }
  Bytes out_;
};

// Every read checks the remaining length; after a short read ok() is false
// and every later read returns zeros, so a parser checks ok() once at the end.
class ByteReader {
 public:
  explicit ByteReader(std::span<const std::uint8_t> b) : b_(b) {}
  std::uint8_t u8() { return static_cast<std::uint8_t>(get(1)); }
  std::uint16_t u16() { return static_cast<std::uint16_t>(get(2)); }
  std::uint32_t u32() { return static_cast<std::uint32_t>(get(4)); }
  std::uint64_t u64() { return get(8); }
  std::span<const std::uint8_t> raw(std::size_t n) {
    if (!take(n)) return {};
    return b_.subspan(pos_ - n, n);
  }
  template <std::size_t N>
  void copy_to(std::uint8_t (&dst)[N]) {
    auto s = raw(N);
    if (!s.empty()) std::memcpy(dst, s.data(), N);
  }
  bool ok() const { return ok_; }
  std::size_t position() const { return pos_; }
  std::size_t remaining() const { return ok_ ? b_.size() - pos_ : 0; }

 private:
  bool take(std::size_t n) {
    if (!ok_ || b_.size() - pos_ < n) {
      ok_ = false;
      return false;
    }
    pos_ += n;
    return true;
  }
  std::uint64_t get(int n) {
    if (!take(static_cast<std::size_t>(n))) return 0;
    std::uint64_t v = 0;
    for (int i = 0; i < n; ++i) v = (v << 8) | b_[pos_ - static_cast<std::size_t>(n) + static_cast<std::size_t>(i)];
    return v;
  }
  std::span<const std::uint8_t> b_;
  std::size_t pos_ = 0;
  bool ok_ = true;
};

// Files written in place keep their length (state/file_io.h, write_in_place):
// a record is followed by zeros to the end of its file. The record's extent
// within `file`, given the length its own header states, or why not: too
// short (truncated) or a tail that is not all zeros (appended to).
struct FileExtent {
  std::span<const std::uint8_t> record;
  const char* problem = nullptr;  // "truncated" or "non-zero bytes after the record"
};
inline FileExtent record_in_file(std::span<const std::uint8_t> file, std::uint64_t record_length) {
  if (record_length > file.size()) return {{}, "truncated"};
  for (std::size_t i = static_cast<std::size_t>(record_length); i < file.size(); ++i) {
    if (file[i] != 0) return {{}, "non-zero bytes after the record"};
  }
  return {file.first(static_cast<std::size_t>(record_length)), nullptr};
}

}  // namespace vtpm::state
