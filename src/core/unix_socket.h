// Creating a listening Unix socket the way a service should: the parent
// directory made private if we create it, a live peer on the path refused,
// a stale socket from a dead process replaced, anything that is not a
// socket never touched, and the socket born with `mode` (no window).
#pragma once

#include <uv.h>

#include <string>

#include "proto/result.h"

namespace vtpm {

// REQUIRES: `pipe` initialised with uv_pipe_init. Binds and listens.
// A parent directory created here gets `dir_mode`.
Status listen_unix(uv_pipe_t* pipe, const std::string& path, unsigned mode, uv_connection_cb on_connection,
                   unsigned dir_mode = 0700);
// The two halves of listen_unix. Between them the socket file exists and a
// client's connect is refused (ECONNREFUSED), as if nothing were there yet.
Status bind_unix(uv_pipe_t* pipe, const std::string& path, unsigned mode, unsigned dir_mode = 0700);
Status start_listening(uv_pipe_t* pipe, const std::string& path, uv_connection_cb on_connection);

}  // namespace vtpm
