#include "src/daemon/privileges.h"

#include <dirent.h>
#include <grp.h>
#include <pwd.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <memory>

namespace vtpm {
namespace {

Error failed(const std::string& what) { return make_error(ErrorCode::kIo, what + ": " + std::strerror(errno)); }

Status hand_over(const std::string& dir, uid_t uid, gid_t gid) {
  if (::mkdir(dir.c_str(), 0700) != 0 && errno != EEXIST) return failed("cannot create " + dir);
  if (::lchown(dir.c_str(), uid, gid) != 0) return failed("cannot give " + dir + " to uid " + std::to_string(uid));
  std::unique_ptr<DIR, int (*)(DIR*)> listing(::opendir(dir.c_str()), ::closedir);
  if (!listing) return failed("cannot list " + dir);
  while (dirent* entry = ::readdir(listing.get())) {
    const std::string path = dir + "/" + entry->d_name;
    struct stat st {};
    // Regular files only, never through a symlink: nothing outside moves.
    if (::lstat(path.c_str(), &st) != 0 || !S_ISREG(st.st_mode)) continue;
    if (::lchown(path.c_str(), uid, gid) != 0) return failed("cannot give " + path + " to uid " + std::to_string(uid));
  }
  return Status::success();
}

}  // namespace

Status apply_dump_policy(bool allow) {
  if (::prctl(PR_SET_DUMPABLE, allow ? 1 : 0) != 0) return failed("PR_SET_DUMPABLE");
  return Status::success();
}

Status become_user(const std::string& user, const std::vector<std::string>& directories, bool dumpable) {
  if (::geteuid() != 0) {
    return make_error(ErrorCode::kInvalidArgument, "--user needs vtpmd to start as root (it runs as uid " +
                                                       std::to_string(::geteuid()) + ")");
  }
  errno = 0;
  const passwd* pw = ::getpwnam(user.c_str());
  if (pw == nullptr) return make_error(ErrorCode::kInvalidArgument, "--user: no user '" + user + "'");
  const uid_t uid = pw->pw_uid;
  const gid_t gid = pw->pw_gid;
  if (uid == 0) return make_error(ErrorCode::kInvalidArgument, "--user: '" + user + "' is root");
  for (const auto& dir : directories) {
    if (Status s = hand_over(dir, uid, gid); !s) return s;
  }
  if (::initgroups(user.c_str(), gid) != 0) return failed("initgroups");
  if (::setresgid(gid, gid, gid) != 0) return failed("setresgid");
  if (::setresuid(uid, uid, uid) != 0) return failed("setresuid");
  if (::prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0) return failed("PR_SET_NO_NEW_PRIVS");
  // The uid change reset dumpability to the system's suid_dumpable.
  if (Status s = apply_dump_policy(dumpable); !s) return s;
  if (::setuid(0) == 0) return make_error(ErrorCode::kInternal, "could regain root after dropping it");
  return Status::success();
}

}  // namespace vtpm
