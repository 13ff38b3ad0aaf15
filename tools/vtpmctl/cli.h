// Command-line parsing for vtpmctl: turns argv into the control method and
// params to send, validating UUIDs, numbers and hex before any I/O. Every
// Error returned here is a usage error (exit status 2).
#pragma once

#include <chrono>
#include <istream>
#include <optional>
#include <span>
#include <string>
#include <string_view>

#include "proto/control_message.h"
#include "proto/result.h"

namespace vtpm::ctl {

inline constexpr std::string_view kDefaultSocket = "/run/vtpmd/control.sock";
inline constexpr std::chrono::milliseconds kDefaultTimeout{60'000};

struct Invocation {
  enum class Action { kRun, kHelp, kVersion, kSignPolicy };  // kSignPolicy: local, params as parsed
  Action action = Action::kRun;
  std::string socket_path{kDefaultSocket};
  bool json = false;
  std::optional<std::chrono::milliseconds> timeout = kDefaultTimeout;  // nullopt: wait forever
  std::string method;  // also the command name: the commands map 1:1 to methods
  control::Json params = control::Json::object();
  std::string output_path;  // export: where the bundle goes
};

// args excludes argv[0]. env_socket is $VTPMD_SOCKET (may be null); `in`
// supplies the hex for `exec U -`.
Result<Invocation> parse_command_line(std::span<const std::string_view> args, const char* env_socket,
                                      std::istream& in);

}  // namespace vtpm::ctl
