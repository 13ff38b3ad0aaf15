// Raw TPM commands for C++ tests and benchmarks (the Python suite has its
// own builders in tests/integration/tpmcmd.py).
#pragma once

#include <cstdint>
#include <vector>

#include "proto/tpm_packet.h"
#include "proto/uuid.h"

namespace vtpm::testing {

using Bytes = std::vector<std::uint8_t>;

// Fixes up the size field after the body is appended.
inline Bytes finish(Bytes packet) {
  const auto size = static_cast<std::uint32_t>(packet.size());
  for (int i = 0; i < 4; ++i) packet[2 + i] = static_cast<std::uint8_t>(size >> (24 - 8 * i));
  return packet;
}

inline Bytes start(std::uint16_t tag, std::uint32_t code) {
  Bytes p;
  tpm::append_u16(p, tag);
  tpm::append_u32(p, 0);
  tpm::append_u32(p, code);
  return p;
}

inline void append_password_session(Bytes& p) {
  tpm::append_u32(p, 9);           // authorization area size
  tpm::append_u32(p, 0x40000009);  // TPM_RS_PW
  tpm::append_u16(p, 0);           // nonce
  p.push_back(0);                  // session attributes
  tpm::append_u16(p, 0);           // empty password
}

inline Bytes tpm2_startup_clear() { return tpm::startup_clear_command(TpmVersion::k20); }

inline Bytes tpm2_get_random(std::uint16_t n) {
  Bytes p = start(tpm::kTpm2StNoSessions, 0x17B);
  tpm::append_u16(p, n);
  return finish(p);
}

inline Bytes tpm2_pcr_extend(std::uint32_t pcr, std::uint8_t fill) {
  Bytes p = start(tpm::kTpm2StSessions, 0x182);
  tpm::append_u32(p, pcr);
  append_password_session(p);
  tpm::append_u32(p, 1);       // one digest
  tpm::append_u16(p, 0x000B);  // sha256
  p.insert(p.end(), 32, fill);
  return finish(p);
}

// PCR_Read of one sha256 PCR; the digest is the last 32 bytes of the reply.
inline Bytes tpm2_pcr_read(std::uint32_t pcr) {
  Bytes p = start(tpm::kTpm2StNoSessions, 0x17E);
  tpm::append_u32(p, 1);
  tpm::append_u16(p, 0x000B);
  p.push_back(3);
  Bytes select = {0, 0, 0};
  select[pcr / 8] = static_cast<std::uint8_t>(1u << (pcr % 8));
  p.insert(p.end(), select.begin(), select.end());
  return finish(p);
}

// NV_DefineSpace(owner, index, 8 bytes, owner read/write, no DA).
inline Bytes tpm2_nv_define(std::uint32_t index) {
  Bytes p = start(tpm::kTpm2StSessions, 0x12A);
  tpm::append_u32(p, 0x40000001);  // TPM_RH_OWNER
  append_password_session(p);
  tpm::append_u16(p, 0);   // empty auth
  Bytes pub;
  tpm::append_u32(pub, index);
  tpm::append_u16(pub, 0x000B);
  tpm::append_u32(pub, 0x02000000u | 0x00000002u | 0x00020000u | 0x00040000u);  // NO_DA|OWNERWRITE|OWNERREAD|AUTHREAD
  tpm::append_u16(pub, 0);  // no policy
  tpm::append_u16(pub, 8);  // data size
  tpm::append_u16(p, static_cast<std::uint16_t>(pub.size()));
  p.insert(p.end(), pub.begin(), pub.end());
  return finish(p);
}

// CreatePrimary ECC P-256 restricted decryption key under the owner hierarchy.
inline Bytes tpm2_create_primary_ecc() {
  Bytes p = start(tpm::kTpm2StSessions, 0x131);
  tpm::append_u32(p, 0x40000001);
  append_password_session(p);
  tpm::append_u16(p, 4);  // TPM2B_SENSITIVE_CREATE: empty auth + data
  tpm::append_u16(p, 0);
  tpm::append_u16(p, 0);
  Bytes pub;
  tpm::append_u16(pub, 0x0023);  // ECC
  tpm::append_u16(pub, 0x000B);  // sha256 name
  tpm::append_u32(pub, 0x00030072);  // fixedTPM|fixedParent|sensitiveDataOrigin|userWithAuth|restricted|decrypt
  tpm::append_u16(pub, 0);        // no policy
  tpm::append_u16(pub, 0x0006);   // AES
  tpm::append_u16(pub, 128);
  tpm::append_u16(pub, 0x0043);   // CFB
  tpm::append_u16(pub, 0x0010);   // scheme NULL
  tpm::append_u16(pub, 0x0003);   // NIST P-256
  tpm::append_u16(pub, 0x0010);   // kdf NULL
  tpm::append_u16(pub, 0);        // x
  tpm::append_u16(pub, 0);        // y
  tpm::append_u16(p, static_cast<std::uint16_t>(pub.size()));
  p.insert(p.end(), pub.begin(), pub.end());
  tpm::append_u16(p, 0);  // outsideInfo
  tpm::append_u32(p, 0);  // creationPCR
  return finish(p);
}

inline Bytes tpm2_flush_context(std::uint32_t handle) {
  Bytes p = start(tpm::kTpm2StNoSessions, 0x165);
  tpm::append_u32(p, handle);
  return finish(p);
}

// TPM 1.2
inline Bytes tpm12_startup_clear() { return tpm::startup_clear_command(TpmVersion::k12); }

inline Bytes tpm12_extend(std::uint32_t pcr, std::uint8_t fill) {
  Bytes p = start(tpm::kTpm12TagRquCommand, 0x14);
  tpm::append_u32(p, pcr);
  p.insert(p.end(), 20, fill);
  return finish(p);
}

inline Bytes tpm12_pcr_read(std::uint32_t pcr) {
  Bytes p = start(tpm::kTpm12TagRquCommand, 0x15);
  tpm::append_u32(p, pcr);
  return finish(p);
}

inline Bytes tpm12_get_random(std::uint32_t n) {
  Bytes p = start(tpm::kTpm12TagRquCommand, 0x46);
  tpm::append_u32(p, n);
  return finish(p);
}

// A distinct UUID per (family, n) so that test files do not collide.
inline Uuid test_uuid(std::uint8_t family, std::uint8_t n) {
  Uuid::Bytes b{};
  b[0] = family;
  b[15] = n;
  return Uuid(b);
}

inline Bytes tail(const Bytes& response, std::size_t n) {
  return response.size() < n ? Bytes{} : Bytes(response.end() - static_cast<std::ptrdiff_t>(n), response.end());
}

}  // namespace vtpm::testing

namespace vtpm::testing {

// CreatePrimary RSA-2048 restricted decryption key (slow: key generation).
// Primary keys are derived deterministically; a different `unique` byte
// gives a different key (and a different amount of prime searching).
inline Bytes tpm2_create_primary_rsa2048(std::uint8_t unique = 0) {
  Bytes p = start(tpm::kTpm2StSessions, 0x131);
  tpm::append_u32(p, 0x40000001);
  append_password_session(p);
  tpm::append_u16(p, 4);
  tpm::append_u16(p, 0);
  tpm::append_u16(p, 0);
  Bytes pub;
  tpm::append_u16(pub, 0x0001);      // RSA
  tpm::append_u16(pub, 0x000B);      // sha256 name
  tpm::append_u32(pub, 0x00030072);  // restricted decryption key
  tpm::append_u16(pub, 0);
  tpm::append_u16(pub, 0x0006);  // AES-128-CFB
  tpm::append_u16(pub, 128);
  tpm::append_u16(pub, 0x0043);
  tpm::append_u16(pub, 0x0010);  // scheme NULL
  tpm::append_u16(pub, 2048);
  tpm::append_u32(pub, 0);       // default exponent
  tpm::append_u16(pub, 1);       // unique: one byte
  pub.push_back(unique);
  tpm::append_u16(p, static_cast<std::uint16_t>(pub.size()));
  p.insert(p.end(), pub.begin(), pub.end());
  tpm::append_u16(p, 0);
  tpm::append_u32(p, 0);
  return finish(p);
}

}  // namespace vtpm::testing
