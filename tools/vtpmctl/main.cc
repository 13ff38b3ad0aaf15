// vtpmctl: command-line client of vtpmd's JSON control socket.
// Exit status: 0 success, 1 daemon error, 2 usage error, 3 transport failure.
#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <iostream>
#include <string_view>
#include <vector>

#include "proto/hex.h"
#include "proto/result.h"
#include "tools/vtpmctl/cli.h"
#include "tools/vtpmctl/client.h"
#include "tools/vtpmctl/format.h"
#include "tools/vtpmctl/sign_policy.h"
#include "tools/vtpmctl/unique_fd.h"
#include "tools/vtpmctl/usage.h"

#ifndef VTPMD_VERSION
#define VTPMD_VERSION "unknown"
#endif

namespace vtpm::ctl {
namespace {

enum ExitCode : int { kOk = 0, kDaemonError = 1, kUsageError = 2, kTransportError = 3 };

int fail(ExitCode code, std::string_view message) {
  std::cerr << "vtpmctl: " << message << "\n";
  if (code == kUsageError) std::cerr << "Try 'vtpmctl --help' for more information.\n";
  return code;
}

// export's bundle and eventlog's log: the hex field `field` of the result,
// as bytes; to a new file readable by its owner only, or to stdout.
Status write_binary(const std::string& path, const control::Json& result, const char* field) {
  auto bytes = from_hex(result.value(field, std::string()));
  if (!bytes || bytes->empty()) return make_error(ErrorCode::kCorrupt, std::string("the daemon sent no ") + field);
  if (path.empty()) {
    std::cout.write(reinterpret_cast<const char*>(bytes->data()), static_cast<std::streamsize>(bytes->size()));
    return Status::success();
  }
  UniqueFd fd(::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600));
  if (!fd.valid()) return make_error(ErrorCode::kIo, "cannot create " + path + ": " + std::strerror(errno));
  std::size_t done = 0;
  while (done < bytes->size()) {
    const ssize_t n = ::write(fd.get(), bytes->data() + done, bytes->size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return make_error(ErrorCode::kIo, "cannot write " + path + ": " + std::strerror(errno));
    done += static_cast<std::size_t>(n);
  }
  if (::fsync(fd.get()) != 0) return make_error(ErrorCode::kIo, "cannot sync " + path + ": " + std::strerror(errno));
  return Status::success();
}

// Progress of a long request on a terminal: one line redrawn in place on
// stderr. Not on a pipe or a file, nor with --json, where it would only be
// noise.
class ProgressLine {
 public:
  // `verb`: a bulk add's count ("added 3/10"); `steps`: one operation's steps ("importing: loaded").
  ProgressLine(const char* verb, const char* steps, bool json)
      : verb_(verb), steps_(steps), tty_(!json && ::isatty(2) == 1) {}
  ~ProgressLine() { finish(); }
  // Ends the line before the answer is printed.
  void finish() {
    if (drawn_) std::cerr << "\n" << std::flush;
    drawn_ = false;
  }
  void operator()(const control::Json& p) {
    if (!tty_ || !p.is_object()) return;
    std::string text;
    if (p.contains("step")) {  // the steps of one add's provisioning, an import or a reseal
      text = std::string(steps_) + ": " + p.value("step", std::string()) + " (" + std::to_string(p.value("elapsed_ms", 0)) + " ms)";
    } else {  // a bulk add
      text = std::string(verb_) + " " + std::to_string(p.value("done", 0)) + "/" + std::to_string(p.value("total", 0));
    }
    // Pad over a longer previous line.
    const std::size_t width = std::max(text.size(), last_width_);
    last_width_ = text.size();
    std::cerr << "\r" << text << std::string(width - text.size(), ' ') << std::flush;
    drawn_ = true;
  }

 private:
  const char* verb_;
  const char* steps_;
  bool tty_;
  bool drawn_ = false;
  std::size_t last_width_ = 0;
};

int run_request(const Invocation& inv) {
  const ClientOptions options{inv.socket_path, inv.timeout};
  const char* steps = inv.method == "import" ? "importing" : inv.method == "reseal" ? "resealing" : "provisioning";
  ProgressLine progress("added", steps, inv.json);
  // Bulk adds, provisioning adds, imports and reseals report progress.
  const bool long_request = inv.method == "add" || inv.method == "import" || inv.method == "reseal";
  auto response = long_request ? call(options, inv.method, inv.params, std::ref(progress))
                               : call(options, inv.method, inv.params);
  progress.finish();
  if (!response) return fail(kTransportError, response.error().message);
  if (!response->ok) {
    const Error& error = response->error;
    return fail(kDaemonError, std::string(error_code_name(error.code)) + ": " + error.message);
  }
  if (inv.method == "eventlog" && !inv.json) {
    if (Status s = write_binary(inv.output_path, response->result, "event_log"); !s) return fail(kDaemonError, s.error().message);
    return kOk;
  }
  if (!inv.output_path.empty()) {
    if (Status s = write_binary(inv.output_path, response->result, "bundle"); !s) return fail(kDaemonError, s.error().message);
  }
  if (inv.json) {
    std::cout << format_json(response->result);
    return kOk;
  }
  auto text = format_human(inv.method, response->result);
  if (!text) return fail(kTransportError, inv.socket_path + ": malformed response: " + text.error().message);
  std::cout << *text;
  return kOk;
}

int run(int argc, char** argv) {
  const std::vector<std::string_view> args(argv + 1, argv + argc);
  auto inv = parse_command_line(args, std::getenv("VTPMD_SOCKET"), std::cin);
  if (!inv) return fail(kUsageError, inv.error().message);
  switch (inv->action) {
    case Invocation::Action::kHelp:
      std::cout << usage_text();
      return kOk;
    case Invocation::Action::kVersion:
      std::cout << "vtpmctl " << VTPMD_VERSION << "\n";
      return kOk;
    case Invocation::Action::kSignPolicy: {
      auto summary = sign_policy_file(inv->params);
      if (!summary) return fail(kDaemonError, summary.error().message);
      std::cout << *summary;
      return kOk;
    }
    case Invocation::Action::kRun:
      break;
  }
  const int code = run_request(*inv);
  std::cout.flush();
  if (!std::cout) return fail(kTransportError, "cannot write the output");
  return code;
}

}  // namespace
}  // namespace vtpm::ctl

int main(int argc, char** argv) {
  try {
    return vtpm::ctl::run(argc, argv);
  } catch (const std::exception& e) {
    // Only reachable on a result shaped unlike the protocol says (a JSON
    // type error) or out of memory.
    std::cerr << "vtpmctl: " << e.what() << "\n";
    return 3;
  }
}
