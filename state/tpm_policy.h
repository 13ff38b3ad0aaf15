// The TPM root's policy vocabulary, without talking to a TPM: PCR
// selections ("sha256:0,2,4,7"), predicted PCR values ("sha256:7=HEX"),
// the PolicyPCR digest computed offline, the operator's signing key as a
// TPM public area, and operator-signed policies (the files `vtpmctl
// sign-policy` writes and the daemon's PolicyAuthorize consumes).
#pragma once

#include <tss2/tss2_tpm2_types.h>

#include <map>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "proto/result.h"
#include "state/bytes.h"
#include "state/crypto.h"

namespace vtpm::state {

inline constexpr std::string_view kDefaultSealPcrs = "sha256:0,2,4,7";

// "sha256:0,2,4,7" or several banks joined by '+': "sha1:0,7+sha256:0,7".
Result<TPML_PCR_SELECTION> parse_pcr_selection(std::string_view text);
std::string describe_pcr_selection(const TPML_PCR_SELECTION& selection);

// Key: (hash algorithm, PCR index).
using PcrValues = std::map<std::pair<TPMI_ALG_HASH, unsigned>, Bytes>;
// "sha256:7=HEX" each; the value's length must match the bank.
Result<PcrValues> parse_pcr_values(const std::vector<std::string>& items);

// The digest PolicyPCR folds in: hash of the selected PCRs' values, in
// selection order (banks as listed, PCRs ascending). Every selected PCR
// must have a value.
Result<Bytes> pcr_composite_digest(const TPML_PCR_SELECTION& selection, const PcrValues& values);
// policyDigest after TPM2_PolicyPCR(selection, composite) from all zeros.
Bytes policy_pcr_digest(const TPML_PCR_SELECTION& selection, std::span<const std::uint8_t> composite);

// The operator's policy-signing key (PEM, public or private; RSA 2048+ or
// ECC NIST P-256) as the public area vtpmd loads into the TPM.
Result<TPM2B_PUBLIC> signing_key_public(const std::string& pem_path);

struct SignedPolicy {
  std::string source;  // file it came from, for messages
  TPML_PCR_SELECTION pcrs{};
  TPM2B_DIGEST approved{};
  TPM2B_NONCE policy_ref{};
  TPMT_SIGNATURE signature{};
};

// Signs approved_policy (aHash = SHA-256(approved ‖ policyRef)) with the
// private key in `pem_path`; returns the signed-policy file's text (JSON).
Result<std::string> sign_policy(const std::string& pem_path, const TPML_PCR_SELECTION& pcrs,
                                std::span<const std::uint8_t> approved_policy, Drbg& drbg);
Result<SignedPolicy> parse_signed_policy(std::string_view text, const std::string& source);
// Every *.json in `directory`; files that do not parse are reported, not fatal.
std::vector<SignedPolicy> load_signed_policies(const std::string& directory, std::vector<std::string>& problems);

}  // namespace vtpm::state
