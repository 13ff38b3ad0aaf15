#include "src/control/access.h"

#include <doctest/doctest.h>

#include <string>

namespace vtpm::control {

TEST_CASE("access: root and the daemon's own user are admins, others are refused by default") {
  auto policy = AccessPolicy::parse("", "", 4242);
  REQUIRE(policy.ok());
  CHECK(policy->classify(0, 0) == Access::kAdmin);
  CHECK(policy->classify(4242, 100) == Access::kAdmin);
  CHECK(policy->classify(1000, 1000) == Access::kNone);
  CHECK_FALSE(policy->admits_others());
}

TEST_CASE("access: uid and gid principals, admins before readers") {
  auto policy = AccessPolicy::parse("uid:1000, gid:2000", "uid:1001,uid:1000", 0);
  REQUIRE(policy.ok());
  CHECK(policy->admits_others());
  CHECK(policy->classify(1000, 1) == Access::kAdmin);
  CHECK(policy->classify(1001, 1) == Access::kReadOnly);
  CHECK(policy->classify(5555, 2000) == Access::kAdmin);  // primary group
  CHECK(policy->classify(5555, 5555) == Access::kNone);
}

TEST_CASE("access: user and group names resolve through the system databases") {
  auto policy = AccessPolicy::parse("user:root", "group:nogroup", 1);
  REQUIRE(policy.ok());
  CHECK(policy->classify(65534, 65534) == Access::kReadOnly);
}

TEST_CASE("access: malformed principals and unknown names fail with the item named") {
  for (const char* bad : {"uid:", "uid:x", "uid:-1", "name:bob", "bob", "user:no-such-user-vtpmd", "group:no-such-group-vtpmd"}) {
    CAPTURE(bad);
    auto policy = AccessPolicy::parse(bad, "", 0);
    REQUIRE_FALSE(policy.ok());
    CHECK(policy.error().code == ErrorCode::kInvalidArgument);
  }
}

TEST_CASE("access: read-only methods are exactly hello, status, list, show") {
  for (const char* m : {"hello", "status", "list", "show"}) CHECK(is_read_only_method(m));
  for (const char* m : {"add", "remove", "exec", "power", "cancel", "attach", "detach", "export", "import", ""}) {
    CHECK_FALSE(is_read_only_method(m));
  }
}

}  // namespace vtpm::control
