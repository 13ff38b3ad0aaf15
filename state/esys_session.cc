#include "state/esys_session.h"

#include <openssl/crypto.h>

#include <tss2/tss2_rc.h>

#include <cstdio>

namespace vtpm::state {

OpensslThreadState::~OpensslThreadState() { OPENSSL_thread_stop(); }

namespace {

// The TPM's own format-one/format-zero code without the layer and
// parameter/session/handle index bits.
TSS2_RC tpm_base_code(TSS2_RC rc) {
  if ((rc & TSS2_RC_LAYER_MASK) != TSS2_TPM_RC_LAYER) return rc;
  if (rc & TPM2_RC_FMT1) return rc & (TPM2_RC_FMT1 | 0x3F);
  return rc & 0xFFF;
}

}  // namespace

bool is_transient_tpm_error(TSS2_RC rc) {
  const TSS2_RC layer = rc & TSS2_RC_LAYER_MASK;
  if (layer == TSS2_TCTI_RC_LAYER) return true;  // I/O error, timeout, connection lost
  if (layer == TSS2_RESMGR_RC_LAYER || layer == TSS2_RESMGR_TPM_RC_LAYER) return true;
  if (rc == TSS2_ESYS_RC_TRY_AGAIN || rc == TSS2_ESYS_RC_IO_ERROR || rc == TSS2_ESYS_RC_NO_DECRYPT_PARAM ||
      rc == TSS2_ESYS_RC_MALFORMED_RESPONSE || rc == TSS2_ESYS_RC_INSUFFICIENT_RESPONSE) {
    return true;
  }
  const TSS2_RC code = tpm_base_code(rc);
  return code == TPM2_RC_RETRY || code == TPM2_RC_YIELDED || code == TPM2_RC_TESTING || code == TPM2_RC_NV_RATE ||
         code == TPM2_RC_CANCELED || code == TPM2_RC_MEMORY || code == TPM2_RC_OBJECT_MEMORY ||
         code == TPM2_RC_SESSION_MEMORY || code == TPM2_RC_CONTEXT_GAP || code == TPM2_RC_LOCALITY;
}

bool is_policy_failure(TSS2_RC rc) {
  const TSS2_RC code = tpm_base_code(rc);
  return code == TPM2_RC_POLICY_FAIL || code == TPM2_RC_PCR_CHANGED || code == TPM2_RC_POLICY;
}

Error tpm_error(const std::string& what, TSS2_RC rc) {
  char hex[16];
  std::snprintf(hex, sizeof hex, "0x%x", rc);
  return make_error(is_transient_tpm_error(rc) ? ErrorCode::kUnavailable : ErrorCode::kTpmFailure,
                    what + ": " + Tss2_RC_Decode(rc) + " (" + hex + ")");
}

}  // namespace vtpm::state
