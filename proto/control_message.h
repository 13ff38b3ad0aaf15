// The control protocol's envelope: newline-delimited JSON requests and
// responses (see docs/control-protocol.md). Pure: no I/O.
//
//   request : {"v":1,"id":7,"method":"show","params":{"uuid":"..."}}
//   success : {"v":1,"id":7,"result":{...}}
//   failure : {"v":1,"id":7,"error":{"code":"not_found","message":"..."}}
#pragma once

#include <nlohmann/json.hpp>

#include <optional>
#include <string>
#include <string_view>

#include "proto/result.h"

namespace vtpm::control {

using Json = nlohmann::json;

inline constexpr int kProtocolVersion = 1;
inline constexpr std::size_t kMaxLineBytes = 1024 * 1024;

struct Request {
  Json id;  // number, string or null; echoed back verbatim
  std::string method;
  Json params;  // always an object (empty when absent)
  bool progress = false;  // "progress": true: the client accepts progress lines before the reply
};

struct Response {
  Json id;
  bool ok = false;
  Json result;   // when ok
  Error error{ErrorCode::kInternal, {}};  // when !ok
  // A progress line ({"v","id","progress":{...}}) rather than the reply:
  // `result` holds the progress object and `ok` is false.
  bool is_progress = false;
};

// Parses one request line. On failure, *id receives the request's id when it
// could be read, so the error can still be matched by the client.
Result<Request> parse_request(std::string_view line, Json* id);
std::string encode_request(const Json& id, std::string_view method, const Json& params, bool progress = false);
// A progress notification for the request `id` (only to clients that asked).
std::string encode_progress(const Json& id, const Json& progress);

std::string encode_result(const Json& id, const Json& result);
std::string encode_error(const Json& id, const Error& error);
Result<Response> parse_response(std::string_view line);
// Maps a wire error code name back to an ErrorCode (kInternal if unknown).
ErrorCode error_code_from_name(std::string_view name);

// Accumulates stream bytes and yields complete lines (without '\n').
class LineSplitter {
 public:
  explicit LineSplitter(std::size_t max_line = kMaxLineBytes) : max_line_(max_line) {}
  void append(std::string_view bytes) { buffer_.append(bytes); }
  // The next complete line, if any. Fails once the pending line exceeds the
  // limit; the splitter is then unusable (the connection should be closed).
  Result<std::optional<std::string>> next();

 private:
  std::string buffer_;
  std::size_t scanned_ = 0;
  std::size_t max_line_;
};

}  // namespace vtpm::control
