// Dropping root: vtpmd starts as root (it may need to create /var/lib/vtpmd
// and /run/vtpmd), hands those directories and the state files in them to
// a dedicated user, and becomes that user for good (no_new_privs, so no
// setuid binary can give root back) before it opens any state or socket.
#pragma once

#include <string>
#include <vector>

#include "proto/result.h"

namespace vtpm {

// `directories` are created (0700) if missing and, with every regular file
// directly inside them, given to the user. Fails if not root, or if the
// user does not exist.
// `dumpable`: the dump policy to restore afterwards (a uid change resets it).
Status become_user(const std::string& user, const std::vector<std::string>& directories, bool dumpable);

// PR_SET_DUMPABLE. vtpmd is not dumpable by default: libtpms keeps every
// guest's TPM secrets (seeds, keys, NV) in ordinary memory that we cannot
// mark, so a core would carry them all. Non-dumpable also shuts
// /proc/PID/mem and ptrace to anyone but root. `allow` (for debugging)
// makes cores possible; vtpmd's own keys and decrypted state buffers stay
// out of them (MADV_DONTDUMP, state/secure_memory.h).
Status apply_dump_policy(bool allow);

}  // namespace vtpm
