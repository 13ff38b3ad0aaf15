#include "state/tpm_policy.h"

#include <dirent.h>
#include <mbedtls/ecdsa.h>
#include <mbedtls/pk.h>
#include <mbedtls/rsa.h>
#include <tss2/tss2_mu.h>

#include <algorithm>
#include <charconv>
#include <cstring>
#include <memory>
#include <nlohmann/json.hpp>

#include "proto/hex.h"
#include "state/file_io.h"

namespace vtpm::state {
namespace {

struct Bank {
  std::string_view name;
  TPMI_ALG_HASH alg;
  std::size_t size;
};
constexpr Bank kBanks[] = {{"sha1", TPM2_ALG_SHA1, 20},
                           {"sha256", TPM2_ALG_SHA256, 32},
                           {"sha384", TPM2_ALG_SHA384, 48},
                           {"sha512", TPM2_ALG_SHA512, 64}};
constexpr unsigned kPcrCount = 24;

const Bank* bank_named(std::string_view name) {
  for (const Bank& b : kBanks) {
    if (b.name == name) return &b;
  }
  return nullptr;
}
const Bank* bank_of(TPMI_ALG_HASH alg) {
  for (const Bank& b : kBanks) {
    if (b.alg == alg) return &b;
  }
  return nullptr;
}

Error invalid(const std::string& what) { return make_error(ErrorCode::kInvalidArgument, what); }

std::optional<unsigned> parse_index(std::string_view s) {
  unsigned v = 0;
  auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  if (ec != std::errc() || p != s.data() + s.size() || v >= kPcrCount) return std::nullopt;
  return v;
}

Bytes marshal_selection(const TPML_PCR_SELECTION& sel) {
  Bytes out(sizeof(TPML_PCR_SELECTION));
  size_t offset = 0;
  Tss2_MU_TPML_PCR_SELECTION_Marshal(&sel, out.data(), out.size(), &offset);
  out.resize(offset);
  return out;
}

struct PkContext {
  PkContext() { mbedtls_pk_init(&pk); }
  ~PkContext() { mbedtls_pk_free(&pk); }
  PkContext(const PkContext&) = delete;
  PkContext& operator=(const PkContext&) = delete;
  mbedtls_pk_context pk;
};

struct Mpi {
  Mpi() { mbedtls_mpi_init(&v); }
  ~Mpi() { mbedtls_mpi_free(&v); }
  Mpi(const Mpi&) = delete;
  Mpi& operator=(const Mpi&) = delete;
  mbedtls_mpi v;
};

int drbg_random(void* drbg, unsigned char* out, size_t len) {
  return static_cast<Drbg*>(drbg)->fill(std::span(out, len)).ok() ? 0 : -1;
}

Result<TPM2B_PUBLIC> public_of(mbedtls_pk_context& pk, const std::string& path) {
  TPM2B_PUBLIC pub{};
  TPMT_PUBLIC& area = pub.publicArea;
  area.nameAlg = TPM2_ALG_SHA256;
  area.objectAttributes = TPMA_OBJECT_SIGN_ENCRYPT | TPMA_OBJECT_USERWITHAUTH;
  if (mbedtls_pk_get_type(&pk) == MBEDTLS_PK_RSA) {
    mbedtls_rsa_context* rsa = mbedtls_pk_rsa(pk);
    const size_t bytes = mbedtls_rsa_get_len(rsa);
    if (bytes < 256 || bytes > sizeof area.unique.rsa.buffer) {
      return invalid(path + ": RSA keys of 2048 to 4096 bits are supported, this one has " + std::to_string(bytes * 8));
    }
    std::uint8_t e[4]{};
    area.type = TPM2_ALG_RSA;
    area.parameters.rsaDetail.symmetric.algorithm = TPM2_ALG_NULL;
    area.parameters.rsaDetail.scheme.scheme = TPM2_ALG_NULL;
    area.parameters.rsaDetail.keyBits = static_cast<TPMI_RSA_KEY_BITS>(bytes * 8);
    area.unique.rsa.size = static_cast<UINT16>(bytes);
    if (mbedtls_rsa_export_raw(rsa, area.unique.rsa.buffer, bytes, nullptr, 0, nullptr, 0, nullptr, 0, e, sizeof e) != 0) {
      return invalid(path + ": cannot read the RSA public key");
    }
    const std::uint32_t exponent = (std::uint32_t{e[0]} << 24) | (e[1] << 16) | (e[2] << 8) | e[3];
    area.parameters.rsaDetail.exponent = exponent == 65537 ? 0 : exponent;
    return pub;
  }
  if (mbedtls_pk_get_type(&pk) == MBEDTLS_PK_ECKEY) {
    mbedtls_ecp_keypair* ec = mbedtls_pk_ec(pk);
    if (ec->grp.id != MBEDTLS_ECP_DP_SECP256R1) return invalid(path + ": of the ECC curves only NIST P-256 is supported");
    area.type = TPM2_ALG_ECC;
    area.parameters.eccDetail.symmetric.algorithm = TPM2_ALG_NULL;
    area.parameters.eccDetail.scheme.scheme = TPM2_ALG_NULL;
    area.parameters.eccDetail.curveID = TPM2_ECC_NIST_P256;
    area.parameters.eccDetail.kdf.scheme = TPM2_ALG_NULL;
    area.unique.ecc.x.size = 32;
    area.unique.ecc.y.size = 32;
    if (mbedtls_mpi_write_binary(&ec->Q.X, area.unique.ecc.x.buffer, 32) != 0 ||
        mbedtls_mpi_write_binary(&ec->Q.Y, area.unique.ecc.y.buffer, 32) != 0) {
      return invalid(path + ": cannot read the ECC public key");
    }
    return pub;
  }
  return invalid(path + ": not an RSA or ECC key");
}

template <typename T>
Bytes marshal_signature(const T& sig) {
  Bytes out(sizeof(TPMT_SIGNATURE));
  size_t offset = 0;
  Tss2_MU_TPMT_SIGNATURE_Marshal(&sig, out.data(), out.size(), &offset);
  out.resize(offset);
  return out;
}

}  // namespace

Result<TPML_PCR_SELECTION> parse_pcr_selection(std::string_view text) {
  TPML_PCR_SELECTION sel{};
  if (text.empty()) return invalid("empty PCR selection (expected e.g. sha256:0,2,4,7)");
  std::size_t start = 0;
  while (start <= text.size()) {
    const std::size_t end = std::min(text.find('+', start), text.size());
    const std::string_view part = text.substr(start, end - start);
    const std::size_t colon = part.find(':');
    if (colon == std::string_view::npos) return invalid("PCR selection '" + std::string(part) + "': expected BANK:N,N,...");
    const Bank* bank = bank_named(part.substr(0, colon));
    if (!bank) return invalid("unknown PCR bank '" + std::string(part.substr(0, colon)) + "' (sha1, sha256, sha384, sha512)");
    if (sel.count == TPM2_NUM_PCR_BANKS) return invalid("too many PCR banks in '" + std::string(text) + "'");
    for (std::uint32_t i = 0; i < sel.count; ++i) {
      if (sel.pcrSelections[i].hash == bank->alg) return invalid("PCR bank " + std::string(bank->name) + " listed twice");
    }
    TPMS_PCR_SELECTION& s = sel.pcrSelections[sel.count++];
    s.hash = bank->alg;
    s.sizeofSelect = 3;
    std::string_view list = part.substr(colon + 1);
    if (list.empty()) return invalid("PCR bank " + std::string(bank->name) + " selects no PCR");
    std::size_t p = 0;
    while (p <= list.size()) {
      const std::size_t comma = std::min(list.find(',', p), list.size());
      auto index = parse_index(list.substr(p, comma - p));
      if (!index) return invalid("bad PCR index '" + std::string(list.substr(p, comma - p)) + "' (0-23)");
      s.pcrSelect[*index / 8] |= static_cast<BYTE>(1u << (*index % 8));
      p = comma + 1;
    }
    start = end + 1;
  }
  return sel;
}

std::string describe_pcr_selection(const TPML_PCR_SELECTION& sel) {
  std::string out;
  for (std::uint32_t i = 0; i < sel.count; ++i) {
    const Bank* bank = bank_of(sel.pcrSelections[i].hash);
    if (!out.empty()) out += "+";
    out += bank ? std::string(bank->name) : "alg" + std::to_string(sel.pcrSelections[i].hash);
    out += ":";
    bool first = true;
    for (unsigned pcr = 0; pcr < kPcrCount; ++pcr) {
      if (sel.pcrSelections[i].pcrSelect[pcr / 8] & (1u << (pcr % 8))) {
        out += (first ? "" : ",") + std::to_string(pcr);
        first = false;
      }
    }
  }
  return out;
}

Result<PcrValues> parse_pcr_values(const std::vector<std::string>& items) {
  PcrValues values;
  for (const std::string& item : items) {
    const auto colon = item.find(':');
    const auto eq = item.find('=');
    if (colon == std::string::npos || eq == std::string::npos || eq < colon) {
      return invalid("PCR value '" + item + "': expected BANK:N=HEX");
    }
    const Bank* bank = bank_named(std::string_view(item).substr(0, colon));
    if (!bank) return invalid("PCR value '" + item + "': unknown bank");
    auto index = parse_index(std::string_view(item).substr(colon + 1, eq - colon - 1));
    if (!index) return invalid("PCR value '" + item + "': bad PCR index (0-23)");
    auto bytes = from_hex(std::string_view(item).substr(eq + 1));
    if (!bytes || bytes->size() != bank->size) {
      return invalid("PCR value '" + item + "': expected " + std::to_string(bank->size * 2) + " hex digits");
    }
    values[{bank->alg, *index}] = std::move(*bytes);
  }
  return values;
}

Result<Bytes> pcr_composite_digest(const TPML_PCR_SELECTION& sel, const PcrValues& values) {
  Bytes concatenated;
  for (std::uint32_t i = 0; i < sel.count; ++i) {
    const TPMS_PCR_SELECTION& s = sel.pcrSelections[i];
    for (unsigned pcr = 0; pcr < kPcrCount; ++pcr) {
      if (!(s.pcrSelect[pcr / 8] & (1u << (pcr % 8)))) continue;
      auto it = values.find({s.hash, pcr});
      if (it == values.end()) {
        const Bank* bank = bank_of(s.hash);
        return invalid("no value given for PCR " + std::string(bank ? bank->name : "?") + ":" + std::to_string(pcr));
      }
      concatenated.insert(concatenated.end(), it->second.begin(), it->second.end());
    }
  }
  const Digest d = sha256(concatenated);
  return Bytes(d.begin(), d.end());
}

Bytes policy_pcr_digest(const TPML_PCR_SELECTION& sel, std::span<const std::uint8_t> composite) {
  ByteWriter w;
  w.raw(Bytes(32, 0));
  w.u32(TPM2_CC_PolicyPCR);
  w.raw(marshal_selection(sel));
  w.raw(composite);
  const Digest d = sha256(w.bytes());
  return Bytes(d.begin(), d.end());
}

Result<TPM2B_PUBLIC> signing_key_public(const std::string& pem_path) {
  PkContext key;
  if (mbedtls_pk_parse_public_keyfile(&key.pk, pem_path.c_str()) != 0) {
    mbedtls_pk_free(&key.pk);
    mbedtls_pk_init(&key.pk);
    if (mbedtls_pk_parse_keyfile(&key.pk, pem_path.c_str(), nullptr) != 0) {
      return invalid(pem_path + ": not a readable PEM public or private key");
    }
  }
  return public_of(key.pk, pem_path);
}

Result<std::string> sign_policy(const std::string& pem_path, const TPML_PCR_SELECTION& pcrs,
                                std::span<const std::uint8_t> approved, Drbg& drbg) {
  PkContext key;
  if (mbedtls_pk_parse_keyfile(&key.pk, pem_path.c_str(), nullptr) != 0) {
    return invalid(pem_path + ": not a readable PEM private key (unencrypted)");
  }
  if (auto pub = public_of(key.pk, pem_path); !pub) return pub.error();
  const Digest a_hash = sha256(approved);  // policyRef is empty
  TPMT_SIGNATURE sig{};
  if (mbedtls_pk_get_type(&key.pk) == MBEDTLS_PK_RSA) {
    sig.sigAlg = TPM2_ALG_RSASSA;
    sig.signature.rsassa.hash = TPM2_ALG_SHA256;
    size_t len = 0;
    mbedtls_rsa_context* rsa = mbedtls_pk_rsa(key.pk);
    mbedtls_rsa_set_padding(rsa, MBEDTLS_RSA_PKCS_V15, MBEDTLS_MD_SHA256);
    if (mbedtls_pk_sign(&key.pk, MBEDTLS_MD_SHA256, a_hash.data(), a_hash.size(), sig.signature.rsassa.sig.buffer, &len,
                        drbg_random, &drbg) != 0) {
      return make_error(ErrorCode::kInternal, "RSA signing failed");
    }
    sig.signature.rsassa.sig.size = static_cast<UINT16>(len);
  } else {
    mbedtls_ecp_keypair* ec = mbedtls_pk_ec(key.pk);
    Mpi r, s;
    if (mbedtls_ecdsa_sign(&ec->grp, &r.v, &s.v, &ec->d, a_hash.data(), a_hash.size(), drbg_random, &drbg) != 0) {
      return make_error(ErrorCode::kInternal, "ECDSA signing failed");
    }
    sig.sigAlg = TPM2_ALG_ECDSA;
    sig.signature.ecdsa.hash = TPM2_ALG_SHA256;
    sig.signature.ecdsa.signatureR.size = 32;
    sig.signature.ecdsa.signatureS.size = 32;
    mbedtls_mpi_write_binary(&r.v, sig.signature.ecdsa.signatureR.buffer, 32);
    mbedtls_mpi_write_binary(&s.v, sig.signature.ecdsa.signatureS.buffer, 32);
  }
  nlohmann::json doc = {{"format", "vtpmd-signed-policy-1"},
                        {"pcrs", describe_pcr_selection(pcrs)},
                        {"approved_policy", to_hex(approved)},
                        {"policy_ref", ""},
                        {"signature", to_hex(marshal_signature(sig))}};
  return doc.dump(2) + "\n";
}

Result<SignedPolicy> parse_signed_policy(std::string_view text, const std::string& source) {
  auto bad = [&](const std::string& why) { return invalid("signed policy " + source + ": " + why); };
  const auto doc = nlohmann::json::parse(text, nullptr, false);
  if (doc.is_discarded() || !doc.is_object()) return bad("not a JSON object");
  for (const char* key : {"format", "pcrs", "approved_policy", "policy_ref", "signature"}) {
    if (!doc.contains(key) || !doc[key].is_string()) return bad(std::string("missing string field '") + key + "'");
  }
  if (doc["format"] != "vtpmd-signed-policy-1") return bad("unknown format");
  SignedPolicy p;
  p.source = source;
  auto pcrs = parse_pcr_selection(doc["pcrs"].get<std::string>());
  if (!pcrs) return bad(pcrs.error().message);
  p.pcrs = *pcrs;
  auto approved = from_hex(doc["approved_policy"].get<std::string>());
  if (!approved || approved->size() != 32) return bad("approved_policy must be 64 hex digits");
  p.approved.size = 32;
  std::memcpy(p.approved.buffer, approved->data(), 32);
  auto ref = from_hex(doc["policy_ref"].get<std::string>());
  if (!ref || ref->size() > sizeof p.policy_ref.buffer) return bad("bad policy_ref");
  p.policy_ref.size = static_cast<UINT16>(ref->size());
  if (!ref->empty()) std::memcpy(p.policy_ref.buffer, ref->data(), ref->size());  // data() may be null
  auto sig = from_hex(doc["signature"].get<std::string>());
  size_t offset = 0;
  if (!sig || Tss2_MU_TPMT_SIGNATURE_Unmarshal(sig->data(), sig->size(), &offset, &p.signature) != TSS2_RC_SUCCESS ||
      offset != sig->size()) {
    return bad("signature is not a marshalled TPMT_SIGNATURE");
  }
  return p;
}

std::vector<SignedPolicy> load_signed_policies(const std::string& directory, std::vector<std::string>& problems) {
  std::vector<SignedPolicy> out;
  if (directory.empty()) return out;
  std::unique_ptr<DIR, int (*)(DIR*)> dir(::opendir(directory.c_str()), ::closedir);
  if (!dir) {
    problems.push_back("cannot read the signed-policy directory " + directory);
    return out;
  }
  std::vector<std::string> names;
  while (dirent* e = ::readdir(dir.get())) {
    const std::string name = e->d_name;
    if (name.ends_with(".json")) names.push_back(name);
  }
  std::sort(names.begin(), names.end());
  for (const auto& name : names) {
    const std::string path = directory + "/" + name;
    auto bytes = read_whole_file(path);
    if (!bytes) {
      problems.push_back(bytes.error().message);
      continue;
    }
    auto policy = parse_signed_policy(std::string_view(reinterpret_cast<const char*>(bytes->data()), bytes->size()), path);
    if (!policy) problems.push_back(policy.error().message);
    else out.push_back(std::move(*policy));
  }
  return out;
}

}  // namespace vtpm::state
