#include "src/control/params.h"

#include <doctest/doctest.h>

#include <limits>
#include <string>

namespace vtpm::control {
namespace {

bool contains(const std::string& haystack, const std::string& needle) {
  return haystack.find(needle) != std::string::npos;
}

constexpr const char* kUuidText = "6f1c2d3e-4a5b-4c6d-8e7f-0123456789ab";

}  // namespace

// --- only_params ------------------------------------------------------------

TEST_CASE("params: only_params accepts allowed and absent parameters") {
  CHECK(only_params(Json::object(), {"uuid", "force"}).ok());
  CHECK(only_params(Json{{"uuid", "x"}}, {"uuid", "force"}).ok());
  CHECK(only_params(Json{{"uuid", "x"}, {"force", true}}, {"uuid", "force"}).ok());
}

TEST_CASE("params: only_params rejects an unknown parameter and names it") {
  const Status s = only_params(Json{{"uuid", "x"}, {"forse", true}}, {"uuid", "force"});
  REQUIRE_FALSE(s.ok());
  CHECK(s.error().code == ErrorCode::kInvalidArgument);
  CHECK(contains(s.error().message, "unknown parameter 'forse'"));
}

TEST_CASE("params: only_params with nothing allowed rejects any parameter") {
  CHECK(only_params(Json::object(), {}).ok());
  CHECK_FALSE(only_params(Json{{"a", 1}}, {}).ok());
}

TEST_CASE("params: only_params is case-sensitive") {
  CHECK_FALSE(only_params(Json{{"UUID", "x"}}, {"uuid"}).ok());
}

// --- uuid_param -------------------------------------------------------------

TEST_CASE("params: uuid_param parses the default 'uuid' parameter") {
  auto id = uuid_param(Json{{"uuid", kUuidText}});
  REQUIRE(id.ok());
  CHECK(id->to_string() == kUuidText);
}

TEST_CASE("params: uuid_param reads a named parameter") {
  auto id = uuid_param(Json{{"target", kUuidText}}, "target");
  REQUIRE(id.ok());
  CHECK(id->to_string() == kUuidText);
}

TEST_CASE("params: uuid_param reports a missing parameter by name") {
  auto id = uuid_param(Json::object(), "target");
  REQUIRE_FALSE(id.ok());
  CHECK(id.error().code == ErrorCode::kInvalidArgument);
  CHECK(contains(id.error().message, "missing parameter 'target'"));
}

TEST_CASE("params: uuid_param rejects a non-string value") {
  for (const Json& value : {Json(5), Json(true), Json(), Json::array(), Json::object()}) {
    CAPTURE(value.dump());
    auto id = uuid_param(Json{{"uuid", value}});
    REQUIRE_FALSE(id.ok());
    CHECK(contains(id.error().message, "parameter 'uuid' must be a string"));
  }
}

TEST_CASE("params: uuid_param rejects malformed and nil UUID text") {
  for (const std::string text : {"", "nope", "{6f1c2d3e-4a5b-4c6d-8e7f-0123456789ab}", "00000000-0000-0000-0000-000000000000"}) {
    CAPTURE(text);
    auto id = uuid_param(Json{{"uuid", text}});
    REQUIRE_FALSE(id.ok());
    CHECK(id.error().code == ErrorCode::kInvalidArgument);
    CHECK(contains(id.error().message, "invalid UUID"));
  }
}

// --- string_param -----------------------------------------------------------

TEST_CASE("params: string_param returns the value, or nothing when absent or null") {
  auto present = string_param(Json{{"tpm", "1.2"}}, "tpm");
  REQUIRE(present.ok());
  CHECK(*present == std::optional<std::string>("1.2"));
  auto absent = string_param(Json::object(), "tpm");
  REQUIRE(absent.ok());
  CHECK_FALSE(absent->has_value());
  auto null = string_param(Json{{"tpm", nullptr}}, "tpm");
  REQUIRE(null.ok());
  CHECK_FALSE(null->has_value());
}

TEST_CASE("params: string_param rejects a non-string value") {
  auto bad = string_param(Json{{"tpm", 2}}, "tpm");
  REQUIRE_FALSE(bad.ok());
  CHECK(contains(bad.error().message, "parameter 'tpm' must be a string"));
}

// --- bool_param -------------------------------------------------------------

TEST_CASE("params: bool_param returns true and false") {
  auto yes = bool_param(Json{{"force", true}}, "force");
  REQUIRE(yes.ok());
  CHECK(*yes == std::optional<bool>(true));
  auto no = bool_param(Json{{"force", false}}, "force");
  REQUIRE(no.ok());
  CHECK(*no == std::optional<bool>(false));
}

TEST_CASE("params: bool_param is empty when absent or null") {
  auto absent = bool_param(Json::object(), "force");
  REQUIRE(absent.ok());
  CHECK_FALSE(absent->has_value());
  auto null = bool_param(Json{{"force", nullptr}}, "force");
  REQUIRE(null.ok());
  CHECK_FALSE(null->has_value());
}

TEST_CASE("params: bool_param rejects numbers, strings and containers") {
  for (const Json& value : {Json(1), Json(0), Json("true"), Json("false"), Json(1.0), Json::array(), Json::object()}) {
    CAPTURE(value.dump());
    auto b = bool_param(Json{{"force", value}}, "force");
    REQUIRE_FALSE(b.ok());
    CHECK(b.error().code == ErrorCode::kInvalidArgument);
    CHECK(contains(b.error().message, "parameter 'force' must be true or false"));
  }
}

// --- int_param --------------------------------------------------------------

TEST_CASE("params: int_param returns values inside the range, limits included") {
  for (std::int64_t v : {0, 2, 4}) {
    auto n = int_param(Json{{"locality", v}}, "locality", 0, 4);
    REQUIRE(n.ok());
    CHECK(*n == std::optional<std::int64_t>(v));
  }
}

TEST_CASE("params: int_param is empty when absent or null") {
  auto absent = int_param(Json::object(), "locality", 0, 4);
  REQUIRE(absent.ok());
  CHECK_FALSE(absent->has_value());
  auto null = int_param(Json{{"locality", nullptr}}, "locality", 0, 4);
  REQUIRE(null.ok());
  CHECK_FALSE(null->has_value());
}

TEST_CASE("params: int_param rejects values outside the range and states it") {
  for (std::int64_t v : {std::int64_t{-1}, std::int64_t{5}, std::numeric_limits<std::int64_t>::min(),
                         std::numeric_limits<std::int64_t>::max()}) {
    CAPTURE(v);
    auto n = int_param(Json{{"locality", v}}, "locality", 0, 4);
    REQUIRE_FALSE(n.ok());
    CHECK(n.error().code == ErrorCode::kInvalidArgument);
    CHECK(contains(n.error().message, "parameter 'locality' must be in 0..4"));
  }
}

TEST_CASE("params: int_param rejects unsigned values above the int64 range") {
  for (std::uint64_t v : {std::uint64_t{1} << 63, std::numeric_limits<std::uint64_t>::max()}) {
    CAPTURE(v);
    auto n = int_param(Json{{"locality", v}}, "locality", 0, 4);
    CHECK_FALSE(n.ok());
  }
}

TEST_CASE("params: int_param does not wrap huge unsigned values into a negative range") {
  // 2^64-1 must not be read as -1.
  const Json params = Json::parse(R"({"offset":18446744073709551615})");
  auto n = int_param(params, "offset", -10, 10);
  CHECK_FALSE(n.ok());
}

TEST_CASE("params: int_param rejects non-integers") {
  for (const Json& value : {Json(1.5), Json(2.0), Json("3"), Json(true), Json::array(), Json::object()}) {
    CAPTURE(value.dump());
    auto n = int_param(Json{{"max_command_size", value}}, "max_command_size", 1024, 65536);
    REQUIRE_FALSE(n.ok());
    CHECK(contains(n.error().message, "parameter 'max_command_size' must be an integer"));
  }
}

}  // namespace vtpm::control
