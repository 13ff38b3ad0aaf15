// Who may use the control socket, decided per connection from the peer's
// kernel-reported credentials (SO_PEERCRED), never from anything it sends.
//
//   admin      every method
//   read-only  hello, status, list, show
//   none       refused at connect
//
// root and the daemon's own user are always admins. Others are listed in
// the config as comma-separated principals: "uid:N", "gid:N",
// "user:NAME", "group:NAME" (a group matches the primary group or any
// group the user is a member of in the group database).
#pragma once

#include <sys/types.h>

#include <string>
#include <string_view>
#include <vector>

#include "proto/result.h"

namespace vtpm::control {

enum class Access { kNone, kReadOnly, kAdmin };

struct Principal {
  enum class Kind { kUid, kGid } kind;
  unsigned id;
};

class AccessPolicy {
 public:
  // Names are resolved now (start-up), so a typo fails the start.
  static Result<AccessPolicy> parse(std::string_view admins, std::string_view readers, uid_t own_uid);
  Access classify(uid_t uid, gid_t gid) const;
  // True if anyone but root and the daemon's user may connect: the socket
  // must then be reachable by them (SO_PEERCRED does the gatekeeping).
  bool admits_others() const { return !admins_.empty() || !readers_.empty(); }

 private:
  bool matches(const std::vector<Principal>& list, uid_t uid, gid_t gid) const;
  std::vector<Principal> admins_;
  std::vector<Principal> readers_;
  uid_t own_uid_ = 0;
};

bool is_read_only_method(std::string_view method);
const char* access_name(Access access);

}  // namespace vtpm::control
