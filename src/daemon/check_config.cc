#include "src/daemon/check_config.h"

#include <pwd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstdio>
#include <cstring>
#include <string>

#include "backends/hwtpm/channel.h"
#include "src/control/access.h"
#include "src/core/loopback_endpoint.h"
#include "src/daemon/root_of_trust_factory.h"

namespace vtpm {
namespace {

class Report {
 public:
  void ok(const std::string& what, const std::string& detail) { line("ok  ", what, detail); }
  void fail(const std::string& what, const std::string& detail) {
    ++failures_;
    line("FAIL", what, detail);
  }
  int failures() const { return failures_; }

 private:
  static void line(const char* mark, const std::string& what, const std::string& detail) {
    std::printf("%s  %-18s %s\n", mark, what.c_str(), detail.c_str());
  }
  int failures_ = 0;
};

std::string parent_of(const std::string& path) {
  const auto slash = path.rfind('/');
  if (slash == std::string::npos) return ".";
  return slash == 0 ? "/" : path.substr(0, slash);
}

bool is_directory(const std::string& path) {
  struct stat st {};
  return ::stat(path.c_str(), &st) == 0 && S_ISDIR(st.st_mode);
}

// A directory vtpmd would use or create (it creates one level).
void check_directory(Report& r, const std::string& what, const std::string& path, bool as_other_user) {
  if (is_directory(path)) {
    if (as_other_user || ::access(path.c_str(), R_OK | W_OK | X_OK) == 0) {
      r.ok(what, path + " (exists" + (as_other_user ? ", handed to --user at start" : ", writable") + ")");
    } else {
      r.fail(what, path + ": exists but is not readable and writable: " + std::strerror(errno));
    }
    return;
  }
  if (::access(path.c_str(), F_OK) == 0) return r.fail(what, path + ": exists and is not a directory");
  const std::string parent = parent_of(path);
  if (is_directory(parent) && ::access(parent.c_str(), W_OK | X_OK) == 0) {
    r.ok(what, path + " (will be created in " + parent + ")");
  } else {
    r.fail(what, path + ": does not exist and " + parent + " is not a writable directory");
  }
}

// A daemon answering on the control socket already: starting would fail.
bool socket_in_use(const std::string& path) {
  sockaddr_un address{};
  if (path.size() >= sizeof address.sun_path) return false;
  address.sun_family = AF_UNIX;
  std::memcpy(address.sun_path, path.data(), path.size());
  const int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return false;
  const bool live = ::connect(fd, reinterpret_cast<const sockaddr*>(&address), sizeof address) == 0;
  ::close(fd);
  return live;
}

void check_file_readable(Report& r, const std::string& what, const std::string& path) {
  if (::access(path.c_str(), R_OK) == 0) r.ok(what, path);
  else r.fail(what, path + ": " + std::strerror(errno));
}

void check_root_of_trust(Report& r, const Config& config) {
  auto spec = resolve_root_of_trust(config);
  if (!spec) return r.fail("root of trust", spec.error().message);
  const std::string shown = config.root_of_trust == "auto" ? *spec + " (auto)" : *spec;
  if (*spec == "file" || spec->starts_with("file:")) {
    std::string key = *spec == "file" ? config.root_key_file : spec->substr(5);
    if (key.empty()) key = config.state_dir + "/root.key";
    if (::access(key.c_str(), F_OK) == 0) {
      if (::access(key.c_str(), R_OK | W_OK) == 0) r.ok("root of trust", shown + ", key file " + key + " (NOT hardware-protected)");
      else r.fail("root of trust", "key file " + key + ": " + std::strerror(errno));
      return;
    }
    if (::access((config.state_dir + "/master.key").c_str(), F_OK) == 0) {
      return r.fail("root of trust", "key file " + key + " is missing, but " + config.state_dir +
                                          "/master.key exists: the state cannot be unsealed without it");
    }
    return r.ok("root of trust", shown + ", key file " + key + " (will be created; NOT hardware-protected)");
  }
  if (!hwtpm::is_tpm_channel_spec(*spec)) return r.fail("root of trust", "'" + *spec + "' is not a TPM channel");
  if (spec->starts_with("tis:") || spec->starts_with("crb:")) {
    // MMIO drivers touch the hardware's registers as they open: only the
    // access they need is checked.
    if (::access("/dev/mem", R_OK | W_OK) == 0) r.ok("root of trust", shown + " (/dev/mem accessible)");
    else r.fail("root of trust", shown + ": /dev/mem: " + std::strerror(errno));
    return;
  }
  ::setenv("TSS2_LOG", "all+none", 0);  // the error below says what matters
  auto channel = hwtpm::open_tpm_channel(*spec);
  if (!channel) return r.fail("root of trust", shown + ": " + channel.error().message);
  r.ok("root of trust", shown + " (channel opens; PCRs " + config.tpm_pcrs + ")");
  if (!config.tpm_policy_key.empty()) check_file_readable(r, "policy key", config.tpm_policy_key);
  if (!config.tpm_signed_policies.empty()) {
    if (is_directory(config.tpm_signed_policies)) r.ok("signed policies", config.tpm_signed_policies);
    else r.fail("signed policies", config.tpm_signed_policies + ": not a directory");
  }
}

}  // namespace

int check_config(const Config& config) {
  Report r;
  const bool other_user = !config.user.empty() && ::geteuid() == 0;
  if (!config.user.empty()) {
    if (::getpwnam(config.user.c_str()) != nullptr) r.ok("user", config.user);
    else r.fail("user", "no user '" + config.user + "'");
  }
  check_directory(r, "state directory", config.state_dir, other_user);
  check_root_of_trust(r, config);
  check_directory(r, "socket directory", parent_of(config.control_socket), other_user);
  if (socket_in_use(config.control_socket)) {
    r.fail("control socket", config.control_socket + ": another vtpmd is listening there");
  } else {
    r.ok("control socket", config.control_socket);
  }
  if (auto policy = control::AccessPolicy::parse(config.control_admins, config.control_readers, ::geteuid()); policy) {
    r.ok("control access", "admins: root, vtpmd's user" +
                               (config.control_admins.empty() ? std::string() : ", " + config.control_admins) +
                               "; readers: " + (config.control_readers.empty() ? "none" : config.control_readers));
  } else {
    r.fail("control access", policy.error().message);
  }
  if (config.metrics_listen.empty()) {
    r.ok("metrics", "off");
  } else if (auto endpoint = parse_loopback_endpoint(config.metrics_listen); endpoint) {
    r.ok("metrics", "http://" + config.metrics_listen + "/metrics");
  } else {
    r.fail("metrics", endpoint.error().message);
  }
  std::string worker = config.engine_worker;
  if (worker.empty()) {
    char self[4096];
    const ssize_t n = ::readlink("/proc/self/exe", self, sizeof self - 1);
    const std::string beside = n > 0 ? parent_of(std::string(self, static_cast<std::size_t>(n))) + "/vtpmd-engine" : "";
    worker = !beside.empty() && ::access(beside.c_str(), X_OK) == 0 ? beside : std::string(VTPMD_LIBEXECDIR) + "/vtpmd-engine";
  }
  if (::access(worker.c_str(), X_OK) == 0) r.ok("engine worker", worker);
  else r.fail("engine worker", worker + ": " + std::strerror(errno));
  r.ok("logging", std::string(config.log_format == LogFormat::kJson ? "json" : "human") + ", level " +
                      log_level_name(config.log_level) + ", " +
                      (config.log_rate_limit == 0 ? std::string("no per-instance limit")
                                                  : std::to_string(config.log_rate_limit) + " lines/s per instance (burst " +
                                                        std::to_string(config.log_burst) + ")"));
  std::printf("%s\n", r.failures() == 0 ? "configuration OK" :
              (std::to_string(r.failures()) + " problem(s): vtpmd would not start").c_str());
  return r.failures() == 0 ? 0 : 1;
}

}  // namespace vtpm
