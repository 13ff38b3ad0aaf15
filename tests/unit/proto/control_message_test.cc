#include "proto/control_message.h"

#include <doctest/doctest.h>

#include <string>

namespace vtpm::control {
namespace {

bool contains(const std::string& haystack, const std::string& needle) {
  return haystack.find(needle) != std::string::npos;
}

// Parses `line` expecting failure; returns the error and stores the echoed id.
Error parse_failure(std::string_view line, Json* id) {
  auto request = parse_request(line, id);
  REQUIRE_FALSE(request.ok());
  return request.error();
}

// Parses a line produced by encode_* back into JSON, checking the framing.
Json decode_line(const std::string& line) {
  REQUIRE(!line.empty());
  CHECK(line.back() == '\n');
  CHECK(line.find('\n') == line.size() - 1);
  Json doc = Json::parse(line, nullptr, false);
  REQUIRE_FALSE(doc.is_discarded());
  return doc;
}

// Feeds `splitter` and collects every complete line until it wants more.
std::vector<std::string> drain(LineSplitter& splitter) {
  std::vector<std::string> lines;
  for (;;) {
    auto next = splitter.next();
    REQUIRE(next.ok());
    if (!next->has_value()) return lines;
    lines.push_back(**next);
  }
}

}  // namespace

// --- parse_request --------------------------------------------------------

TEST_CASE("control_message: parse_request reads a full request") {
  Json id;
  auto request = parse_request(R"({"v":1,"id":7,"method":"show","params":{"uuid":"x"}})", &id);
  REQUIRE(request.ok());
  CHECK(request->id == Json(7));
  CHECK(id == Json(7));
  CHECK(request->method == "show");
  CHECK(request->params == Json{{"uuid", "x"}});
}

TEST_CASE("control_message: progress requests and progress lines") {
  Json id;
  auto plain = parse_request(R"({"id":1,"method":"add"})", &id);
  REQUIRE(plain.ok());
  CHECK_FALSE(plain->progress);
  auto asked = parse_request(R"({"id":1,"method":"add","progress":true})", &id);
  REQUIRE(asked.ok());
  CHECK(asked->progress);
  auto bad = parse_request(R"({"id":1,"method":"add","progress":"yes"})", &id);
  REQUIRE_FALSE(bad.ok());
  CHECK(bad.error().message == "field 'progress' must be a boolean");
  const std::string line = encode_request(Json(3), "add", Json{{"count", 2}}, true);
  auto back = parse_request(line.substr(0, line.size() - 1), &id);
  REQUIRE(back.ok());
  CHECK(back->progress);
  const std::string note = encode_progress(Json(3), Json{{"done", 1}, {"total", 2}});
  CHECK(note == "{\"id\":3,\"progress\":{\"done\":1,\"total\":2},\"v\":1}\n");
  auto parsed = parse_response(note.substr(0, note.size() - 1));
  REQUIRE(parsed.ok());
  CHECK(parsed->is_progress);
  CHECK_FALSE(parsed->ok);
  CHECK(parsed->result == Json{{"done", 1}, {"total", 2}});
  auto reply = parse_response(encode_result(Json(3), Json{{"added", Json::array()}}));
  REQUIRE(reply.ok());
  CHECK_FALSE(reply->is_progress);
  CHECK(reply->ok);
}

TEST_CASE("control_message: parse_request defaults v, id and params") {
  Json id;
  auto request = parse_request(R"({"method":"list"})", &id);
  REQUIRE(request.ok());
  CHECK(request->id.is_null());
  CHECK(id.is_null());
  CHECK(request->method == "list");
  CHECK(request->params.is_object());
  CHECK(request->params.empty());
}

TEST_CASE("control_message: parse_request accepts string and null ids and null params") {
  Json id;
  auto with_string = parse_request(R"({"id":"abc","method":"hello","params":null})", &id);
  REQUIRE(with_string.ok());
  CHECK(with_string->id == Json("abc"));
  CHECK(with_string->params == Json::object());

  Json null_id;
  auto with_null = parse_request(R"({"id":null,"method":"hello"})", &null_id);
  REQUIRE(with_null.ok());
  CHECK(with_null->id.is_null());
}

TEST_CASE("control_message: parse_request accepts negative and large integer ids") {
  Json id;
  auto negative = parse_request(R"({"id":-5,"method":"hello"})", &id);
  REQUIRE(negative.ok());
  CHECK(negative->id == Json(-5));
  Json big_id;
  auto big = parse_request(R"({"id":18446744073709551615,"method":"hello"})", &big_id);
  REQUIRE(big.ok());
  CHECK(big->id.dump() == "18446744073709551615");
}

TEST_CASE("control_message: parse_request tolerates surrounding whitespace") {
  Json id;
  auto request = parse_request("  {\"method\":\"hello\"}  \r", &id);
  REQUIRE(request.ok());
  CHECK(request->method == "hello");
}

TEST_CASE("control_message: parse_request rejects a missing method") {
  Json id;
  const Error e = parse_failure(R"({"v":1,"id":3,"params":{}})", &id);
  CHECK(e.code == ErrorCode::kInvalidArgument);
  CHECK(contains(e.message, "'method'"));
  CHECK(id == Json(3));
}

TEST_CASE("control_message: parse_request rejects an empty method") {
  Json id;
  const Error e = parse_failure(R"({"id":3,"method":""})", &id);
  CHECK(contains(e.message, "'method' must be a non-empty string"));
}

TEST_CASE("control_message: parse_request rejects a method that is not a string") {
  for (const std::string line : {R"({"id":4,"method":5})", R"({"id":4,"method":null})", R"({"id":4,"method":["show"]})",
                           R"({"id":4,"method":{"name":"show"}})", R"({"id":4,"method":true})"}) {
    CAPTURE(line);
    Json id;
    const Error e = parse_failure(line, &id);
    CHECK(e.code == ErrorCode::kInvalidArgument);
    CHECK(contains(e.message, "'method'"));
    CHECK(id == Json(4));
  }
}

TEST_CASE("control_message: parse_request rejects an id of the wrong type") {
  for (const std::string line : {R"({"id":1.5,"method":"hello"})", R"({"id":true,"method":"hello"})",
                           R"({"id":[1],"method":"hello"})", R"({"id":{"n":1},"method":"hello"})"}) {
    CAPTURE(line);
    Json id;
    const Error e = parse_failure(line, &id);
    CHECK(e.code == ErrorCode::kInvalidArgument);
    CHECK(contains(e.message, "'id'"));
    CHECK(id.is_null());  // an unreadable id is answered with null
  }
}

TEST_CASE("control_message: parse_request rejects params of the wrong type") {
  for (const std::string line : {R"({"id":"p","method":"show","params":[]})", R"({"id":"p","method":"show","params":"x"})",
                           R"({"id":"p","method":"show","params":1})", R"({"id":"p","method":"show","params":false})"}) {
    CAPTURE(line);
    Json id;
    const Error e = parse_failure(line, &id);
    CHECK(e.code == ErrorCode::kInvalidArgument);
    CHECK(contains(e.message, "'params' must be an object"));
    CHECK(id == Json("p"));
  }
}

TEST_CASE("control_message: parse_request rejects other protocol versions as unsupported") {
  for (const std::string line : {R"({"v":2,"id":9,"method":"hello"})", R"({"v":0,"id":9,"method":"hello"})",
                           R"({"v":-1,"id":9,"method":"hello"})"}) {
    CAPTURE(line);
    Json id;
    const Error e = parse_failure(line, &id);
    CHECK(e.code == ErrorCode::kUnsupported);
    CHECK(contains(e.message, "protocol version"));
    CHECK(id == Json(9));
  }
}

TEST_CASE("control_message: parse_request rejects a v that is not an integer") {
  for (const std::string line : {R"({"v":"1","id":9,"method":"hello"})", R"({"v":1.0,"id":9,"method":"hello"})",
                           R"({"v":null,"id":9,"method":"hello"})"}) {
    CAPTURE(line);
    Json id;
    const Error e = parse_failure(line, &id);
    CHECK(e.code == ErrorCode::kInvalidArgument);
    CHECK(contains(e.message, "'v'"));
    CHECK(id == Json(9));
  }
}

TEST_CASE("control_message: parse_request rejects JSON that is not an object") {
  for (const std::string line : {"[]", "[1,2]", "\"show\"", "7", "null", "true"}) {
    CAPTURE(line);
    Json id;
    const Error e = parse_failure(line, &id);
    CHECK(e.code == ErrorCode::kInvalidArgument);
    CHECK(contains(e.message, "must be a JSON object"));
    CHECK(id.is_null());
  }
}

TEST_CASE("control_message: parse_request rejects invalid JSON") {
  for (std::string_view line : {std::string_view(""), std::string_view("{"), std::string_view("{\"id\":1,"),
                                std::string_view("{'id':1}"), std::string_view("{\"method\":\"a\"} {}"),
                                std::string_view("\xff\xfe"), std::string_view("{\"method\":\"a\0\"}", 15)}) {
    CAPTURE(std::string(line));
    Json id;
    const Error e = parse_failure(line, &id);
    CHECK(e.code == ErrorCode::kInvalidArgument);
    CHECK(contains(e.message, "not valid JSON"));
    CHECK(id.is_null());
  }
}

// --- encode_* ---------------------------------------------------------------

TEST_CASE("control_message: encode_result has v, id and result") {
  const Json doc = decode_line(encode_result(7, Json{{"n", 1}}));
  CHECK(doc == Json{{"v", 1}, {"id", 7}, {"result", {{"n", 1}}}});
  CHECK_FALSE(doc.contains("error"));
}

TEST_CASE("control_message: encode_error has v, id and a named code with the message") {
  const Json doc = decode_line(encode_error("req-1", make_error(ErrorCode::kNotFound, "no instance x")));
  CHECK(doc == Json{{"v", 1}, {"id", "req-1"}, {"error", {{"code", "not_found"}, {"message", "no instance x"}}}});
  CHECK_FALSE(doc.contains("result"));
}

TEST_CASE("control_message: encode_error keeps a null id") {
  const Json doc = decode_line(encode_error(Json(), make_error(ErrorCode::kInvalidArgument, "bad")));
  REQUIRE(doc.contains("id"));
  CHECK(doc["id"].is_null());
}

TEST_CASE("control_message: encoders survive invalid UTF-8 in messages") {
  const std::string line = encode_error(1, make_error(ErrorCode::kIo, std::string("bad \xff byte")));
  const Json doc = decode_line(line);
  CHECK(doc["error"]["code"] == "io_error");
}

TEST_CASE("control_message: encode_request round-trips through parse_request") {
  const std::string line = encode_request(42, "add", Json{{"tpm", "1.2"}});
  CHECK(line.back() == '\n');
  Json id;
  auto request = parse_request(std::string_view(line).substr(0, line.size() - 1), &id);
  REQUIRE(request.ok());
  CHECK(request->id == Json(42));
  CHECK(request->method == "add");
  CHECK(request->params == Json{{"tpm", "1.2"}});
}

// --- parse_response / error codes -----------------------------------------

TEST_CASE("control_message: parse_response reads a result") {
  auto response = parse_response(encode_result(5, Json{{"ok", true}}));
  REQUIRE(response.ok());
  CHECK(response->ok);
  CHECK(response->id == Json(5));
  CHECK(response->result == Json{{"ok", true}});
}

TEST_CASE("control_message: parse_response reads an error") {
  auto response = parse_response(encode_error("x", make_error(ErrorCode::kBusy, "in flight")));
  REQUIRE(response.ok());
  CHECK_FALSE(response->ok);
  CHECK(response->id == Json("x"));
  CHECK(response->error.code == ErrorCode::kBusy);
  CHECK(response->error.message == "in flight");
}

TEST_CASE("control_message: parse_response maps an unknown or mistyped error code to internal") {
  auto unknown = parse_response(R"({"v":1,"id":1,"error":{"code":"weird","message":"m"}})");
  REQUIRE(unknown.ok());
  CHECK(unknown->error.code == ErrorCode::kInternal);
  auto mistyped = parse_response(R"({"v":1,"id":1,"error":{"code":3,"message":4}})");
  REQUIRE(mistyped.ok());
  CHECK(mistyped->error.code == ErrorCode::kInternal);
  CHECK(mistyped->error.message.empty());
}

TEST_CASE("control_message: parse_response rejects garbage") {
  for (std::string_view line : {std::string_view(""), std::string_view("nope"), std::string_view("[1]"),
                                std::string_view("{\"v\":1,\"id\":1}"), std::string_view("{\"error\":\"x\"}"),
                                std::string_view("{\"result\":1")}) {
    CAPTURE(std::string(line));
    auto response = parse_response(line);
    REQUIRE_FALSE(response.ok());
    CHECK(response.error().code == ErrorCode::kCorrupt);
    CHECK_FALSE(response.error().message.empty());
  }
}

TEST_CASE("control_message: every error code name maps back to its code") {
  for (int i = 0; i <= static_cast<int>(ErrorCode::kInternal); ++i) {
    const auto code = static_cast<ErrorCode>(i);
    CAPTURE(std::string(error_code_name(code)));
    CHECK(error_code_from_name(error_code_name(code)) == code);
  }
  CHECK(error_code_from_name("") == ErrorCode::kInternal);
  CHECK(error_code_from_name("NOT_FOUND") == ErrorCode::kInternal);
}

// --- LineSplitter ---------------------------------------------------------

TEST_CASE("control_message: LineSplitter waits for a newline") {
  LineSplitter splitter;
  splitter.append("{\"method\"");
  CHECK(drain(splitter).empty());
  splitter.append(":\"hello\"}");
  CHECK(drain(splitter).empty());
  splitter.append("\n");
  CHECK(drain(splitter) == std::vector<std::string>{"{\"method\":\"hello\"}"});
}

TEST_CASE("control_message: LineSplitter joins a line split byte by byte") {
  LineSplitter splitter;
  const std::string text = "abc\ndef\n";
  std::vector<std::string> lines;
  for (char c : text) {
    splitter.append(std::string_view(&c, 1));
    for (auto& line : drain(splitter)) lines.push_back(line);
  }
  CHECK(lines == std::vector<std::string>{"abc", "def"});
}

TEST_CASE("control_message: LineSplitter yields several lines from one append") {
  LineSplitter splitter;
  splitter.append("one\ntwo\n\nthree\nfour");
  CHECK(drain(splitter) == std::vector<std::string>{"one", "two", "", "three"});
  splitter.append("\n");
  CHECK(drain(splitter) == std::vector<std::string>{"four"});
}

TEST_CASE("control_message: LineSplitter strips CR before LF, including across appends") {
  LineSplitter splitter;
  splitter.append("a\r\nb\r");
  CHECK(drain(splitter) == std::vector<std::string>{"a"});
  splitter.append("\nc\rd\n");
  CHECK(drain(splitter) == std::vector<std::string>{"b", "c\rd"});
}

TEST_CASE("control_message: LineSplitter accepts a line exactly at the limit") {
  LineSplitter splitter(8);
  splitter.append(std::string(8, 'x'));
  CHECK(drain(splitter).empty());
  splitter.append("\n");
  CHECK(drain(splitter) == std::vector<std::string>{std::string(8, 'x')});
}

TEST_CASE("control_message: LineSplitter fails on an oversized line without a newline") {
  LineSplitter splitter(8);
  splitter.append(std::string(9, 'x'));
  auto next = splitter.next();
  REQUIRE_FALSE(next.ok());
  CHECK(next.error().code == ErrorCode::kTooLarge);
  CHECK(contains(next.error().message, "exceeds 8 bytes"));
  // It stays failed: the rest of that line can no longer be framed.
  splitter.append("\nok\n");
  CHECK_FALSE(splitter.next().ok());
}

TEST_CASE("control_message: LineSplitter fails on an oversized complete line") {
  LineSplitter splitter(8);
  splitter.append("short\n" + std::string(9, 'y') + "\n");
  auto first = splitter.next();
  REQUIRE(first.ok());
  CHECK(first->value() == "short");
  auto second = splitter.next();
  REQUIRE_FALSE(second.ok());
  CHECK(second.error().code == ErrorCode::kTooLarge);
}

TEST_CASE("control_message: LineSplitter default limit is 1 MiB") {
  LineSplitter splitter;
  splitter.append(std::string(kMaxLineBytes, 'z'));
  CHECK(drain(splitter).empty());
  splitter.append("z");
  CHECK_FALSE(splitter.next().ok());
}

TEST_CASE("control_message: deep nesting is refused, not copied (a stack overflow found while fuzzing)") {
  const auto nested = [](std::size_t n) { return std::string(n, '[') + std::string(n, ']'); };
  Json id;
  auto shallow = parse_request(R"({"id":5,"method":"x","params":{"a":)" + nested(20) + "}}", &id);
  CHECK(shallow.ok());
  // 100 000 levels in 200 KB: below the line limit, far beyond what a recursive copy survives.
  auto deep = parse_request(R"({"id":5,"method":"x","params":{"a":)" + nested(100000) + "}}", &id);
  REQUIRE_FALSE(deep.ok());
  CHECK(deep.error().code == ErrorCode::kInvalidArgument);
  CHECK(deep.error().message.find("nests deeper than 64") != std::string::npos);
  CHECK(id == 5);  // still answerable by id
  CHECK_FALSE(parse_response(R"({"id":1,"result":)" + nested(100000) + "}").ok());
}

}  // namespace vtpm::control
