// Memory for key material and decrypted state. Every byte handed out lies
// in pages that are
//   - marked MADV_DONTDUMP: never written to a core dump, whatever the
//     process's dumpable policy (vtpmd --allow-core-dumps keeps them out);
//   - locked in RAM (mlock) where RLIMIT_MEMLOCK allows, best effort: a
//     page that cannot be locked may reach swap but still stays out of cores;
//   - wiped (mbedtls_platform_zeroize) when the block is freed.
//
// Small blocks (keys are 32 bytes) are carved from shared pages, so a
// thousand instance keys cost a few pages; blocks larger than a slot get a
// mapping of their own, unmapped when freed.
//
// The arena behind it is process-wide, like malloc beside which it stands:
// a SecretKey can be made anywhere (HKDF, the DRBG, a worker thread's copy)
// and needs no owner to be handed around. A mutex guards it.
#pragma once

#include <cstddef>
#include <cstdint>
#include <limits>
#include <new>
#include <span>
#include <vector>

namespace vtpm::state {

// Zeroed memory from the arena; throws std::bad_alloc when the kernel
// refuses a mapping.
void* secure_allocate(std::size_t size);
// Wipes and returns the block (size: as allocated).
void secure_deallocate(void* block, std::size_t size) noexcept;

struct SecureMemoryStats {
  std::size_t mapped_bytes = 0;  // pages the arena holds (all MADV_DONTDUMP)
  std::size_t locked_bytes = 0;  // of those, locked in RAM
  std::size_t blocks_in_use = 0;
};
SecureMemoryStats secure_memory_stats();

// One owned block of secure memory (RAII, move-only).
class SecureBlock {
 public:
  SecureBlock() = default;
  explicit SecureBlock(std::size_t size) : data_(static_cast<std::uint8_t*>(secure_allocate(size))), size_(size) {}
  ~SecureBlock() { reset(); }
  SecureBlock(SecureBlock&& other) noexcept : data_(other.data_), size_(other.size_) {
    other.data_ = nullptr;
    other.size_ = 0;
  }
  SecureBlock& operator=(SecureBlock&& other) noexcept {
    if (this != &other) {
      reset();
      data_ = other.data_;
      size_ = other.size_;
      other.data_ = nullptr;
      other.size_ = 0;
    }
    return *this;
  }
  SecureBlock(const SecureBlock&) = delete;
  SecureBlock& operator=(const SecureBlock&) = delete;

  std::span<std::uint8_t> bytes() { return {data_, size_}; }
  std::span<const std::uint8_t> bytes() const { return {data_, size_}; }

 private:
  void reset() {
    if (data_ != nullptr) secure_deallocate(data_, size_);
    data_ = nullptr;
    size_ = 0;
  }
  std::uint8_t* data_ = nullptr;
  std::size_t size_ = 0;
};

// A standard allocator over the arena: a container using it keeps every
// buffer it ever had (growth included) out of cores, and wipes each one.
template <class T>
struct SecureAllocator {
  using value_type = T;
  SecureAllocator() = default;
  template <class U>
  SecureAllocator(const SecureAllocator<U>&) noexcept {}
  T* allocate(std::size_t n) {
    if (n > std::numeric_limits<std::size_t>::max() / sizeof(T)) throw std::bad_array_new_length();
    return static_cast<T*>(secure_allocate(n * sizeof(T)));
  }
  void deallocate(T* p, std::size_t n) noexcept { secure_deallocate(p, n * sizeof(T)); }
  template <class U>
  bool operator==(const SecureAllocator<U>&) const noexcept {
    return true;
  }
};

// Plaintext that must not outlive its use: what aes_gcm_open returns.
using SecureBytes = std::vector<std::uint8_t, SecureAllocator<std::uint8_t>>;

// Wipes ordinary memory that held a secret (a compiler may not elide it).
void wipe(std::span<std::uint8_t> bytes) noexcept;

}  // namespace vtpm::state
