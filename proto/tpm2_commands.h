// The TPM 2.0 commands vtpmd itself sends to an instance when it provisions
// or measures it (docs/provisioning.md), and the parts of their responses it
// needs. Marshalling is tpm2-tss's libtss2-mu; this file only assembles
// headers, handles and the password session. Pure: no I/O.
#pragma once

#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include <tss2/tss2_tpm2_types.h>

#include "proto/result.h"

namespace vtpm::tpm2 {

using Bytes = std::vector<std::uint8_t>;

// The PCR banks vtpmd can allocate, in the order it lists them.
inline constexpr TPM2_ALG_ID kBankAlgorithms[] = {TPM2_ALG_SHA1, TPM2_ALG_SHA256, TPM2_ALG_SHA384, TPM2_ALG_SHA512};

// "sha1", "sha256", "sha384", "sha512"; nullopt for anything else.
std::optional<TPM2_ALG_ID> bank_from_name(std::string_view name);
std::string_view bank_name(TPM2_ALG_ID alg);  // "" for an algorithm not in kBankAlgorithms
std::size_t digest_size(TPM2_ALG_ID alg);     // 0 for an algorithm not in kBankAlgorithms

// The endorsement keys of the TCG EK Credential Profile's low range:
// template L-1 (RSA 2048) and L-2 (ECC NIST P-256), with the persistent
// handles of the TCG provisioning guidance and the NV indices of their
// certificates.
enum class EkKind { kRsa2048, kEccP256 };
std::optional<EkKind> ek_from_name(std::string_view name);  // "rsa", "ecc"
std::string_view ek_name(EkKind kind);
inline constexpr TPM2_HANDLE kEkRsaPersistentHandle = 0x81010001;
inline constexpr TPM2_HANDLE kEkEccPersistentHandle = 0x81010002;
inline constexpr TPM2_HANDLE kEkRsaCertIndex = 0x01C00002;
inline constexpr TPM2_HANDLE kEkEccCertIndex = 0x01C0000A;
// Where swtpm_setup stores its platform certificate (the TCG registry's
// platform-certificate range starts here).
inline constexpr TPM2_HANDLE kPlatformCertIndex = 0x01C08000;
TPM2_HANDLE ek_persistent_handle(EkKind kind);
TPM2_HANDLE ek_cert_index(EkKind kind);
// The public area of the TCG default template (the key tpm2_createek makes).
TPM2B_PUBLIC ek_template(EkKind kind);

// NV attributes of an EK or platform certificate index: defined by the
// platform, readable by owner and platform with empty auth, written once
// under platform auth and then write-locked until redefined.
inline constexpr TPMA_NV kCertificateNvAttributes = TPMA_NV_PPWRITE | TPMA_NV_WRITEDEFINE | TPMA_NV_PPREAD |
                                                   TPMA_NV_OWNERREAD | TPMA_NV_AUTHREAD | TPMA_NV_NO_DA |
                                                   TPMA_NV_PLATFORMCREATE;
// The largest NV_Write vtpmd sends (libtpms' MAX_NV_BUFFER_SIZE is 1024).
inline constexpr std::size_t kNvWriteChunk = 1024;

inline constexpr std::uint32_t kRcInitialize = 0x100;  // TPM_RC_INITIALIZE: Startup not (or already) done

// ---- commands (complete packets) ----
Bytes startup(bool clear);
Bytes shutdown(bool clear);
// Allocates all 24 PCRs of each bank in `active` and none of the other
// banks vtpmd knows (platform auth). Takes effect at the next TPM reset.
Bytes pcr_allocate(std::span<const TPM2_ALG_ID> active);
Bytes create_primary(TPM2_HANDLE hierarchy, const TPM2B_PUBLIC& in_public);
Bytes evict_control(TPM2_HANDLE auth, TPM2_HANDLE object, TPM2_HANDLE persistent);
Bytes flush_context(TPM2_HANDLE handle);
Bytes read_public(TPM2_HANDLE object);
Bytes nv_define_space(TPM2_HANDLE auth, TPM2_HANDLE index, TPMA_NV attributes, std::uint16_t size);
Bytes nv_write(TPM2_HANDLE auth, TPM2_HANDLE index, std::span<const std::uint8_t> data, std::uint16_t offset);
Bytes nv_write_lock(TPM2_HANDLE auth, TPM2_HANDLE index);
Bytes nv_undefine_space(TPM2_HANDLE auth, TPM2_HANDLE index);
struct PcrDigest {
  TPM2_ALG_ID alg;
  Bytes digest;
};
Bytes pcr_extend(std::uint32_t pcr, std::span<const PcrDigest> digests);
Bytes get_capability_pcrs();
// GetCapability(TPM_CAP_TPM_PROPERTIES) of the fixed properties from
// TPM_PT_FAMILY_INDICATOR through TPM_PT_FIRMWARE_VERSION_2.
Bytes get_capability_fixed_properties();

// ---- responses ----
struct Response {
  std::uint32_t rc = 0;
  std::vector<TPM2_HANDLE> handles;  // only when rc == 0
  Bytes parameters;                  // only when rc == 0
};
// Splits a response to a command that returns `handle_count` handles.
// `had_sessions`: the command carried an authorization area (the response
// then has a parameter size field).
Result<Response> parse_response(std::span<const std::uint8_t> packet, std::size_t handle_count, bool had_sessions);

// The public key of a created key: RSA modulus and exponent or ECC point.
struct PublicKey {
  EkKind kind = EkKind::kRsa2048;
  Bytes rsa_modulus;
  std::uint32_t rsa_exponent = 65537;
  Bytes ecc_x;
  Bytes ecc_y;
};
// CreatePrimary's response parameters: the handle is in Response::handles.
Result<PublicKey> parse_create_primary(std::span<const std::uint8_t> parameters);
// ReadPublic's response parameters: the object's public key.
Result<PublicKey> parse_read_public(std::span<const std::uint8_t> parameters);
// GetCapability(TPM_CAP_PCRS): the banks with at least one PCR allocated.
Result<std::vector<TPM2_ALG_ID>> parse_active_banks(std::span<const std::uint8_t> parameters);
// The TPM's fixed properties (the answer to get_capability_fixed_properties).
struct TpmProperties {
  std::uint32_t level = 0;
  std::uint32_t revision = 0;
  std::uint32_t manufacturer = 0;
  std::string vendor;  // TPM_PT_VENDOR_STRING_1..4, trailing NULs and spaces dropped
  std::uint32_t firmware_version_1 = 0;
};
Result<TpmProperties> parse_fixed_properties(std::span<const std::uint8_t> parameters);
// PCR_Allocate's response parameters: whether the allocation succeeded.
Result<bool> parse_pcr_allocate(std::span<const std::uint8_t> parameters);

std::string rc_text(std::uint32_t rc);  // "TPM rc 0x000001c4"

}  // namespace vtpm::tpm2
