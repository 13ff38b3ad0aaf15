// Builds the root of trust named by --root-of-trust (and resolves "auto").
#pragma once

#include <memory>

#include "src/core/config.h"
#include "state/crypto.h"
#include "state/root_of_trust.h"

namespace vtpm {

Result<std::unique_ptr<state::RootOfTrust>> open_root_of_trust(const Config& config, state::Drbg& drbg);

}  // namespace vtpm
