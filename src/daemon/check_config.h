// vtpmd --check-config: the settings as parsed, and whether the daemon
// could start with them (state directory, root of trust, socket
// directories, listeners, users, worker executable), printed as a summary
// on stdout. Starts nothing and creates, writes or seals nothing: a TPM
// channel is opened and closed without a command; a key file is only
// checked for access. Returns the exit code: 0 usable, 1 not.
#pragma once

#include "src/core/config.h"

namespace vtpm {

int check_config(const Config& config);

}  // namespace vtpm
