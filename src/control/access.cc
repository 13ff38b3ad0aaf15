#include "src/control/access.h"

#include <grp.h>
#include <pwd.h>

#include <array>
#include <string>

namespace vtpm::control {
namespace {

Error invalid(const std::string& message) { return make_error(ErrorCode::kInvalidArgument, message); }

Result<unsigned> parse_id(std::string_view text, std::string_view item) {
  if (text.empty() || text.size() > 9 || text.find_first_not_of("0123456789") != std::string_view::npos) {
    return invalid("control access: bad number in '" + std::string(item) + "'");
  }
  return static_cast<unsigned>(std::stoul(std::string(text)));
}

Result<Principal> parse_principal(std::string_view item) {
  const auto colon = item.find(':');
  const std::string_view kind = item.substr(0, colon);
  const std::string name(colon == std::string_view::npos ? "" : item.substr(colon + 1));
  if (kind == "uid" || kind == "gid") {
    auto id = parse_id(name, item);
    if (!id) return id.error();
    return Principal{kind == "uid" ? Principal::Kind::kUid : Principal::Kind::kGid, *id};
  }
  if (kind == "user") {
    const passwd* pw = ::getpwnam(name.c_str());
    if (pw == nullptr) return invalid("control access: no user '" + name + "'");
    return Principal{Principal::Kind::kUid, pw->pw_uid};
  }
  if (kind == "group") {
    const group* gr = ::getgrnam(name.c_str());
    if (gr == nullptr) return invalid("control access: no group '" + name + "'");
    return Principal{Principal::Kind::kGid, gr->gr_gid};
  }
  return invalid("control access: '" + std::string(item) + "' is not uid:N, gid:N, user:NAME or group:NAME");
}

Result<std::vector<Principal>> parse_list(std::string_view text) {
  std::vector<Principal> out;
  while (!text.empty()) {
    const auto comma = text.find(',');
    std::string_view item = text.substr(0, comma);
    while (!item.empty() && item.front() == ' ') item.remove_prefix(1);
    while (!item.empty() && item.back() == ' ') item.remove_suffix(1);
    if (!item.empty()) {
      auto p = parse_principal(item);
      if (!p) return p.error();
      out.push_back(*p);
    }
    if (comma == std::string_view::npos) break;
    text.remove_prefix(comma + 1);
  }
  return out;
}

// The user's groups from the group database (SO_PEERCRED gives only the
// primary gid).
std::vector<gid_t> groups_of(uid_t uid, gid_t primary) {
  const passwd* pw = ::getpwuid(uid);
  if (pw == nullptr) return {primary};
  int n = 64;
  std::vector<gid_t> groups(static_cast<std::size_t>(n));
  if (::getgrouplist(pw->pw_name, primary, groups.data(), &n) < 0) {
    groups.resize(static_cast<std::size_t>(n));
    if (::getgrouplist(pw->pw_name, primary, groups.data(), &n) < 0) return {primary};
  }
  groups.resize(static_cast<std::size_t>(n));
  return groups;
}

}  // namespace

Result<AccessPolicy> AccessPolicy::parse(std::string_view admins, std::string_view readers, uid_t own_uid) {
  AccessPolicy policy;
  auto a = parse_list(admins);
  if (!a) return a.error();
  auto r = parse_list(readers);
  if (!r) return r.error();
  policy.admins_ = std::move(*a);
  policy.readers_ = std::move(*r);
  policy.own_uid_ = own_uid;
  return policy;
}

bool AccessPolicy::matches(const std::vector<Principal>& list, uid_t uid, gid_t gid) const {
  bool needs_groups = false;
  for (const auto& p : list) {
    if (p.kind == Principal::Kind::kUid && p.id == uid) return true;
    if (p.kind == Principal::Kind::kGid) needs_groups = true;
  }
  if (!needs_groups) return false;
  const std::vector<gid_t> groups = groups_of(uid, gid);
  for (const auto& p : list) {
    if (p.kind != Principal::Kind::kGid) continue;
    for (gid_t g : groups) {
      if (g == p.id) return true;
    }
  }
  return false;
}

Access AccessPolicy::classify(uid_t uid, gid_t gid) const {
  if (uid == 0 || uid == own_uid_ || matches(admins_, uid, gid)) return Access::kAdmin;
  if (matches(readers_, uid, gid)) return Access::kReadOnly;
  return Access::kNone;
}

bool is_read_only_method(std::string_view method) {
  static constexpr std::array<std::string_view, 7> kReadOnly = {"hello", "status", "list", "show", "ca-cert",
                                                                "stats", "metrics"};
  for (auto m : kReadOnly) {
    if (m == method) return true;
  }
  return false;
}

const char* access_name(Access access) {
  switch (access) {
    case Access::kAdmin: return "admin";
    case Access::kReadOnly: return "read-only";
    case Access::kNone: return "none";
  }
  return "none";
}

}  // namespace vtpm::control
