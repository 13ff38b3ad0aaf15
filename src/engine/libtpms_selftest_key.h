// Part of the libtpms adapter: the TPM 1.2 self-test key cache (see the .cc
// for why). Engine thread only, except the counter.
#pragma once

#include <cstdint>

namespace vtpm::engine {

void selftest_key_cache_enable(bool enabled);
// Set by the adapter around a TPM 1.2 restore's TPMLIB_MainInit.
void selftest_key_cache_restoring(bool restoring);
// How many self-tests received the cached key (for tests and status).
std::uint64_t selftest_keys_reused();

}  // namespace vtpm::engine
