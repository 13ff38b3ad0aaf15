#include "proto/tpm12_commands.h"

#include <string>

namespace vtpm::tpm12 {
namespace {

constexpr std::uint16_t kTagRquCommand = 0x00C1;
constexpr std::uint16_t kTagRspCommand = 0x00C4;
constexpr std::uint32_t kOrdStartup = 0x99;
constexpr std::uint32_t kOrdCreateEndorsementKeyPair = 0x78;
constexpr std::uint32_t kOrdGetCapability = 0x65;
constexpr std::uint32_t kOrdPhysicalEnable = 0x6F;
constexpr std::uint32_t kOrdPhysicalSetDeactivated = 0x72;
constexpr std::uint32_t kOrdNvDefineSpace = 0xCC;
constexpr std::uint32_t kOrdNvWriteValue = 0xCD;
constexpr std::uint32_t kTscOrdPhysicalPresence = 0x4000000A;
constexpr std::uint32_t kCapVersionVal = 0x1A;
constexpr std::uint16_t kTagNvAttributes = 0x0017;
constexpr std::uint16_t kTagNvDataPublic = 0x0018;
constexpr std::uint16_t kTagCapVersionInfo = 0x0030;
constexpr std::uint16_t kTagPcClientStoredCert = 0x1001;
constexpr std::uint16_t kTagPcClientFullCert = 0x1002;
constexpr std::uint32_t kNvIndexLock = 0xFFFFFFFF;
constexpr std::uint8_t kLocalityAll = 0x1F;

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

Bytes tsc_physical_presence(std::uint16_t flags) {
  Bytes body;
  put16(body, flags);
  return command(kTscOrdPhysicalPresence, body);
}

Bytes physical_enable() { return command(kOrdPhysicalEnable, {}); }

Bytes physical_set_deactivated(bool deactivated) {
  const std::uint8_t state = deactivated ? 1 : 0;
  return command(kOrdPhysicalSetDeactivated, std::span(&state, 1));
}

Bytes get_capability_version() {
  Bytes body;
  put32(body, kCapVersionVal);
  put32(body, 0);  // no subCap
  return command(kOrdGetCapability, body);
}

Bytes nv_define_space(std::uint32_t index, std::uint32_t attributes, std::uint32_t size) {
  // TPM_PCR_INFO_SHORT: no PCR selected, any locality, zero digest.
  Bytes no_pcrs;
  put16(no_pcrs, 3);
  no_pcrs.insert(no_pcrs.end(), {0, 0, 0, kLocalityAll});
  no_pcrs.insert(no_pcrs.end(), 20, 0);
  Bytes body;
  put16(body, kTagNvDataPublic);
  put32(body, index);
  body.insert(body.end(), no_pcrs.begin(), no_pcrs.end());  // pcrInfoRead
  body.insert(body.end(), no_pcrs.begin(), no_pcrs.end());  // pcrInfoWrite
  put16(body, kTagNvAttributes);
  put32(body, attributes);
  body.insert(body.end(), {0, 0, 0});  // bReadSTClear, bWriteSTClear, bWriteDefine
  put32(body, size);
  body.insert(body.end(), 20, 0);  // encAuth: the index has no auth value of its own
  return command(kOrdNvDefineSpace, body);
}

Bytes nv_write_value(std::uint32_t index, std::uint32_t offset, std::span<const std::uint8_t> data) {
  Bytes body;
  put32(body, index);
  put32(body, offset);
  put32(body, static_cast<std::uint32_t>(data.size()));
  body.insert(body.end(), data.begin(), data.end());
  return command(kOrdNvWriteValue, body);
}

Bytes nv_lock() { return nv_define_space(kNvIndexLock, 0, 0); }

Bytes stored_certificate(std::span<const std::uint8_t> der) {
  Bytes out;
  put16(out, kTagPcClientStoredCert);
  out.push_back(0);  // certType: TCG_FULL_CERT
  put16(out, static_cast<std::uint16_t>(der.size() + 2));
  put16(out, kTagPcClientFullCert);
  out.insert(out.end(), der.begin(), der.end());
  return out;
}

Result<VersionInfo> parse_version_info(std::span<const std::uint8_t> r) {
  if (r.size() < 10 || (r[0] << 8 | r[1]) != kTagRspCommand || get32(r, 2) != r.size()) return malformed("header");
  if (const std::uint32_t rc = get32(r, 6); rc != 0) {
    return make_error(ErrorCode::kTpmFailure, "TPM_GetCapability(VERSION_VAL) failed: TPM 1.2 rc " + std::to_string(rc));
  }
  // respSize, then TPM_CAP_VERSION_INFO: tag, TPM_VERSION (4), specLevel,
  // errataRev, tpmVendorID (4), vendorSpecificSize, vendorSpecific.
  if (r.size() < 14 + 15 || get32(r, 10) != r.size() - 14) return malformed("version info size");
  const std::size_t at = 14;
  if ((r[at] << 8 | r[at + 1]) != kTagCapVersionInfo) return malformed("version info tag");
  VersionInfo v;
  v.rev_major = r[at + 4];
  v.rev_minor = r[at + 5];
  v.spec_level = static_cast<std::uint16_t>(r[at + 6] << 8 | r[at + 7]);
  v.errata_rev = r[at + 8];
  v.vendor = get32(r, at + 9);
  return v;
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
