#include "state/certificates.h"

#include <doctest/doctest.h>
#include <mbedtls/asn1.h>
#include <mbedtls/ecp.h>
#include <mbedtls/oid.h>
#include <mbedtls/pk.h>
#include <mbedtls/rsa.h>
#include <mbedtls/sha256.h>
#include <mbedtls/x509_crt.h>
#include <stdlib.h>

#include <filesystem>
#include <fstream>
#include <string>

#include "state/file_io.h"
#include "state/local_ca.h"

#include "tests/unit/support/temp_dir.h"

namespace vtpm::state {
namespace {

namespace fs = std::filesystem;

using vtpm::testing::TempDir;

MasterKey master_of(std::uint8_t fill) {
  MasterKey m;
  m.key = SecretKey(Bytes(32, fill));
  return m;
}

// A parsed certificate, freed on scope exit.
struct Crt {
  mbedtls_x509_crt crt;
  Crt() { mbedtls_x509_crt_init(&crt); }
  ~Crt() { mbedtls_x509_crt_free(&crt); }
  int parse(const Bytes& der) { return mbedtls_x509_crt_parse_der(&crt, der.data(), der.size()); }
};

struct Pk {
  mbedtls_pk_context pk;
  Pk() { mbedtls_pk_init(&pk); }
  ~Pk() { mbedtls_pk_free(&pk); }
};

// An EK-shaped public key from a freshly generated mbedTLS key.
tpm2::PublicKey generate(tpm2::EkKind kind, Drbg& drbg, Pk& key) {
  tpm2::PublicKey out;
  out.kind = kind;
  if (kind == tpm2::EkKind::kEccP256) {
    REQUIRE(mbedtls_pk_setup(&key.pk, mbedtls_pk_info_from_type(MBEDTLS_PK_ECKEY)) == 0);
    REQUIRE(mbedtls_ecp_gen_key(MBEDTLS_ECP_DP_SECP256R1, mbedtls_pk_ec(key.pk), drbg_random, &drbg) == 0);
    out.ecc_x.resize(32);
    out.ecc_y.resize(32);
    REQUIRE(mbedtls_mpi_write_binary(&mbedtls_pk_ec(key.pk)->Q.X, out.ecc_x.data(), 32) == 0);
    REQUIRE(mbedtls_mpi_write_binary(&mbedtls_pk_ec(key.pk)->Q.Y, out.ecc_y.data(), 32) == 0);
  } else {
    REQUIRE(mbedtls_pk_setup(&key.pk, mbedtls_pk_info_from_type(MBEDTLS_PK_RSA)) == 0);
    REQUIRE(mbedtls_rsa_gen_key(mbedtls_pk_rsa(key.pk), drbg_random, &drbg, 2048, 65537) == 0);
    out.rsa_modulus.resize(256);
    REQUIRE(mbedtls_rsa_export_raw(mbedtls_pk_rsa(key.pk), out.rsa_modulus.data(), 256, nullptr, 0, nullptr, 0,
                                   nullptr, 0, nullptr, 0) == 0);
  }
  return out;
}

Bytes public_der(mbedtls_pk_context* pk) {
  std::array<unsigned char, 1024> buf{};
  const int n = mbedtls_pk_write_pubkey_der(pk, buf.data(), buf.size());
  REQUIRE(n > 0);
  return Bytes(buf.end() - n, buf.end());
}

const TpmIdentity kTpm = {"id:49424D00", "SW TPM", "id:20191023", 0, 164};

}  // namespace

TEST_CASE("local CA: created once, then loaded; its key is sealed under the master key") {
  TempDir dir;
  Drbg drbg;
  auto ca = LocalCa::open(dir.path(), master_of(1), drbg);
  REQUIRE(ca.ok());
  CHECK((*ca)->created());
  CHECK((*ca)->certificate_pem().rfind("-----BEGIN CERTIFICATE-----\n", 0) == 0);
  const Bytes sealed = read_whole_file(dir.path() + "/ca.key").value();
  CHECK(std::string(sealed.begin(), sealed.begin() + 8) == "VTPMCAK1");

  Crt self;
  REQUIRE(self.parse((*ca)->certificate_der()) == 0);
  CHECK(self.crt.ca_istrue == 1);
  std::uint32_t flags = 0;
  CHECK(mbedtls_x509_crt_verify(&self.crt, &self.crt, nullptr, nullptr, &flags, nullptr, nullptr) == 0);

  auto again = LocalCa::open(dir.path(), master_of(1), drbg);
  REQUIRE(again.ok());
  CHECK_FALSE((*again)->created());
  CHECK((*again)->certificate_der() == (*ca)->certificate_der());

  SUBCASE("another master key cannot open it") {
    auto wrong = LocalCa::open(dir.path(), master_of(2), drbg);
    REQUIRE_FALSE(wrong.ok());
    CHECK(wrong.error().code == ErrorCode::kCorrupt);
  }
  SUBCASE("a flipped bit in ca.key is detected") {
    Bytes damaged = sealed;
    damaged.back() ^= 1;
    REQUIRE(replace_file(dir.path() + "/ca.key", damaged).ok());
    CHECK(LocalCa::open(dir.path(), master_of(1), drbg).error().code == ErrorCode::kCorrupt);
  }
  SUBCASE("ca.pem without ca.key (or the reverse) is refused, not replaced") {
    fs::remove(dir.path() + "/ca.pem");
    auto half = LocalCa::open(dir.path(), master_of(1), drbg);
    REQUIRE_FALSE(half.ok());
    CHECK(half.error().message.find("ca.pem") != std::string::npos);
  }
}

TEST_CASE("EK certificates chain to the CA and carry the profile's fields") {
  TempDir dir;
  Drbg drbg;
  auto ca = LocalCa::open(dir.path(), master_of(1), drbg).value();
  Crt ca_crt;
  REQUIRE(ca_crt.parse(ca->certificate_der()) == 0);
  for (const auto kind : {tpm2::EkKind::kRsa2048, tpm2::EkKind::kEccP256}) {
    CAPTURE(tpm2::ek_name(kind));
    Pk key;
    const tpm2::PublicKey ek = generate(kind, drbg, key);
    auto issued = issue_ek_certificate(*ca, ek, kTpm);
    REQUIRE(issued.ok());
    Crt crt;
    REQUIRE(crt.parse(issued->der) == 0);
    std::uint32_t flags = 0;
    CHECK(mbedtls_x509_crt_verify(&crt.crt, &ca_crt.crt, nullptr, nullptr, &flags, nullptr, nullptr) == 0);
    CHECK(crt.crt.version == 3);
    CHECK(crt.crt.subject_raw.len == 2);  // an empty Name: 30 00
    CHECK(crt.crt.ca_istrue == 0);
    CHECK(public_der(&crt.crt.pk) == public_der(&key.pk));
    const unsigned usage =
        kind == tpm2::EkKind::kRsa2048 ? MBEDTLS_X509_KU_KEY_ENCIPHERMENT : MBEDTLS_X509_KU_KEY_AGREEMENT;
    CHECK(mbedtls_x509_crt_check_key_usage(&crt.crt, usage) == 0);
    CHECK(mbedtls_x509_crt_check_key_usage(&crt.crt, MBEDTLS_X509_KU_DIGITAL_SIGNATURE) != 0);
    const char ek_oid[] = "\x67\x81\x05\x08\x01";
    CHECK(mbedtls_x509_crt_check_extended_key_usage(&crt.crt, ek_oid, sizeof ek_oid - 1) == 0);
    CHECK(mbedtls_x509_crt_check_extended_key_usage(&crt.crt, MBEDTLS_OID_SERVER_AUTH,
                                                    MBEDTLS_OID_SIZE(MBEDTLS_OID_SERVER_AUTH)) != 0);
    // The TPM's identity is in the certificate, as UTF8Strings.
    const std::string der(issued->der.begin(), issued->der.end());
    for (const std::string& field : {kTpm.manufacturer, kTpm.model, kTpm.version}) {
      CHECK(der.find("\x0c" + std::string(1, static_cast<char>(field.size())) + field) != std::string::npos);
    }
    Bytes serial(crt.crt.serial.p, crt.crt.serial.p + crt.crt.serial.len);
    CHECK(serial == issued->serial);
  }
}

TEST_CASE("the platform certificate is an attribute certificate signed by the CA") {
  TempDir dir;
  Drbg drbg;
  auto ca = LocalCa::open(dir.path(), master_of(1), drbg).value();
  Pk key;
  const auto ek = issue_ek_certificate(*ca, generate(tpm2::EkKind::kEccP256, drbg, key), kTpm).value();
  PlatformIdentity platform;
  platform.version = "1.0";
  platform.serial = "6f1c2d3e-4a5b-4c6d-8e7f-0123456789ab";
  const Bytes cert = issue_platform_certificate(*ca, ek, platform).value();

  // AttributeCertificate ::= SEQUENCE { acinfo, signatureAlgorithm, signatureValue }
  unsigned char* p = const_cast<unsigned char*>(cert.data());
  const unsigned char* end = p + cert.size();
  std::size_t len = 0;
  REQUIRE(mbedtls_asn1_get_tag(&p, end, &len, MBEDTLS_ASN1_CONSTRUCTED | MBEDTLS_ASN1_SEQUENCE) == 0);
  CHECK(p + len == end);
  unsigned char* info_start = p;
  REQUIRE(mbedtls_asn1_get_tag(&p, end, &len, MBEDTLS_ASN1_CONSTRUCTED | MBEDTLS_ASN1_SEQUENCE) == 0);
  p += len;
  const std::size_t info_len = static_cast<std::size_t>(p - info_start);
  mbedtls_asn1_buf algorithm{};
  REQUIRE(mbedtls_asn1_get_alg_null(&p, end, &algorithm) == 0);
  CHECK(MBEDTLS_OID_CMP(MBEDTLS_OID_ECDSA_SHA256, &algorithm) == 0);
  mbedtls_asn1_bitstring signature{};
  REQUIRE(mbedtls_asn1_get_bitstring(&p, end, &signature) == 0);
  CHECK(p == end);

  std::array<unsigned char, 32> hash{};
  REQUIRE(mbedtls_sha256_ret(info_start, info_len, hash.data(), 0) == 0);
  Crt ca_crt;
  REQUIRE(ca_crt.parse(ca->certificate_der()) == 0);
  CHECK(mbedtls_pk_verify(&ca_crt.crt.pk, MBEDTLS_MD_SHA256, hash.data(), hash.size(), signature.p, signature.len) == 0);
  hash[0] ^= 1;
  CHECK(mbedtls_pk_verify(&ca_crt.crt.pk, MBEDTLS_MD_SHA256, hash.data(), hash.size(), signature.p, signature.len) != 0);

  const std::string der(cert.begin(), cert.end());
  CHECK(der.find(platform.serial) != std::string::npos);
  CHECK(der.find(std::string(ek.serial.begin(), ek.serial.end())) != std::string::npos);  // the holder
  CHECK(der.find("\x06\x05\x67\x81\x05\x08\x02") != std::string::npos);  // tcg-kp-PlatformAttributeCertificate
}

TEST_CASE("der_to_pem wraps DER in the named PEM armour") {
  const std::string pem = der_to_pem(Bytes{0x30, 0x00}, "CERTIFICATE");
  CHECK(pem == "-----BEGIN CERTIFICATE-----\nMAA=\n-----END CERTIFICATE-----\n");
}

}  // namespace vtpm::state
