// `vtpmctl measure --file F`: the file is hashed here, by the client that
// can read it, in every bank vtpmd can allocate; the daemon extends the
// instance's active banks with the matching digests.
#pragma once

#include <string>

#include "proto/control_message.h"
#include "proto/result.h"

namespace vtpm::ctl {

// {"sha1": hex, "sha256": hex, "sha384": hex, "sha512": hex}; a usage
// error naming the file if it cannot be read.
Result<control::Json> digest_file(const std::string& path);

}  // namespace vtpm::ctl
