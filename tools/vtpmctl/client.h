// One blocking request/response exchange with the daemon's control socket
// (docs/control-protocol.md): connect, write one request line, read lines
// until the response with the matching id arrives, all under one deadline.
#pragma once

#include <chrono>
#include <functional>
#include <optional>
#include <string>
#include <string_view>

#include "proto/control_message.h"
#include "proto/result.h"

namespace vtpm::ctl {

struct ClientOptions {
  std::string socket_path;
  // Whole-exchange limit; nullopt waits forever.
  std::optional<std::chrono::milliseconds> timeout;
};

// A daemon-side error comes back as a Response with ok == false. An Error
// result means the exchange itself failed (cannot connect, connection lost,
// timeout, malformed response); its message names the socket path.
// With `on_progress`, the request asks for progress lines and each one the
// daemon sends before its reply is passed to it.
using ProgressSink = std::function<void(const control::Json&)>;
Result<control::Response> call(const ClientOptions& options, std::string_view method,
                               const control::Json& params, const ProgressSink& on_progress = {});

}  // namespace vtpm::ctl
