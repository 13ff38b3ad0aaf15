#include "proto/tpm2_commands.h"

#include <tss2/tss2_mu.h>

#include <algorithm>
#include <array>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <type_traits>

namespace vtpm::tpm2 {
namespace {

// Every packet vtpmd builds fits: the largest is an NV_Write of one chunk.
constexpr std::size_t kMaxPacket = 4096;

// Assembles one command: header, handles, optional password session
// (TPM_RS_PW, empty auth), then parameters marshalled by libtss2-mu.
class CommandWriter {
 public:
  CommandWriter(TPM2_CC code, bool with_session) : with_session_(with_session) {
    put(Tss2_MU_UINT16_Marshal, static_cast<UINT16>(with_session ? TPM2_ST_SESSIONS : TPM2_ST_NO_SESSIONS));
    put(Tss2_MU_UINT32_Marshal, static_cast<UINT32>(0));  // size, patched in finish()
    put(Tss2_MU_UINT32_Marshal, static_cast<UINT32>(code));
  }

  CommandWriter& handle(TPM2_HANDLE h) {
    put(Tss2_MU_UINT32_Marshal, static_cast<UINT32>(h));
    return *this;
  }

  // Ends the handle area: the authorization area follows, if any.
  CommandWriter& end_handles() {
    if (!with_session_) return *this;
    TPMS_AUTH_COMMAND auth{};
    auth.sessionHandle = TPM2_RS_PW;
    std::array<std::uint8_t, 64> area{};
    std::size_t area_size = 0;
    check(Tss2_MU_TPMS_AUTH_COMMAND_Marshal(&auth, area.data(), area.size(), &area_size));
    put(Tss2_MU_UINT32_Marshal, static_cast<UINT32>(area_size));
    std::memcpy(buffer_.data() + offset_, area.data(), area_size);
    offset_ += area_size;
    return *this;
  }

  template <typename Marshal, typename T>
  CommandWriter& put(Marshal marshal, const T& value) {
    if constexpr (std::is_arithmetic_v<T>) {
      check(marshal(value, buffer_.data(), buffer_.size(), &offset_));
    } else {
      check(marshal(&value, buffer_.data(), buffer_.size(), &offset_));
    }
    return *this;
  }

  Bytes finish() {
    std::size_t at = 2;
    check(Tss2_MU_UINT32_Marshal(static_cast<UINT32>(offset_), buffer_.data(), buffer_.size(), &at));
    return Bytes(buffer_.begin(), buffer_.begin() + static_cast<std::ptrdiff_t>(offset_));
  }

 private:
  // Marshalling fails only when the buffer is too small, which the sizes
  // of the commands above rule out: a failure here is a bug in this file.
  static void check(TSS2_RC rc) {
    if (rc != TSS2_RC_SUCCESS) {
      std::fprintf(stderr, "tpm2_commands: marshalling failed (0x%x)\n", rc);
      std::abort();
    }
  }

  std::array<std::uint8_t, kMaxPacket> buffer_{};
  std::size_t offset_ = 0;
  bool with_session_;
};

// The EK policy of the TCG templates: PolicySecret(TPM_RH_ENDORSEMENT).
constexpr std::array<std::uint8_t, 32> kEkPolicy = {
    0x83, 0x71, 0x97, 0x67, 0x44, 0x84, 0xB3, 0xF8, 0x1A, 0x90, 0xCC, 0x8D, 0x46, 0xA5, 0xD7, 0x24,
    0xFD, 0x52, 0xD7, 0x6E, 0x06, 0x52, 0x0B, 0x64, 0xF2, 0xA1, 0xDA, 0x1B, 0x33, 0x14, 0x69, 0xAA};

Error malformed(const std::string& what) { return make_error(ErrorCode::kTpmFailure, "malformed TPM response: " + what); }

}  // namespace

std::optional<TPM2_ALG_ID> bank_from_name(std::string_view name) {
  for (TPM2_ALG_ID alg : kBankAlgorithms) {
    if (bank_name(alg) == name) return alg;
  }
  return std::nullopt;
}

std::string_view bank_name(TPM2_ALG_ID alg) {
  switch (alg) {
    case TPM2_ALG_SHA1: return "sha1";
    case TPM2_ALG_SHA256: return "sha256";
    case TPM2_ALG_SHA384: return "sha384";
    case TPM2_ALG_SHA512: return "sha512";
    default: return "";
  }
}

std::size_t digest_size(TPM2_ALG_ID alg) {
  switch (alg) {
    case TPM2_ALG_SHA1: return 20;
    case TPM2_ALG_SHA256: return 32;
    case TPM2_ALG_SHA384: return 48;
    case TPM2_ALG_SHA512: return 64;
    default: return 0;
  }
}

std::optional<EkKind> ek_from_name(std::string_view name) {
  if (name == "rsa") return EkKind::kRsa2048;
  if (name == "ecc") return EkKind::kEccP256;
  return std::nullopt;
}

std::string_view ek_name(EkKind kind) { return kind == EkKind::kRsa2048 ? "rsa" : "ecc"; }

TPM2_HANDLE ek_persistent_handle(EkKind kind) {
  return kind == EkKind::kRsa2048 ? kEkRsaPersistentHandle : kEkEccPersistentHandle;
}

TPM2_HANDLE ek_cert_index(EkKind kind) { return kind == EkKind::kRsa2048 ? kEkRsaCertIndex : kEkEccCertIndex; }

TPM2B_PUBLIC ek_template(EkKind kind) {
  TPM2B_PUBLIC pub{};
  TPMT_PUBLIC& t = pub.publicArea;
  t.nameAlg = TPM2_ALG_SHA256;
  t.objectAttributes = TPMA_OBJECT_FIXEDTPM | TPMA_OBJECT_FIXEDPARENT | TPMA_OBJECT_SENSITIVEDATAORIGIN |
                       TPMA_OBJECT_ADMINWITHPOLICY | TPMA_OBJECT_RESTRICTED | TPMA_OBJECT_DECRYPT;
  t.authPolicy.size = kEkPolicy.size();
  std::memcpy(t.authPolicy.buffer, kEkPolicy.data(), kEkPolicy.size());
  if (kind == EkKind::kRsa2048) {
    t.type = TPM2_ALG_RSA;
    TPMS_RSA_PARMS& p = t.parameters.rsaDetail;
    p.symmetric.algorithm = TPM2_ALG_AES;
    p.symmetric.keyBits.aes = 128;
    p.symmetric.mode.aes = TPM2_ALG_CFB;
    p.scheme.scheme = TPM2_ALG_NULL;
    p.keyBits = 2048;
    p.exponent = 0;
    t.unique.rsa.size = 256;  // zeros
  } else {
    t.type = TPM2_ALG_ECC;
    TPMS_ECC_PARMS& p = t.parameters.eccDetail;
    p.symmetric.algorithm = TPM2_ALG_AES;
    p.symmetric.keyBits.aes = 128;
    p.symmetric.mode.aes = TPM2_ALG_CFB;
    p.scheme.scheme = TPM2_ALG_NULL;
    p.curveID = TPM2_ECC_NIST_P256;
    p.kdf.scheme = TPM2_ALG_NULL;
    t.unique.ecc.x.size = 32;  // zeros
    t.unique.ecc.y.size = 32;
  }
  return pub;
}

Bytes startup(bool clear) {
  CommandWriter w(TPM2_CC_Startup, false);
  w.end_handles().put(Tss2_MU_UINT16_Marshal, static_cast<UINT16>(clear ? TPM2_SU_CLEAR : TPM2_SU_STATE));
  return w.finish();
}

Bytes shutdown(bool clear) {
  CommandWriter w(TPM2_CC_Shutdown, false);
  w.end_handles().put(Tss2_MU_UINT16_Marshal, static_cast<UINT16>(clear ? TPM2_SU_CLEAR : TPM2_SU_STATE));
  return w.finish();
}

Bytes pcr_allocate(std::span<const TPM2_ALG_ID> active) {
  TPML_PCR_SELECTION selection{};
  for (TPM2_ALG_ID alg : kBankAlgorithms) {
    TPMS_PCR_SELECTION& s = selection.pcrSelections[selection.count++];
    s.hash = alg;
    s.sizeofSelect = 3;
    const bool on = std::find(active.begin(), active.end(), alg) != active.end();
    s.pcrSelect[0] = s.pcrSelect[1] = s.pcrSelect[2] = on ? 0xff : 0x00;
  }
  CommandWriter w(TPM2_CC_PCR_Allocate, true);
  w.handle(TPM2_RH_PLATFORM).end_handles().put(Tss2_MU_TPML_PCR_SELECTION_Marshal, selection);
  return w.finish();
}

Bytes create_primary(TPM2_HANDLE hierarchy, const TPM2B_PUBLIC& in_public) {
  const TPM2B_SENSITIVE_CREATE sensitive{};
  const TPM2B_DATA outside_info{};
  const TPML_PCR_SELECTION creation_pcr{};
  CommandWriter w(TPM2_CC_CreatePrimary, true);
  w.handle(hierarchy)
      .end_handles()
      .put(Tss2_MU_TPM2B_SENSITIVE_CREATE_Marshal, sensitive)
      .put(Tss2_MU_TPM2B_PUBLIC_Marshal, in_public)
      .put(Tss2_MU_TPM2B_DATA_Marshal, outside_info)
      .put(Tss2_MU_TPML_PCR_SELECTION_Marshal, creation_pcr);
  return w.finish();
}

Bytes evict_control(TPM2_HANDLE auth, TPM2_HANDLE object, TPM2_HANDLE persistent) {
  CommandWriter w(TPM2_CC_EvictControl, true);
  w.handle(auth).handle(object).end_handles().put(Tss2_MU_UINT32_Marshal, static_cast<UINT32>(persistent));
  return w.finish();
}

Bytes read_public(TPM2_HANDLE object) {
  CommandWriter w(TPM2_CC_ReadPublic, false);
  w.handle(object).end_handles();
  return w.finish();
}

Bytes flush_context(TPM2_HANDLE handle) {
  CommandWriter w(TPM2_CC_FlushContext, false);
  w.end_handles().put(Tss2_MU_UINT32_Marshal, static_cast<UINT32>(handle));
  return w.finish();
}

Bytes nv_define_space(TPM2_HANDLE auth, TPM2_HANDLE index, TPMA_NV attributes, std::uint16_t size) {
  const TPM2B_AUTH no_auth{};
  TPM2B_NV_PUBLIC info{};
  info.nvPublic.nvIndex = index;
  info.nvPublic.nameAlg = TPM2_ALG_SHA256;
  info.nvPublic.attributes = attributes;
  info.nvPublic.dataSize = size;
  CommandWriter w(TPM2_CC_NV_DefineSpace, true);
  w.handle(auth).end_handles().put(Tss2_MU_TPM2B_AUTH_Marshal, no_auth).put(Tss2_MU_TPM2B_NV_PUBLIC_Marshal, info);
  return w.finish();
}

Bytes nv_write(TPM2_HANDLE auth, TPM2_HANDLE index, std::span<const std::uint8_t> data, std::uint16_t offset) {
  TPM2B_MAX_NV_BUFFER buffer{};
  buffer.size = static_cast<UINT16>(std::min(data.size(), sizeof buffer.buffer));
  if (buffer.size > 0) std::memcpy(buffer.buffer, data.data(), buffer.size);
  CommandWriter w(TPM2_CC_NV_Write, true);
  w.handle(auth).handle(index).end_handles().put(Tss2_MU_TPM2B_MAX_NV_BUFFER_Marshal, buffer).put(
      Tss2_MU_UINT16_Marshal, static_cast<UINT16>(offset));
  return w.finish();
}

Bytes nv_write_lock(TPM2_HANDLE auth, TPM2_HANDLE index) {
  CommandWriter w(TPM2_CC_NV_WriteLock, true);
  w.handle(auth).handle(index).end_handles();
  return w.finish();
}

Bytes nv_undefine_space(TPM2_HANDLE auth, TPM2_HANDLE index) {
  CommandWriter w(TPM2_CC_NV_UndefineSpace, true);
  w.handle(auth).handle(index).end_handles();
  return w.finish();
}

Bytes pcr_extend(std::uint32_t pcr, std::span<const PcrDigest> digests) {
  TPML_DIGEST_VALUES values{};
  for (const PcrDigest& d : digests) {
    if (values.count >= TPM2_NUM_PCR_BANKS) break;
    TPMT_HA& ha = values.digests[values.count++];
    ha.hashAlg = d.alg;
    std::memcpy(&ha.digest, d.digest.data(), std::min(d.digest.size(), sizeof ha.digest));
  }
  CommandWriter w(TPM2_CC_PCR_Extend, true);
  w.handle(pcr).end_handles().put(Tss2_MU_TPML_DIGEST_VALUES_Marshal, values);
  return w.finish();
}

Bytes get_capability_pcrs() {
  CommandWriter w(TPM2_CC_GetCapability, false);
  w.end_handles()
      .put(Tss2_MU_UINT32_Marshal, static_cast<UINT32>(TPM2_CAP_PCRS))
      .put(Tss2_MU_UINT32_Marshal, static_cast<UINT32>(0))
      .put(Tss2_MU_UINT32_Marshal, static_cast<UINT32>(TPM2_NUM_PCR_BANKS));
  return w.finish();
}

Bytes get_capability_fixed_properties() {
  CommandWriter w(TPM2_CC_GetCapability, false);
  w.end_handles()
      .put(Tss2_MU_UINT32_Marshal, static_cast<UINT32>(TPM2_CAP_TPM_PROPERTIES))
      .put(Tss2_MU_UINT32_Marshal, static_cast<UINT32>(TPM2_PT_FAMILY_INDICATOR))
      .put(Tss2_MU_UINT32_Marshal, static_cast<UINT32>(TPM2_PT_FIRMWARE_VERSION_2 - TPM2_PT_FAMILY_INDICATOR + 1));
  return w.finish();
}

Result<Response> parse_response(std::span<const std::uint8_t> packet, std::size_t handle_count, bool had_sessions) {
  std::size_t offset = 0;
  UINT16 tag = 0;
  UINT32 size = 0;
  UINT32 rc = 0;
  if (Tss2_MU_UINT16_Unmarshal(packet.data(), packet.size(), &offset, &tag) != TSS2_RC_SUCCESS ||
      Tss2_MU_UINT32_Unmarshal(packet.data(), packet.size(), &offset, &size) != TSS2_RC_SUCCESS ||
      Tss2_MU_UINT32_Unmarshal(packet.data(), packet.size(), &offset, &rc) != TSS2_RC_SUCCESS) {
    return malformed("short header");
  }
  if (size != packet.size()) return malformed("size field " + std::to_string(size) + " but " + std::to_string(packet.size()) + " bytes");
  Response out;
  out.rc = rc;
  if (rc != 0) return out;
  for (std::size_t i = 0; i < handle_count; ++i) {
    UINT32 h = 0;
    if (Tss2_MU_UINT32_Unmarshal(packet.data(), packet.size(), &offset, &h) != TSS2_RC_SUCCESS) {
      return malformed("missing handle");
    }
    out.handles.push_back(h);
  }
  std::size_t end = packet.size();
  if (had_sessions) {
    if (tag != TPM2_ST_SESSIONS) return malformed("no session area after an authorized command");
    UINT32 parameter_size = 0;
    if (Tss2_MU_UINT32_Unmarshal(packet.data(), packet.size(), &offset, &parameter_size) != TSS2_RC_SUCCESS ||
        parameter_size > packet.size() - offset) {
      return malformed("bad parameter size");
    }
    end = offset + parameter_size;
  }
  out.parameters.assign(packet.begin() + static_cast<std::ptrdiff_t>(offset),
                        packet.begin() + static_cast<std::ptrdiff_t>(end));
  return out;
}

Result<PublicKey> parse_create_primary(std::span<const std::uint8_t> parameters) {
  TPM2B_PUBLIC pub{};
  std::size_t offset = 0;
  if (Tss2_MU_TPM2B_PUBLIC_Unmarshal(parameters.data(), parameters.size(), &offset, &pub) != TSS2_RC_SUCCESS) {
    return malformed("CreatePrimary outPublic");
  }
  const TPMT_PUBLIC& t = pub.publicArea;
  PublicKey key;
  if (t.type == TPM2_ALG_RSA) {
    key.kind = EkKind::kRsa2048;
    key.rsa_modulus.assign(t.unique.rsa.buffer, t.unique.rsa.buffer + t.unique.rsa.size);
    key.rsa_exponent = t.parameters.rsaDetail.exponent == 0 ? 65537 : t.parameters.rsaDetail.exponent;
    if (key.rsa_modulus.size() != 256) return malformed("RSA EK modulus of " + std::to_string(key.rsa_modulus.size()) + " bytes");
  } else if (t.type == TPM2_ALG_ECC && t.parameters.eccDetail.curveID == TPM2_ECC_NIST_P256) {
    key.kind = EkKind::kEccP256;
    key.ecc_x.assign(t.unique.ecc.x.buffer, t.unique.ecc.x.buffer + t.unique.ecc.x.size);
    key.ecc_y.assign(t.unique.ecc.y.buffer, t.unique.ecc.y.buffer + t.unique.ecc.y.size);
    if (key.ecc_x.size() != 32 || key.ecc_y.size() != 32) return malformed("ECC EK point size");
  } else {
    return malformed("unexpected key type " + std::to_string(t.type));
  }
  return key;
}

Result<PublicKey> parse_read_public(std::span<const std::uint8_t> parameters) {
  // outPublic leads ReadPublic's parameters as it leads CreatePrimary's
  // (name and qualifiedName follow; they are not needed).
  return parse_create_primary(parameters);
}

Result<std::vector<TPM2_ALG_ID>> parse_active_banks(std::span<const std::uint8_t> parameters) {
  std::size_t offset = 0;
  BYTE more = 0;
  TPMS_CAPABILITY_DATA data{};
  if (Tss2_MU_BYTE_Unmarshal(parameters.data(), parameters.size(), &offset, &more) != TSS2_RC_SUCCESS ||
      Tss2_MU_TPMS_CAPABILITY_DATA_Unmarshal(parameters.data(), parameters.size(), &offset, &data) != TSS2_RC_SUCCESS ||
      data.capability != TPM2_CAP_PCRS) {
    return malformed("GetCapability(PCRS)");
  }
  std::vector<TPM2_ALG_ID> banks;
  const TPML_PCR_SELECTION& s = data.data.assignedPCR;
  for (UINT32 i = 0; i < s.count && i < TPM2_NUM_PCR_BANKS; ++i) {
    bool any = false;
    for (std::size_t b = 0; b < s.pcrSelections[i].sizeofSelect && b < sizeof s.pcrSelections[i].pcrSelect; ++b) {
      any = any || s.pcrSelections[i].pcrSelect[b] != 0;
    }
    if (any) banks.push_back(s.pcrSelections[i].hash);
  }
  return banks;
}

Result<TpmProperties> parse_fixed_properties(std::span<const std::uint8_t> parameters) {
  std::size_t offset = 0;
  BYTE more = 0;
  TPMS_CAPABILITY_DATA data{};
  if (Tss2_MU_BYTE_Unmarshal(parameters.data(), parameters.size(), &offset, &more) != TSS2_RC_SUCCESS ||
      Tss2_MU_TPMS_CAPABILITY_DATA_Unmarshal(parameters.data(), parameters.size(), &offset, &data) != TSS2_RC_SUCCESS ||
      data.capability != TPM2_CAP_TPM_PROPERTIES) {
    return malformed("GetCapability(TPM_PROPERTIES)");
  }
  TpmProperties out;
  std::array<UINT32, 4> vendor{};
  const TPML_TAGGED_TPM_PROPERTY& list = data.data.tpmProperties;
  for (UINT32 i = 0; i < list.count && i < TPM2_MAX_TPM_PROPERTIES; ++i) {
    const UINT32 value = list.tpmProperty[i].value;
    switch (list.tpmProperty[i].property) {
      case TPM2_PT_LEVEL: out.level = value; break;
      case TPM2_PT_REVISION: out.revision = value; break;
      case TPM2_PT_MANUFACTURER: out.manufacturer = value; break;
      case TPM2_PT_VENDOR_STRING_1: vendor[0] = value; break;
      case TPM2_PT_VENDOR_STRING_2: vendor[1] = value; break;
      case TPM2_PT_VENDOR_STRING_3: vendor[2] = value; break;
      case TPM2_PT_VENDOR_STRING_4: vendor[3] = value; break;
      case TPM2_PT_FIRMWARE_VERSION_1: out.firmware_version_1 = value; break;
      default: break;
    }
  }
  for (UINT32 word : vendor) {
    for (int shift = 24; shift >= 0; shift -= 8) {
      const char c = static_cast<char>((word >> shift) & 0xff);
      if (c >= 0x20 && c < 0x7f) out.vendor += c;
    }
  }
  while (!out.vendor.empty() && out.vendor.back() == ' ') out.vendor.pop_back();
  return out;
}

Result<bool> parse_pcr_allocate(std::span<const std::uint8_t> parameters) {
  std::size_t offset = 0;
  BYTE success = 0;
  if (Tss2_MU_BYTE_Unmarshal(parameters.data(), parameters.size(), &offset, &success) != TSS2_RC_SUCCESS) {
    return malformed("PCR_Allocate");
  }
  return success != 0;
}

std::string rc_text(std::uint32_t rc) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "TPM rc 0x%08x", rc);
  return buf;
}

}  // namespace vtpm::tpm2
