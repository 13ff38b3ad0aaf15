// The TPM 1.2 commands vtpmd sends itself when it provisions a TPM 1.2
// instance (docs/provisioning.md): TPM_Startup and
// TPM_CreateEndorsementKeyPair. tpm2-tss has no TPM 1.2 marshalling; these
// two fixed layouts are written here. Pure: no I/O, no crypto.
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

Bytes startup_clear();
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

}  // namespace vtpm::tpm12
