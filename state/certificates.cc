#include "state/certificates.h"

#include <mbedtls/asn1write.h>
#include <mbedtls/bignum.h>
#include <mbedtls/ecp.h>
#include <mbedtls/oid.h>
#include <mbedtls/pem.h>
#include <mbedtls/pk.h>
#include <mbedtls/rsa.h>
#include <mbedtls/sha1.h>
#include <mbedtls/sha256.h>
#include <mbedtls/x509_crt.h>

#include <array>
#include <ctime>
#include <initializer_list>
#include <string_view>

#include "state/local_ca.h"

namespace vtpm::state {
namespace {

// OIDs as the content bytes of their DER encoding.
constexpr std::string_view kOidTpmManufacturer = "\x67\x81\x05\x02\x01";           // 2.23.133.2.1
constexpr std::string_view kOidTpmModel = "\x67\x81\x05\x02\x02";                  // 2.23.133.2.2
constexpr std::string_view kOidTpmVersion = "\x67\x81\x05\x02\x03";                // 2.23.133.2.3
constexpr std::string_view kOidTpmSpecification = "\x67\x81\x05\x02\x10";          // 2.23.133.2.16
constexpr std::string_view kOidPlatformSpecification = "\x67\x81\x05\x02\x11";     // 2.23.133.2.17
constexpr std::string_view kOidCredentialSpecification = "\x67\x81\x05\x02\x17";   // 2.23.133.2.23
constexpr std::string_view kOidCredentialType = "\x67\x81\x05\x02\x19";            // 2.23.133.2.25
constexpr std::string_view kOidEkCertificate = "\x67\x81\x05\x08\x01";             // tcg-kp-EKCertificate
constexpr std::string_view kOidPlatformAttributeCertificate = "\x67\x81\x05\x08\x02";
constexpr std::string_view kOidPlatformManufacturer = "\x67\x81\x05\x05\x01\x01";  // 2.23.133.5.1.1
constexpr std::string_view kOidPlatformModel = "\x67\x81\x05\x05\x01\x04";         // 2.23.133.5.1.4
constexpr std::string_view kOidPlatformVersion = "\x67\x81\x05\x05\x01\x05";       // 2.23.133.5.1.5
constexpr std::string_view kOidPlatformSerial = "\x67\x81\x05\x05\x01\x06";        // 2.23.133.5.1.6
constexpr std::string_view kOidSubjectDirectoryAttributes = "\x55\x1d\x09";        // 2.5.29.9
constexpr std::string_view kOidSubjectAltName = MBEDTLS_OID_SUBJECT_ALT_NAME;
constexpr std::string_view kOidAuthorityKeyId = MBEDTLS_OID_AUTHORITY_KEY_IDENTIFIER;
constexpr std::string_view kOidExtendedKeyUsage = MBEDTLS_OID_EXTENDED_KEY_USAGE;
constexpr std::string_view kOidEcdsaSha256 = MBEDTLS_OID_ECDSA_SHA256;

// RFC 5280's "no well-defined expiration date": EKs live as long as the TPM.
constexpr const char* kNotAfter = "99991231235959";

Error failure(const std::string& what, int rc) {
  return make_error(ErrorCode::kInternal, "certificate: " + what + " failed (mbedTLS " + std::to_string(rc) + ")");
}

// ---- DER assembly (front to back, over mbedTLS' length/tag writers) ----

Bytes tlv(unsigned char tag, std::span<const std::uint8_t> content) {
  std::array<unsigned char, 16> head{};
  unsigned char* p = head.data() + head.size();
  mbedtls_asn1_write_len(&p, head.data(), content.size());
  mbedtls_asn1_write_tag(&p, head.data(), tag);
  Bytes out(p, head.data() + head.size());
  out.insert(out.end(), content.begin(), content.end());
  return out;
}

Bytes cat(std::initializer_list<Bytes> parts) {
  Bytes out;
  for (const Bytes& b : parts) out.insert(out.end(), b.begin(), b.end());
  return out;
}

Bytes sequence(std::initializer_list<Bytes> parts) {
  return tlv(MBEDTLS_ASN1_CONSTRUCTED | MBEDTLS_ASN1_SEQUENCE, cat(parts));
}
Bytes set_of(std::initializer_list<Bytes> parts) { return tlv(MBEDTLS_ASN1_CONSTRUCTED | MBEDTLS_ASN1_SET, cat(parts)); }
Bytes oid(std::string_view content) { return tlv(MBEDTLS_ASN1_OID, as_bytes(content)); }
Bytes utf8(std::string_view text) { return tlv(MBEDTLS_ASN1_UTF8_STRING, as_bytes(text)); }
Bytes context(unsigned char number, const Bytes& content) {
  return tlv(MBEDTLS_ASN1_CONTEXT_SPECIFIC | MBEDTLS_ASN1_CONSTRUCTED | number, content);
}

Bytes integer(std::uint32_t value) {
  std::array<unsigned char, 16> buf{};
  unsigned char* p = buf.data() + buf.size();
  mbedtls_asn1_write_int(&p, buf.data(), static_cast<int>(value & 0x7fffffff));
  return Bytes(p, buf.data() + buf.size());
}

Bytes positive_integer(std::span<const std::uint8_t> big_endian) {
  Bytes content;
  if (big_endian.empty() || (big_endian[0] & 0x80) != 0) content.push_back(0);
  content.insert(content.end(), big_endian.begin(), big_endian.end());
  return tlv(MBEDTLS_ASN1_INTEGER, content);
}

// One AttributeTypeAndValue per RDN: type OID, UTF8String value.
Bytes rdn(std::string_view type, std::string_view value) { return set_of({sequence({oid(type), utf8(value)})}); }

// GeneralNames with one directoryName.
Bytes directory_name(const Bytes& name) { return sequence({context(4, name)}); }

std::string utc_now(const char* format) {
  const std::time_t t = std::time(nullptr);
  std::tm utc{};
  gmtime_r(&t, &utc);
  char buf[32];
  std::strftime(buf, sizeof buf, format, &utc);
  return buf;
}

// A positive 16-byte serial number.
Result<Bytes> random_serial(Drbg& drbg) {
  Bytes serial(16);
  if (Status s = drbg.fill(serial); !s) return s.error();
  serial[0] = static_cast<std::uint8_t>((serial[0] & 0x7f) | 0x40);
  return serial;
}

// keyIdentifier as mbedTLS computes it: SHA-1 of the subjectPublicKey bits.
Result<Bytes> key_identifier(mbedtls_pk_context* key) {
  std::array<unsigned char, 1024> buf{};
  unsigned char* p = buf.data() + buf.size();
  const int len = mbedtls_pk_write_pubkey(&p, buf.data(), key);
  if (len < 0) return failure("writing the CA public key", len);
  Bytes id(20);
  if (int rc = mbedtls_sha1_ret(p, static_cast<std::size_t>(len), id.data()); rc != 0) return failure("SHA-1", rc);
  return id;
}

// RAII for mbedTLS' certificate writer and the subject key it points at.
struct CertWriter {
  mbedtls_x509write_cert crt;
  mbedtls_mpi serial;
  CertWriter() {
    mbedtls_x509write_crt_init(&crt);
    mbedtls_mpi_init(&serial);
  }
  ~CertWriter() {
    mbedtls_x509write_crt_free(&crt);
    mbedtls_mpi_free(&serial);
  }
  CertWriter(const CertWriter&) = delete;
  CertWriter& operator=(const CertWriter&) = delete;

  Status common(const LocalCa& ca, const Bytes& serial_bytes, const char* subject) {
    mbedtls_x509write_crt_set_version(&crt, MBEDTLS_X509_CRT_VERSION_3);
    mbedtls_x509write_crt_set_md_alg(&crt, MBEDTLS_MD_SHA256);
    mbedtls_x509write_crt_set_issuer_key(&crt, ca.key());
    if (int rc = mbedtls_mpi_read_binary(&serial, serial_bytes.data(), serial_bytes.size()); rc != 0) return failure("serial", rc);
    if (int rc = mbedtls_x509write_crt_set_serial(&crt, &serial); rc != 0) return failure("serial", rc);
    if (int rc = mbedtls_x509write_crt_set_validity(&crt, utc_now("%Y%m%d%H%M%S").c_str(), kNotAfter); rc != 0) {
      return failure("validity", rc);
    }
    if (int rc = mbedtls_x509write_crt_set_issuer_name(&crt, LocalCa::kSubject); rc != 0) return failure("issuer", rc);
    if (int rc = mbedtls_x509write_crt_set_subject_name(&crt, subject); rc != 0) return failure("subject", rc);
    return Status::success();
  }

  Status extension(std::string_view id, bool critical, const Bytes& value) {
    const int rc = mbedtls_x509write_crt_set_extension(&crt, id.data(), id.size(), critical ? 1 : 0, value.data(),
                                                       value.size());
    return rc == 0 ? Status::success() : Status(failure("extension", rc));
  }

  Result<Bytes> der(const LocalCa& ca) {
    std::array<unsigned char, 4096> buf{};
    const int len = mbedtls_x509write_crt_der(&crt, buf.data(), buf.size(), drbg_random, &ca.drbg());
    if (len < 0) return failure("writing the certificate", len);
    return Bytes(buf.data() + buf.size() - len, buf.data() + buf.size());
  }
};

struct PkContext {
  mbedtls_pk_context pk;
  PkContext() { mbedtls_pk_init(&pk); }
  ~PkContext() { mbedtls_pk_free(&pk); }
  PkContext(const PkContext&) = delete;
  PkContext& operator=(const PkContext&) = delete;
};

Status load_public_key(const tpm2::PublicKey& ek, mbedtls_pk_context* pk) {
  if (ek.kind == tpm2::EkKind::kRsa2048) {
    if (int rc = mbedtls_pk_setup(pk, mbedtls_pk_info_from_type(MBEDTLS_PK_RSA)); rc != 0) return failure("pk_setup", rc);
    const std::array<unsigned char, 4> e = {static_cast<unsigned char>(ek.rsa_exponent >> 24),
                                            static_cast<unsigned char>(ek.rsa_exponent >> 16),
                                            static_cast<unsigned char>(ek.rsa_exponent >> 8),
                                            static_cast<unsigned char>(ek.rsa_exponent)};
    mbedtls_rsa_context* rsa = mbedtls_pk_rsa(*pk);
    if (int rc = mbedtls_rsa_import_raw(rsa, ek.rsa_modulus.data(), ek.rsa_modulus.size(), nullptr, 0, nullptr, 0,
                                        nullptr, 0, e.data(), e.size());
        rc != 0) {
      return failure("RSA public key", rc);
    }
    if (int rc = mbedtls_rsa_complete(rsa); rc != 0) return failure("RSA public key", rc);
    return Status::success();
  }
  if (int rc = mbedtls_pk_setup(pk, mbedtls_pk_info_from_type(MBEDTLS_PK_ECKEY)); rc != 0) return failure("pk_setup", rc);
  mbedtls_ecp_keypair* ec = mbedtls_pk_ec(*pk);
  if (int rc = mbedtls_ecp_group_load(&ec->grp, MBEDTLS_ECP_DP_SECP256R1); rc != 0) return failure("P-256", rc);
  Bytes point = {0x04};
  point.insert(point.end(), ek.ecc_x.begin(), ek.ecc_x.end());
  point.insert(point.end(), ek.ecc_y.begin(), ek.ecc_y.end());
  if (int rc = mbedtls_ecp_point_read_binary(&ec->grp, &ec->Q, point.data(), point.size()); rc != 0) {
    return failure("ECC public point", rc);
  }
  if (int rc = mbedtls_ecp_check_pubkey(&ec->grp, &ec->Q); rc != 0) return failure("ECC public point check", rc);
  return Status::success();
}

}  // namespace

ParsedCertificate::ParsedCertificate() : crt_(std::make_unique<mbedtls_x509_crt>()) { mbedtls_x509_crt_init(crt_.get()); }

ParsedCertificate::~ParsedCertificate() { mbedtls_x509_crt_free(crt_.get()); }

int ParsedCertificate::parse_der(std::span<const std::uint8_t> der) {
  return mbedtls_x509_crt_parse_der(crt_.get(), der.data(), der.size());
}

int ParsedCertificate::parse_pem(const std::string& pem) {
  // mbedTLS wants the terminating NUL counted in a PEM buffer's length.
  return mbedtls_x509_crt_parse(crt_.get(), reinterpret_cast<const unsigned char*>(pem.c_str()), pem.size() + 1);
}

std::string der_to_pem(std::span<const std::uint8_t> der, const std::string& label) {
  const std::string header = "-----BEGIN " + label + "-----\n";
  const std::string footer = "-----END " + label + "-----\n";
  std::string out(der.size() * 2 + 256, '\0');
  std::size_t written = 0;
  if (mbedtls_pem_write_buffer(header.c_str(), footer.c_str(), der.data(), der.size(),
                               reinterpret_cast<unsigned char*>(out.data()), out.size(), &written) != 0) {
    return {};
  }
  out.resize(written > 0 ? written - 1 : 0);  // written counts the NUL
  return out;
}

Result<Bytes> self_signed_ca_certificate(const LocalCa& ca) {
  auto serial = random_serial(ca.drbg());
  if (!serial) return serial.error();
  CertWriter w;
  if (Status s = w.common(ca, *serial, LocalCa::kSubject); !s) return s.error();
  mbedtls_x509write_crt_set_subject_key(&w.crt, ca.key());
  if (int rc = mbedtls_x509write_crt_set_basic_constraints(&w.crt, 1, 0); rc != 0) return failure("basicConstraints", rc);
  if (int rc = mbedtls_x509write_crt_set_key_usage(&w.crt, MBEDTLS_X509_KU_KEY_CERT_SIGN | MBEDTLS_X509_KU_CRL_SIGN);
      rc != 0) {
    return failure("keyUsage", rc);
  }
  if (int rc = mbedtls_x509write_crt_set_subject_key_identifier(&w.crt); rc != 0) return failure("SKID", rc);
  if (int rc = mbedtls_x509write_crt_set_authority_key_identifier(&w.crt); rc != 0) return failure("AKID", rc);
  return w.der(ca);
}

Result<IssuedCertificate> issue_ek_certificate(const LocalCa& ca, const tpm2::PublicKey& ek, const TpmIdentity& tpm) {
  PkContext subject_key;
  if (Status s = load_public_key(ek, &subject_key.pk); !s) return s.error();
  auto serial = random_serial(ca.drbg());
  if (!serial) return serial.error();
  CertWriter w;
  // The profile's EK certificate has an empty subject; the TPM is named
  // in the (then critical) subjectAltName.
  if (Status s = w.common(ca, *serial, ""); !s) return s.error();
  mbedtls_x509write_crt_set_subject_key(&w.crt, &subject_key.pk);
  if (int rc = mbedtls_x509write_crt_set_basic_constraints(&w.crt, 0, -1); rc != 0) return failure("basicConstraints", rc);
  const unsigned int usage =
      ek.kind == tpm2::EkKind::kRsa2048 ? MBEDTLS_X509_KU_KEY_ENCIPHERMENT : MBEDTLS_X509_KU_KEY_AGREEMENT;
  if (int rc = mbedtls_x509write_crt_set_key_usage(&w.crt, static_cast<unsigned char>(usage)); rc != 0) {
    return failure("keyUsage", rc);
  }
  if (int rc = mbedtls_x509write_crt_set_authority_key_identifier(&w.crt); rc != 0) return failure("AKID", rc);
  const Bytes tpm_name = sequence({rdn(kOidTpmManufacturer, tpm.manufacturer), rdn(kOidTpmModel, tpm.model),
                                   rdn(kOidTpmVersion, tpm.version)});
  if (Status s = w.extension(kOidSubjectAltName, true, directory_name(tpm_name)); !s) return s.error();
  if (Status s = w.extension(kOidExtendedKeyUsage, false, sequence({oid(kOidEkCertificate)})); !s) return s.error();
  const Bytes specification =
      sequence({utf8(tpm.spec_family), integer(tpm.spec_level), integer(tpm.spec_revision)});
  const Bytes directory_attributes =
      sequence({sequence({oid(kOidTpmSpecification), set_of({specification})})});
  if (Status s = w.extension(kOidSubjectDirectoryAttributes, false, directory_attributes); !s) return s.error();
  auto der = w.der(ca);
  if (!der) return der.error();
  return IssuedCertificate{std::move(*der), std::move(*serial)};
}

Result<Bytes> issue_platform_certificate(const LocalCa& ca, const IssuedCertificate& ek_certificate,
                                         const PlatformIdentity& platform) {
  // The CA's Name exactly as encoded in the certificates it issued.
  ParsedCertificate parsed;
  if (int rc = parsed.parse_der(ca.certificate_der()); rc != 0) return failure("reading the CA certificate", rc);
  const mbedtls_x509_buf& subject = parsed.get()->subject_raw;
  const Bytes ca_name(subject.p, subject.p + subject.len);

  auto serial = random_serial(ca.drbg());
  if (!serial) return serial.error();
  auto authority_key = key_identifier(ca.key());
  if (!authority_key) return authority_key.error();
  const Bytes signature_algorithm = sequence({oid(kOidEcdsaSha256)});
  const auto generalized = [](const std::string& text) { return tlv(MBEDTLS_ASN1_GENERALIZED_TIME, as_bytes(text)); };

  // Holder: baseCertificateID [0] IMPLICIT IssuerSerial (the EK certificate).
  const Bytes holder = sequence({tlv(MBEDTLS_ASN1_CONTEXT_SPECIFIC | MBEDTLS_ASN1_CONSTRUCTED | 0,
                                     cat({directory_name(ca_name), positive_integer(ek_certificate.serial)}))});
  // Issuer: v2Form [0] IMPLICIT V2Form { issuerName GeneralNames }.
  const Bytes issuer = context(0, directory_name(ca_name));
  const Bytes validity = sequence({generalized(utc_now("%Y%m%d%H%M%SZ")), generalized("99991231235959Z")});
  // TCG Platform Certificate Profile attributes.
  const auto version3 = [](std::uint32_t major, std::uint32_t minor, std::uint32_t revision) {
    return sequence({integer(major), integer(minor), integer(revision)});
  };
  const Bytes platform_class = tlv(MBEDTLS_ASN1_OCTET_STRING, Bytes{0, 0, 0, 1});  // PC Client
  const Bytes attributes = sequence({
      sequence({oid(kOidPlatformSpecification), set_of({sequence({version3(1, 5, 0), platform_class})})}),
      sequence({oid(kOidCredentialSpecification), set_of({version3(1, 1, 11)})}),
      sequence({oid(kOidCredentialType), set_of({sequence({oid(kOidPlatformAttributeCertificate)})})}),
  });
  const Bytes platform_name =
      sequence({rdn(kOidPlatformManufacturer, platform.manufacturer), rdn(kOidPlatformModel, platform.model),
                rdn(kOidPlatformVersion, platform.version), rdn(kOidPlatformSerial, platform.serial)});
  const auto extension = [](std::string_view id, const Bytes& value) {
    return sequence({oid(id), tlv(MBEDTLS_ASN1_OCTET_STRING, value)});
  };
  const Bytes extensions = sequence({
      extension(kOidSubjectAltName, directory_name(platform_name)),
      extension(kOidAuthorityKeyId,
                sequence({tlv(MBEDTLS_ASN1_CONTEXT_SPECIFIC | 0, *authority_key)})),
  });
  const Bytes info = sequence({integer(1), holder, issuer, signature_algorithm, positive_integer(*serial), validity,
                               attributes, extensions});

  std::array<unsigned char, 32> hash{};
  if (int rc = mbedtls_sha256_ret(info.data(), info.size(), hash.data(), 0); rc != 0) return failure("SHA-256", rc);
  std::array<unsigned char, MBEDTLS_PK_SIGNATURE_MAX_SIZE> signature{};
  std::size_t signature_len = 0;
  if (int rc = mbedtls_pk_sign(ca.key(), MBEDTLS_MD_SHA256, hash.data(), hash.size(), signature.data(), &signature_len,
                               drbg_random, &ca.drbg());
      rc != 0) {
    return failure("signing the platform certificate", rc);
  }
  Bytes bits = {0};  // no unused bits
  bits.insert(bits.end(), signature.begin(), signature.begin() + static_cast<std::ptrdiff_t>(signature_len));
  return sequence({info, signature_algorithm, tlv(MBEDTLS_ASN1_BIT_STRING, bits)});
}

}  // namespace vtpm::state
