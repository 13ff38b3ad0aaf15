#include "state/secure_memory.h"

#include <doctest/doctest.h>

#include <cstdint>
#include <cstdio>
#include <fstream>
#include <sstream>
#include <string>

#include "state/crypto.h"

namespace vtpm::state {
namespace {

// The VmFlags line of the mapping that holds `address`, from
// /proc/self/smaps ("" if no mapping holds it).
std::string vm_flags_of(const void* address) {
  const auto where = reinterpret_cast<std::uintptr_t>(address);
  std::ifstream smaps("/proc/self/smaps");
  std::string line;
  bool inside = false;
  while (std::getline(smaps, line)) {
    unsigned long start = 0;
    unsigned long end = 0;
    char dash = 0;
    std::istringstream range(line);
    if (range >> std::hex >> start >> dash >> end && dash == '-' && line.find(' ') != std::string::npos &&
        line.find(':') > line.find(' ')) {
      inside = where >= start && where < end;
      continue;
    }
    if (inside && line.starts_with("VmFlags:")) return line;
  }
  return "";
}

bool has_flag(const std::string& flags, const std::string& flag) { return flags.find(" " + flag) != std::string::npos; }

}  // namespace

TEST_CASE("secure_memory: a key lives in a mapping kept out of core dumps") {
  const SecretKey key(Bytes(kKeySize, 0x42));
  const std::string flags = vm_flags_of(key.bytes().data());
  INFO(flags);
  REQUIRE_FALSE(flags.empty());
  CHECK(has_flag(flags, "dd"));  // MADV_DONTDUMP
  // Locked where RLIMIT_MEMLOCK allows; the arena reports what it managed.
  const SecureMemoryStats stats = secure_memory_stats();
  CHECK(stats.mapped_bytes > 0);
#if !defined(__SANITIZE_ADDRESS__)  // ASan makes mlock a no-op that reports success
  if (stats.locked_bytes == stats.mapped_bytes) CHECK(has_flag(flags, "lo"));
#endif
}

TEST_CASE("secure_memory: copies are independent and keys hold their bytes") {
  SecretKey a(Bytes(kKeySize, 0x11));
  SecretKey b = a;
  b.mutable_bytes()[0] = 0x22;
  CHECK(a.bytes()[0] == 0x11);
  CHECK(b.bytes()[0] == 0x22);
  CHECK(a.bytes().data() != b.bytes().data());
  SecretKey moved = std::move(b);
  CHECK(moved.bytes().size() == kKeySize);
  CHECK(moved.bytes()[0] == 0x22);
  const SecretKey fresh;
  CHECK(fresh.bytes().size() == kKeySize);
  for (auto byte : fresh.bytes()) CHECK(byte == 0);
}

TEST_CASE("secure_memory: a freed block is wiped before it is reused") {
  const std::size_t before = secure_memory_stats().blocks_in_use;
  const std::uint8_t* where = nullptr;
  {
    const SecretKey key(Bytes(kKeySize, 0x5c));
    where = key.bytes().data();
    CHECK(secure_memory_stats().blocks_in_use == before + 1);
  }
  CHECK(secure_memory_stats().blocks_in_use == before);
  // Small blocks stay mapped in the arena's pages: the slot can be read.
  for (std::size_t i = 0; i < kKeySize; ++i) CHECK(where[i] == 0);
  const SecretKey again;  // the most recently freed slot of its size
  CHECK(again.bytes().data() == where);
  for (auto byte : again.bytes()) CHECK(byte == 0);
}

TEST_CASE("secure_memory: large buffers, growth included, stay out of dumps") {
  SecureBytes plain;
  for (int i = 0; i < 100000; ++i) plain.push_back(static_cast<std::uint8_t>(i));
  const std::string flags = vm_flags_of(plain.data());
  INFO(flags);
  CHECK(has_flag(flags, "dd"));
  const std::size_t mapped = secure_memory_stats().mapped_bytes;
  plain.clear();
  plain.shrink_to_fit();
  CHECK(secure_memory_stats().mapped_bytes < mapped);  // a large block's mapping goes with it
}

TEST_CASE("secure_memory: aes_gcm_open hands its plaintext back in secure memory") {
  const SecretKey key(Bytes(kKeySize, 7));
  const Nonce nonce{};
  const Bytes message(5000, 0x33);
  const Bytes sealed = aes_gcm_seal(key, nonce, {}, message);
  auto opened = aes_gcm_open(key, nonce, {}, sealed);
  REQUIRE(opened.ok());
  CHECK(Bytes(opened->begin(), opened->end()) == message);
  CHECK(has_flag(vm_flags_of(opened->data()), "dd"));
}

}  // namespace vtpm::state
