#include "state/crypto.h"

#include <mbedtls/ctr_drbg.h>
#include <mbedtls/entropy.h>
#include <mbedtls/gcm.h>
#include <mbedtls/hkdf.h>
#include <mbedtls/md.h>
#include <mbedtls/platform_util.h>
#include <mbedtls/sha256.h>

#include <algorithm>
#include <string>

namespace vtpm::state {
namespace {

const mbedtls_md_info_t* sha256_info() { return mbedtls_md_info_from_type(MBEDTLS_MD_SHA256); }

class Gcm {
 public:
  explicit Gcm(const SecretKey& key) {
    mbedtls_gcm_init(&ctx_);
    ok_ = mbedtls_gcm_setkey(&ctx_, MBEDTLS_CIPHER_ID_AES, key.bytes().data(), kKeySize * 8) == 0;
  }
  ~Gcm() { mbedtls_gcm_free(&ctx_); }
  Gcm(const Gcm&) = delete;
  Gcm& operator=(const Gcm&) = delete;
  bool ok() const { return ok_; }
  mbedtls_gcm_context* get() { return &ctx_; }

 private:
  mbedtls_gcm_context ctx_;
  bool ok_ = false;
};

}  // namespace

SecretKey::SecretKey(std::span<const std::uint8_t> bytes) : block_(kKeySize) {
  std::copy_n(bytes.begin(), std::min(bytes.size(), kKeySize), block_.bytes().begin());
}

// A copy of a moved-from (empty) key is all zeros, like a default key.
SecretKey::SecretKey(const SecretKey& other) : block_(kKeySize) {
  std::copy(other.bytes().begin(), other.bytes().end(), block_.bytes().begin());
}

SecretKey& SecretKey::operator=(const SecretKey& other) {
  if (this != &other) {
    if (block_.bytes().size() != kKeySize) block_ = SecureBlock(kKeySize);
    std::fill(block_.bytes().begin(), block_.bytes().end(), std::uint8_t{0});
    std::copy(other.bytes().begin(), other.bytes().end(), block_.bytes().begin());
  }
  return *this;
}

struct Drbg::Contexts {
  mbedtls_entropy_context entropy;
  mbedtls_ctr_drbg_context drbg;
  Contexts() {
    mbedtls_entropy_init(&entropy);
    mbedtls_ctr_drbg_init(&drbg);
  }
  ~Contexts() {
    mbedtls_ctr_drbg_free(&drbg);
    mbedtls_entropy_free(&entropy);
  }
};

Drbg::Drbg() : contexts_(std::make_unique<Contexts>()) {
  static constexpr char kPersonalization[] = "vtpmd state store";
  const int rc = mbedtls_ctr_drbg_seed(&contexts_->drbg, mbedtls_entropy_func, &contexts_->entropy,
                                       reinterpret_cast<const unsigned char*>(kPersonalization),
                                       sizeof kPersonalization - 1);
  if (rc != 0) seed_status_ = make_error(ErrorCode::kInternal, "cannot seed the DRBG: mbedTLS error " + std::to_string(rc));
}

Drbg::~Drbg() = default;

Status Drbg::fill(std::span<std::uint8_t> out) {
  if (!seed_status_) return seed_status_;
  // mbedTLS limits one request to MBEDTLS_CTR_DRBG_MAX_REQUEST bytes.
  while (!out.empty()) {
    const std::size_t n = std::min<std::size_t>(out.size(), MBEDTLS_CTR_DRBG_MAX_REQUEST);
    if (int rc = mbedtls_ctr_drbg_random(&contexts_->drbg, out.data(), n); rc != 0) {
      return make_error(ErrorCode::kInternal, "DRBG failed: mbedTLS error " + std::to_string(rc));
    }
    out = out.subspan(n);
  }
  return Status::success();
}

Result<SecretKey> Drbg::new_key() {
  SecretKey key;
  if (Status s = fill(key.mutable_bytes()); !s) return s.error();
  return key;
}

Result<Nonce> Drbg::new_nonce() {
  Nonce nonce{};
  if (Status s = fill(nonce); !s) return s.error();
  return nonce;
}

Digest sha256(std::span<const std::uint8_t> data) {
  Digest d{};
  mbedtls_sha256_ret(data.data(), data.size(), d.data(), 0);
  return d;
}

Digest hmac_sha256(const SecretKey& key, std::span<const std::uint8_t> data) {
  Digest d{};
  mbedtls_md_hmac(sha256_info(), key.bytes().data(), key.bytes().size(), data.data(), data.size(), d.data());
  return d;
}

SecretKey hkdf_sha256(const SecretKey& ikm, std::span<const std::uint8_t> salt, std::span<const std::uint8_t> info) {
  SecretKey out;
  mbedtls_hkdf(sha256_info(), salt.data(), salt.size(), ikm.bytes().data(), ikm.bytes().size(), info.data(),
               info.size(), out.mutable_bytes().data(), kKeySize);
  return out;
}

bool equal_in_constant_time(std::span<const std::uint8_t> a, std::span<const std::uint8_t> b) {
  if (a.size() != b.size()) return false;
  std::uint8_t diff = 0;
  for (std::size_t i = 0; i < a.size(); ++i) diff |= static_cast<std::uint8_t>(a[i] ^ b[i]);
  return diff == 0;
}

Bytes aes_gcm_seal(const SecretKey& key, const Nonce& nonce, std::span<const std::uint8_t> aad,
                   std::span<const std::uint8_t> plaintext) {
  Gcm gcm(key);
  Bytes out(plaintext.size() + kTagSize);
  mbedtls_gcm_crypt_and_tag(gcm.get(), MBEDTLS_GCM_ENCRYPT, plaintext.size(), nonce.data(), nonce.size(), aad.data(),
                            aad.size(), plaintext.data(), out.data(), kTagSize, out.data() + plaintext.size());
  return out;
}

Result<SecureBytes> aes_gcm_open(const SecretKey& key, const Nonce& nonce, std::span<const std::uint8_t> aad,
                           std::span<const std::uint8_t> sealed) {
  if (sealed.size() < kTagSize) return make_error(ErrorCode::kCorrupt, "sealed data shorter than its tag");
  Gcm gcm(key);
  if (!gcm.ok()) return make_error(ErrorCode::kInternal, "cannot set the AES key");
  const std::size_t n = sealed.size() - kTagSize;
  SecureBytes out(n);
  const int rc = mbedtls_gcm_auth_decrypt(gcm.get(), n, nonce.data(), nonce.size(), aad.data(), aad.size(),
                                          sealed.data() + n, kTagSize, sealed.data(), out.data());
  if (rc != 0) {
    return make_error(ErrorCode::kCorrupt, "authentication failed (modified, truncated or sealed under another key)");
  }
  return out;
}

}  // namespace vtpm::state
