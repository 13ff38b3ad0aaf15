// The local certificate authority that issues vtpmd's EK and platform
// certificates (docs/provisioning.md). One per state directory:
//
//   ca.key   "VTPMCAK1", nonce, AES-256-GCM(private key DER) under a key
//            derived from the master key (derive_ca_wrapping_key), so the CA
//            key is protected by the same root of trust as the instances
//   ca.pem   the self-signed CA certificate (public; `vtpmctl ca-cert`)
//
// The key is ECDSA P-256, the signatures ECDSA with SHA-256. Created on the
// first start with this state directory; later starts load it and check
// that certificate and key belong together.
//
// Thread affinity: the loop thread (open() at start-up, where blocking on
// the disk is allowed; signing takes about a millisecond).
#pragma once

#include <memory>
#include <string>

#include "proto/result.h"
#include "state/bytes.h"
#include "state/crypto.h"
#include "state/key_hierarchy.h"

typedef struct mbedtls_pk_context mbedtls_pk_context;

namespace vtpm::state {

class LocalCa {
  struct Token {
    explicit Token() = default;
  };

 public:
  // Subject (and issuer of everything it signs), in mbedTLS' string form.
  static constexpr const char* kSubject = "CN=vtpmd local EK CA,O=vtpmd";

  static Result<std::unique_ptr<LocalCa>> open(const std::string& directory, const MasterKey& master, Drbg& drbg);
  LocalCa(Token, Drbg& drbg);  // for open() only
  ~LocalCa();
  LocalCa(const LocalCa&) = delete;
  LocalCa& operator=(const LocalCa&) = delete;

  const std::string& certificate_pem() const { return certificate_pem_; }
  const Bytes& certificate_der() const { return certificate_der_; }
  // The signing key, for the certificate builders (state/certificates.h).
  mbedtls_pk_context* key() const;
  Drbg& drbg() const { return drbg_; }
  bool created() const { return created_; }  // made by this start

 private:
  struct Key;  // the mbedTLS key context, initialised and freed by RAII
  Status create(const std::string& directory, const MasterKey& master);
  Status load(const std::string& directory, const MasterKey& master);

  std::unique_ptr<Key> key_;
  Drbg& drbg_;
  std::string certificate_pem_;
  Bytes certificate_der_;
  bool created_ = false;
};

// mbedTLS' random-number callback over a Drbg (p_rng is the Drbg).
int drbg_random(void* drbg, unsigned char* out, std::size_t size);

}  // namespace vtpm::state
