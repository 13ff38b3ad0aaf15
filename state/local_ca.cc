#include "state/local_ca.h"

#include <mbedtls/ecp.h>
#include <mbedtls/pk.h>
#include <mbedtls/x509_crt.h>

#include <array>
#include <cstring>
#include <ctime>

#include "state/certificates.h"
#include "state/file_io.h"

namespace vtpm::state {
namespace {

constexpr std::array<std::uint8_t, 8> kMagic = {'V', 'T', 'P', 'M', 'C', 'A', 'K', '1'};

Error mbedtls_failure(const std::string& what, int rc) {
  return make_error(ErrorCode::kInternal, "local CA: " + what + " failed (mbedTLS " + std::to_string(rc) + ")");
}

Error corrupt(const std::string& path, const std::string& what) {
  return make_error(ErrorCode::kCorrupt, "local CA " + path + ": " + what +
                                             " (remove ca.key and ca.pem together to create a new CA; "
                                             "certificates it issued will no longer verify)");
}

}  // namespace

int drbg_random(void* drbg, unsigned char* out, std::size_t size) {
  return static_cast<Drbg*>(drbg)->fill({out, size}) ? 0 : -1;
}

struct LocalCa::Key {
  mbedtls_pk_context pk;
  Key() { mbedtls_pk_init(&pk); }
  ~Key() { mbedtls_pk_free(&pk); }
  Key(const Key&) = delete;
  Key& operator=(const Key&) = delete;
};

LocalCa::LocalCa(Token, Drbg& drbg) : key_(std::make_unique<Key>()), drbg_(drbg) {}

LocalCa::~LocalCa() = default;

mbedtls_pk_context* LocalCa::key() const { return &key_->pk; }

Result<std::unique_ptr<LocalCa>> LocalCa::open(const std::string& directory, const MasterKey& master, Drbg& drbg) {
  auto ca = std::make_unique<LocalCa>(Token{}, drbg);
  const bool have_key = file_exists(directory + "/ca.key");
  const bool have_cert = file_exists(directory + "/ca.pem");
  if (have_key != have_cert) {
    return corrupt(directory + (have_key ? "/ca.pem" : "/ca.key"), "missing while its partner exists");
  }
  Status s = have_key ? ca->load(directory, master) : ca->create(directory, master);
  if (!s) return s.error();
  return ca;
}

Status LocalCa::create(const std::string& directory, const MasterKey& master) {
  int rc = mbedtls_pk_setup(key(), mbedtls_pk_info_from_type(MBEDTLS_PK_ECKEY));
  if (rc != 0) return mbedtls_failure("pk_setup", rc);
  rc = mbedtls_ecp_gen_key(MBEDTLS_ECP_DP_SECP256R1, mbedtls_pk_ec(*key()), drbg_random, &drbg_);
  if (rc != 0) return mbedtls_failure("P-256 key generation", rc);

  auto der = self_signed_ca_certificate(*this);
  if (!der) return der.error();
  certificate_der_ = std::move(*der);
  certificate_pem_ = der_to_pem(certificate_der_, "CERTIFICATE");

  std::array<std::uint8_t, 512> key_buffer{};
  const int key_len = mbedtls_pk_write_key_der(key(), key_buffer.data(), key_buffer.size());
  if (key_len <= 0) return mbedtls_failure("writing the CA key", key_len);
  const std::span<const std::uint8_t> key_der(key_buffer.data() + key_buffer.size() - key_len,
                                              static_cast<std::size_t>(key_len));
  auto nonce = drbg_.new_nonce();
  if (!nonce) return nonce.error();
  Bytes file(kMagic.begin(), kMagic.end());
  file.insert(file.end(), nonce->begin(), nonce->end());
  const Bytes sealed = aes_gcm_seal(derive_ca_wrapping_key(master), *nonce, kMagic, key_der);
  file.insert(file.end(), sealed.begin(), sealed.end());
  std::fill(key_buffer.begin(), key_buffer.end(), 0);

  // The key first: a crash between the two leaves ca.key without ca.pem,
  // which open() reports rather than silently replacing the CA.
  if (Status w = replace_file(directory + "/ca.key", file); !w) return w;
  if (Status w = replace_file(directory + "/ca.pem", as_bytes(certificate_pem_)); !w) return w;
  if (Status w = sync_directory(directory); !w) return w;
  created_ = true;
  return Status::success();
}

Status LocalCa::load(const std::string& directory, const MasterKey& master) {
  const std::string key_path = directory + "/ca.key";
  auto file = read_whole_file(key_path);
  if (!file) return file.error();
  if (file->size() < kMagic.size() + kNonceSize + kTagSize ||
      !std::equal(kMagic.begin(), kMagic.end(), file->begin())) {
    return corrupt(key_path, "not a vtpmd CA key file");
  }
  Nonce nonce{};
  std::copy_n(file->begin() + kMagic.size(), kNonceSize, nonce.begin());
  const std::span<const std::uint8_t> sealed(file->data() + kMagic.size() + kNonceSize,
                                             file->size() - kMagic.size() - kNonceSize);
  auto key_der = aes_gcm_open(derive_ca_wrapping_key(master), nonce, kMagic, sealed);
  if (!key_der) return corrupt(key_path, "does not open under this master key");
  int rc = mbedtls_pk_parse_key(key(), key_der->data(), key_der->size(), nullptr, 0);
  std::fill(key_der->begin(), key_der->end(), 0);
  if (rc != 0) return corrupt(key_path, "unreadable key (mbedTLS " + std::to_string(rc) + ")");

  const std::string cert_path = directory + "/ca.pem";
  auto pem = read_whole_file(cert_path);
  if (!pem) return pem.error();
  certificate_pem_.assign(pem->begin(), pem->end());
  ParsedCertificate crt;
  rc = crt.parse_pem(certificate_pem_);
  const bool pair = rc == 0 && mbedtls_pk_check_pair(&crt.get()->pk, key()) == 0;
  if (rc == 0) certificate_der_.assign(crt.get()->raw.p, crt.get()->raw.p + crt.get()->raw.len);
  if (rc != 0) return corrupt(cert_path, "unreadable certificate (mbedTLS " + std::to_string(rc) + ")");
  if (!pair) return corrupt(cert_path, "the certificate does not belong to ca.key");
  return Status::success();
}

}  // namespace vtpm::state
