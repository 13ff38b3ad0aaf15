// The certificates the local CA issues (docs/provisioning.md):
//
// - its own self-signed CA certificate;
// - EK certificates after the TCG EK Credential Profile for TPM Family
//   2.0: empty subject, a critical subjectAltName directoryName with
//   tcg-at-tpmManufacturer/Model/Version, subjectDirectoryAttributes with
//   tcg-at-tpmSpecification, keyUsage keyEncipherment (RSA) or
//   keyAgreement (ECC), extendedKeyUsage tcg-kp-EKCertificate
//   (2.23.133.8.1), basicConstraints CA:FALSE, authorityKeyIdentifier;
// - a platform certificate after the TCG Platform Certificate Profile:
//   an RFC 5755 attribute certificate whose holder is the EK certificate,
//   with tcg-at-tcgPlatformSpecification, tcg-at-tcgCredentialType
//   (tcg-kp-PlatformAttributeCertificate) and a subjectAltName naming the
//   platform's manufacturer, model, version and serial.
//
// X.509 public-key certificates are written by mbedTLS' x509write; the
// attribute certificate, which mbedTLS cannot write, is assembled with
// its ASN.1 writer and signed with mbedtls_pk_sign.
#pragma once

#include <cstdint>
#include <memory>
#include <span>
#include <string>

#include "proto/result.h"
#include "proto/tpm2_commands.h"
#include "state/bytes.h"

typedef struct mbedtls_x509_crt mbedtls_x509_crt;

namespace vtpm::state {

class LocalCa;

// What the TPM says it is (GetCapability TPM_PT_*), as the profile wants it.
struct TpmIdentity {
  std::string manufacturer;  // "id:" + hex TPM_PT_MANUFACTURER, e.g. "id:49424D00"
  std::string model;         // the vendor strings, e.g. "SW TPM"
  std::string version;       // "id:" + hex TPM_PT_FIRMWARE_VERSION_1
  std::uint32_t spec_level = 0;
  std::uint32_t spec_revision = 0;
  std::string spec_family = "2.0";  // "1.2" for a TPM 1.2
};

struct PlatformIdentity {
  std::string manufacturer = "vtpmd";
  std::string model = "vtpmd virtual platform";
  std::string version;
  std::string serial;  // the instance UUID
};

struct IssuedCertificate {
  Bytes der;
  Bytes serial;  // big-endian, as in the certificate
};

Result<Bytes> self_signed_ca_certificate(const LocalCa& ca);
Result<IssuedCertificate> issue_ek_certificate(const LocalCa& ca, const tpm2::PublicKey& ek, const TpmIdentity& tpm);
Result<Bytes> issue_platform_certificate(const LocalCa& ca, const IssuedCertificate& ek_certificate,
                                         const PlatformIdentity& platform);

std::string der_to_pem(std::span<const std::uint8_t> der, const std::string& label);

// A certificate parsed by mbedTLS (RAII over mbedtls_x509_crt).
class ParsedCertificate {
 public:
  ParsedCertificate();
  ~ParsedCertificate();
  ParsedCertificate(const ParsedCertificate&) = delete;
  ParsedCertificate& operator=(const ParsedCertificate&) = delete;
  int parse_der(std::span<const std::uint8_t> der);
  int parse_pem(const std::string& pem);
  mbedtls_x509_crt* get() { return crt_.get(); }

 private:
  std::unique_ptr<mbedtls_x509_crt> crt_;
};

}  // namespace vtpm::state
