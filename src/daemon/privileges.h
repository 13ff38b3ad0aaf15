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
Status become_user(const std::string& user, const std::vector<std::string>& directories);

}  // namespace vtpm
