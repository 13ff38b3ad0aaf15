// `vtpmctl sign-policy`: the operator's offline half of PolicyAuthorize.
// Computes the PolicyPCR digest for the given (future) PCR values and
// signs it; vtpmd accepts the file from its --tpm-signed-policies folder.
#pragma once

#include "proto/control_message.h"
#include "proto/result.h"

namespace vtpm::ctl {

// params: key, pcrs, pcr_values (array), policy_file. Returns a summary line.
Result<std::string> sign_policy_file(const control::Json& params);

}  // namespace vtpm::ctl
