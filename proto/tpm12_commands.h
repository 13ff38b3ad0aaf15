// The TPM 1.2 commands vtpmd sends itself when it provisions a TPM 1.2
// instance (docs/provisioning.md): TPM_Startup, the platform's physical-
// presence enable and activate, TPM_CreateEndorsementKeyPair, the version
// capability and the NV commands that store the EK certificate (TCG PC
// Client: index 0x1000F000, a TCG_PCCLIENT_STORED_CERT) and lock NV.
// tpm2-tss has no TPM 1.2 marshalling; these fixed layouts are written
// here. Pure: no I/O, no crypto.
#pragma once

#include <array>
#include <cstdint>
#include <span>
#include <vector>

#include "proto/result.h"

namespace vtpm::tpm12 {

using Bytes = std::vector<std::uint8_t>;
using Nonce = std::array<std::uint8_t, 20>;

inline constexpr std::uint32_t kInvalidPostInit = 0x26;  // TPM_INVALID_POSTINIT: already started
inline constexpr std::uint32_t kDisabledCmd = 0x07;      // TPM_DISABLED_CMD: e.g. an EK exists already

inline constexpr std::uint32_t kEkCertIndex = 0x1000F000;  // TPM_NV_INDEX_EKCert, with the D bit
inline constexpr std::uint32_t kNvPerOwnerRead = 0x00020000;
inline constexpr std::uint32_t kNvPerOwnerWrite = 0x00000002;
inline constexpr std::uint16_t kPhysicalPresenceCmdEnable = 0x0020;
inline constexpr std::uint16_t kPhysicalPresencePresent = 0x0008;
// NV_WriteValue data per command: fits the smallest TPM buffer (1024).
inline constexpr std::size_t kNvWriteChunk = 768;

Bytes startup_clear();
Bytes tsc_physical_presence(std::uint16_t flags);
Bytes physical_enable();
Bytes physical_set_deactivated(bool deactivated);
// TPM_GetCapability(TPM_CAP_VERSION_VAL).
Bytes get_capability_version();
// TPM_NV_DefineSpace without owner authorisation, as a TPM accepts until
// NV is locked: no PCR binding, readable and writable by `attributes`.
Bytes nv_define_space(std::uint32_t index, std::uint32_t attributes, std::uint32_t size);
Bytes nv_write_value(std::uint32_t index, std::uint32_t offset, std::span<const std::uint8_t> data);
// Defines TPM_NV_INDEX_LOCK: from now on NV authorisation is enforced.
Bytes nv_lock();
// `der` wrapped as TCG_PCCLIENT_STORED_CERT + TCG_FULL_CERT, the EK
// certificate index's content.
Bytes stored_certificate(std::span<const std::uint8_t> der);
// An RSA 2048 EK, RSAES-OAEP-SHA1, no signature scheme (TPM Main Part 3, 14.1).
Bytes create_endorsement_key_pair(const Nonce& anti_replay);

struct EndorsementKey {
  Bytes pubkey;    // the TPM_PUBKEY structure, as the checksum covers it
  Bytes modulus;   // 256 bytes, big-endian; the exponent is 65537
  Bytes checksum;  // SHA-1(pubkey || antiReplay), for the caller to check
};
// The response's return code is checked first; kTpmFailure names it.
Result<EndorsementKey> parse_create_endorsement_key_pair(std::span<const std::uint8_t> response);
std::uint32_t response_code(std::span<const std::uint8_t> response);

// TPM_CAP_VERSION_INFO.
struct VersionInfo {
  std::uint8_t rev_major = 0;
  std::uint8_t rev_minor = 0;
  std::uint16_t spec_level = 0;
  std::uint8_t errata_rev = 0;
  std::uint32_t vendor = 0;  // e.g. 'IBM\0'
};
Result<VersionInfo> parse_version_info(std::span<const std::uint8_t> response);

}  // namespace vtpm::tpm12
