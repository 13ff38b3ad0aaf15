// vtpmd: one process hosting many virtual TPMs. See docs/ARCHITECTURE.md.
#include <sys/prctl.h>
#include <sys/resource.h>

#include <csignal>
#include <cstdio>
#include <string>
#include <vector>

#include "src/core/config.h"
#include "src/daemon/check_config.h"
#include "src/daemon/daemon.h"
#include "src/daemon/privileges.h"
#include "src/core/log.h"

int main(int argc, char** argv) {
  std::vector<std::string> args(argv, argv + argc);
  auto command_line = vtpm::parse_command_line(args);
  if (!command_line) {
    std::fprintf(stderr, "vtpmd: %s\n%s", command_line.error().message.c_str(), vtpm::usage_text());
    return 2;
  }
  if (command_line->help) {
    std::fputs(vtpm::usage_text(), stdout);
    return 0;
  }
  if (command_line->version) {
    std::printf("vtpmd %s\n", VTPMD_VERSION);
    return 0;
  }
  // Writes to vanished peers must fail with EPIPE, not kill the daemon.
  std::signal(SIGPIPE, SIG_IGN);
  // Every guest's TPM secrets (seeds, keys, NV) live in this process's
  // memory inside libtpms, where nothing can mark them: no cores unless the
  // operator asks (--allow-core-dumps). Our own keys stay out even then.
  if (vtpm::Status s = vtpm::apply_dump_policy(command_line->config.allow_core_dumps); !s) {
    std::fprintf(stderr, "vtpmd: %s\n", s.error().message.c_str());
    return 1;
  }
  // Every guest endpoint is a listening socket plus its connections: allow
  // as many open files as the hard limit permits (the soft default is 1024).
  if (rlimit files{}; getrlimit(RLIMIT_NOFILE, &files) == 0 && files.rlim_cur < files.rlim_max) {
    files.rlim_cur = files.rlim_max;
    setrlimit(RLIMIT_NOFILE, &files);
  }
  vtpm::Logger log(command_line->config.log_level, 2, command_line->config.log_format);
  log.set_instance_rate_limit(command_line->config.log_rate_limit, command_line->config.log_burst);
  if (command_line->check_config) return vtpm::check_config(command_line->config);
  vtpm::Daemon daemon(std::move(command_line->config), log);
  return daemon.run();
}
