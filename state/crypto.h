// The cryptography of the state store, on mbedTLS: AES-256-GCM, HKDF-SHA256,
// HMAC-SHA256, SHA-256 and a CTR-DRBG. RAII for every mbedTLS context; key
// material and decrypted plaintext live in secure memory (state/secure_memory.h:
// out of core dumps, locked where allowed, wiped on free).
#pragma once

#include <array>
#include <cstdint>
#include <memory>
#include <span>
#include <string_view>

#include "proto/result.h"
#include "state/bytes.h"
#include "state/secure_memory.h"

namespace vtpm::state {

constexpr std::size_t kKeySize = 32;
constexpr std::size_t kNonceSize = 12;
constexpr std::size_t kTagSize = 16;
constexpr std::size_t kDigestSize = 32;

using Digest = std::array<std::uint8_t, kDigestSize>;
using Nonce = std::array<std::uint8_t, kNonceSize>;

// A 256-bit secret in secure memory (zero until filled). Copyable (the
// persister hands copies to worker threads); every copy has its own block,
// wiped when it goes. A moved-from key is empty.
class SecretKey {
 public:
  SecretKey() : block_(kKeySize) {}
  explicit SecretKey(std::span<const std::uint8_t> bytes);
  SecretKey(const SecretKey& other);
  SecretKey& operator=(const SecretKey& other);
  SecretKey(SecretKey&&) noexcept = default;
  SecretKey& operator=(SecretKey&&) noexcept = default;
  ~SecretKey() = default;
  std::span<const std::uint8_t> bytes() const { return block_.bytes(); }
  std::span<std::uint8_t> mutable_bytes() { return block_.bytes(); }

 private:
  SecureBlock block_;
};

// mbedTLS CTR-DRBG seeded from the platform entropy source. Not
// thread-safe: one owner thread.
class Drbg {
 public:
  Drbg();
  ~Drbg();
  Drbg(const Drbg&) = delete;
  Drbg& operator=(const Drbg&) = delete;
  Status seeded() const { return seed_status_; }
  Status fill(std::span<std::uint8_t> out);
  Result<SecretKey> new_key();
  Result<Nonce> new_nonce();

 private:
  struct Contexts;
  std::unique_ptr<Contexts> contexts_;
  Status seed_status_ = Status::success();
};

Digest sha256(std::span<const std::uint8_t> data);
Digest hmac_sha256(const SecretKey& key, std::span<const std::uint8_t> data);
SecretKey hkdf_sha256(const SecretKey& ikm, std::span<const std::uint8_t> salt, std::span<const std::uint8_t> info);
// Constant-time comparison of equal-length byte strings.
bool equal_in_constant_time(std::span<const std::uint8_t> a, std::span<const std::uint8_t> b);

// ciphertext || tag.
Bytes aes_gcm_seal(const SecretKey& key, const Nonce& nonce, std::span<const std::uint8_t> aad,
                   std::span<const std::uint8_t> plaintext);
// Fails (kCorrupt) unless the tag authenticates aad and ciphertext. The
// plaintext comes back in secure memory.
Result<SecureBytes> aes_gcm_open(const SecretKey& key, const Nonce& nonce, std::span<const std::uint8_t> aad,
                           std::span<const std::uint8_t> sealed);

inline std::span<const std::uint8_t> as_bytes(std::string_view s) {
  return {reinterpret_cast<const std::uint8_t*>(s.data()), s.size()};
}

}  // namespace vtpm::state
