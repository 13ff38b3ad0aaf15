// Builds the root of trust named by --root-of-trust (and resolves "auto").
#pragma once

#include <memory>

#include "src/core/config.h"
#include "state/crypto.h"
#include "state/root_of_trust.h"

namespace vtpm {

// The spec "auto" stands for here (what sealed master.key; for a new state
// directory a TPM at /dev/tpmrm0 if present, else "file"); other specs as given.
Result<std::string> resolve_root_of_trust(const Config& config);

Result<std::unique_ptr<state::RootOfTrust>> open_root_of_trust(const Config& config, state::Drbg& drbg);

}  // namespace vtpm
