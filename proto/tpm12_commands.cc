#include "proto/tpm12_commands.h"

#include <string>

namespace vtpm::tpm12 {
namespace {

constexpr std::uint16_t kTagRquCommand = 0x00C1;
constexpr std::uint16_t kTagRspCommand = 0x00C4;
constexpr std::uint32_t kOrdStartup = 0x99;
constexpr std::uint32_t kOrdCreateEndorsementKeyPair = 0x78;

void put16(Bytes& b, std::uint16_t v) {
  b.push_back(static_cast<std::uint8_t>(v >> 8));
  b.push_back(static_cast<std::uint8_t>(v));
}
void put32(Bytes& b, std::uint32_t v) {
  for (int shift = 24; shift >= 0; shift -= 8) b.push_back(static_cast<std::uint8_t>(v >> shift));
}
std::uint32_t get32(std::span<const std::uint8_t> b, std::size_t at) {
  return static_cast<std::uint32_t>(b[at]) << 24 | static_cast<std::uint32_t>(b[at + 1]) << 16 |
         static_cast<std::uint32_t>(b[at + 2]) << 8 | b[at + 3];
}

Bytes command(std::uint32_t ordinal, std::span<const std::uint8_t> body) {
  Bytes out;
  put16(out, kTagRquCommand);
  put32(out, static_cast<std::uint32_t>(10 + body.size()));
  put32(out, ordinal);
  out.insert(out.end(), body.begin(), body.end());
  return out;
}

Error malformed(const std::string& what) { return make_error(ErrorCode::kTpmFailure, "malformed TPM 1.2 response: " + what); }

}  // namespace

Bytes startup_clear() {
  Bytes body;
  put16(body, 0x0001);  // TPM_ST_CLEAR
  return command(kOrdStartup, body);
}

Bytes create_endorsement_key_pair(const Nonce& anti_replay) {
  Bytes body(anti_replay.begin(), anti_replay.end());
  put32(body, 0x00000001);  // TPM_KEY_PARMS.algorithmID: TPM_ALG_RSA
  put16(body, 0x0003);      // encScheme: TPM_ES_RSAESOAEP_SHA1_MGF1
  put16(body, 0x0001);      // sigScheme: TPM_SS_NONE
  put32(body, 12);          // parmSize: TPM_RSA_KEY_PARMS
  put32(body, 2048);        // keyLength
  put32(body, 2);           // numPrimes
  put32(body, 0);           // exponentSize: 0, the default 65537
  return command(kOrdCreateEndorsementKeyPair, body);
}

std::uint32_t response_code(std::span<const std::uint8_t> response) {
  return response.size() >= 10 ? get32(response, 6) : 0xffffffff;
}

Result<EndorsementKey> parse_create_endorsement_key_pair(std::span<const std::uint8_t> r) {
  if (r.size() < 10 || (r[0] << 8 | r[1]) != kTagRspCommand || get32(r, 2) != r.size()) return malformed("header");
  if (const std::uint32_t rc = get32(r, 6); rc != 0) {
    return make_error(ErrorCode::kTpmFailure, "TPM_CreateEndorsementKeyPair failed: TPM 1.2 rc " + std::to_string(rc));
  }
  // TPM_PUBKEY: TPM_KEY_PARMS (4 + 2 + 2 + 4 + parmSize), TPM_STORE_PUBKEY (4 + keyLength).
  std::size_t at = 10;
  if (r.size() < at + 12) return malformed("key parameters");
  const std::uint32_t parm_size = get32(r, at + 8);
  at += 12;
  if (parm_size > r.size() - at) return malformed("parameter size");
  at += parm_size;
  if (r.size() < at + 4) return malformed("key length");
  const std::uint32_t key_length = get32(r, at);
  at += 4;
  if (key_length != 256 || r.size() - at != key_length + 20) return malformed("key of " + std::to_string(key_length) + " bytes");
  EndorsementKey ek;
  ek.pubkey.assign(r.begin() + 10, r.begin() + static_cast<std::ptrdiff_t>(at + key_length));
  ek.modulus.assign(r.begin() + static_cast<std::ptrdiff_t>(at), r.begin() + static_cast<std::ptrdiff_t>(at + key_length));
  ek.checksum.assign(r.end() - 20, r.end());
  return ek;
}

}  // namespace vtpm::tpm12
