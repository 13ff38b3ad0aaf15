#include "proto/control_message.h"

#include <array>

namespace vtpm::control {
namespace {

Error invalid(std::string message) { return make_error(ErrorCode::kInvalidArgument, std::move(message)); }

// nlohmann::json parses and destroys without recursion, but copies, compares and dumps
// recursively: a line of 100 000 '[' (200 KB, under the line limit) crashed the daemon when
// parse_request copied the params (found while writing tests/fuzz/fuzz_control_message).
// No message needs more than a few levels.
constexpr int kMaxDepth = 64;

Json parse_line(std::string_view line, bool* too_deep) {
  *too_deep = false;
  return Json::parse(
      line.begin(), line.end(),
      [too_deep](int depth, Json::parse_event_t, Json&) {
        if (depth > kMaxDepth) *too_deep = true;
        return true;
      },
      /*allow_exceptions=*/false);
}

}  // namespace

Result<Request> parse_request(std::string_view line, Json* id) {
  bool too_deep = false;
  Json doc = parse_line(line, &too_deep);
  if (doc.is_discarded()) return invalid("request is not valid JSON");
  if (!doc.is_object()) return invalid("request must be a JSON object");
  if (auto it = doc.find("id"); it != doc.end()) {
    if (!it->is_number_integer() && !it->is_string() && !it->is_null()) {
      return invalid("field 'id' must be an integer, a string or null");
    }
    *id = *it;
  }
  if (too_deep) return invalid("request nests deeper than " + std::to_string(kMaxDepth) + " levels");
  if (auto it = doc.find("v"); it != doc.end()) {
    if (!it->is_number_integer()) return invalid("field 'v' must be an integer");
    if (it->get<long long>() != kProtocolVersion) {
      return make_error(ErrorCode::kUnsupported, "protocol version " + it->dump() + " is not supported (this daemon speaks " +
                                                     std::to_string(kProtocolVersion) + ")");
    }
  }
  auto method = doc.find("method");
  if (method == doc.end() || !method->is_string() || method->get_ref<const std::string&>().empty()) {
    return invalid("field 'method' must be a non-empty string");
  }
  Request request;
  request.id = id->is_null() ? Json() : *id;
  request.method = method->get<std::string>();
  request.params = Json::object();
  if (auto it = doc.find("params"); it != doc.end() && !it->is_null()) {
    if (!it->is_object()) return invalid("field 'params' must be an object");
    request.params = std::move(*it);
  }
  if (auto it = doc.find("progress"); it != doc.end()) {
    if (!it->is_boolean()) return invalid("field 'progress' must be a boolean");
    request.progress = it->get<bool>();
  }
  return request;
}

std::string encode_request(const Json& id, std::string_view method, const Json& params, bool progress) {
  Json doc = {{"v", kProtocolVersion}, {"id", id}, {"method", method}, {"params", params}};
  if (progress) doc["progress"] = true;
  return doc.dump(-1, ' ', false, Json::error_handler_t::replace) + "\n";
}

std::string encode_progress(const Json& id, const Json& progress) {
  Json doc = {{"v", kProtocolVersion}, {"id", id}, {"progress", progress}};
  return doc.dump(-1, ' ', false, Json::error_handler_t::replace) + "\n";
}

std::string encode_result(const Json& id, const Json& result) {
  Json doc = {{"v", kProtocolVersion}, {"id", id}, {"result", result}};
  return doc.dump(-1, ' ', false, Json::error_handler_t::replace) + "\n";
}

std::string encode_error(const Json& id, const Error& error) {
  Json doc = {{"v", kProtocolVersion},
              {"id", id},
              {"error", {{"code", std::string(error_code_name(error.code))}, {"message", error.message}}}};
  return doc.dump(-1, ' ', false, Json::error_handler_t::replace) + "\n";
}

ErrorCode error_code_from_name(std::string_view name) {
  static constexpr std::array kAll = {
      ErrorCode::kInvalidArgument, ErrorCode::kNotFound,   ErrorCode::kAlreadyExists, ErrorCode::kBusy,
      ErrorCode::kTooLarge,        ErrorCode::kIo,         ErrorCode::kCorrupt,       ErrorCode::kTpmFailure,
      ErrorCode::kUnavailable,     ErrorCode::kCancelled,  ErrorCode::kUnsupported,   ErrorCode::kPermissionDenied,
      ErrorCode::kInternal};
  for (ErrorCode code : kAll) {
    if (error_code_name(code) == name) return code;
  }
  return ErrorCode::kInternal;
}

Result<Response> parse_response(std::string_view line) {
  bool too_deep = false;
  Json doc = parse_line(line, &too_deep);
  if (doc.is_discarded() || !doc.is_object()) return make_error(ErrorCode::kCorrupt, "response is not a JSON object");
  if (too_deep) {
    return make_error(ErrorCode::kCorrupt, "response nests deeper than " + std::to_string(kMaxDepth) + " levels");
  }
  Response response;
  response.id = doc.value("id", Json());
  if (auto it = doc.find("progress"); it != doc.end() && !doc.contains("result") && !doc.contains("error")) {
    response.is_progress = true;
    response.result = std::move(*it);
    return response;
  }
  if (auto it = doc.find("result"); it != doc.end()) {
    response.ok = true;
    response.result = std::move(*it);
    return response;
  }
  auto error = doc.find("error");
  if (error == doc.end() || !error->is_object()) {
    return make_error(ErrorCode::kCorrupt, "response has neither 'result' nor 'error'");
  }
  const Json code = error->value("code", Json());
  const Json message = error->value("message", Json());
  response.error.code = error_code_from_name(code.is_string() ? code.get<std::string>() : "");
  response.error.message = message.is_string() ? message.get<std::string>() : "";
  return response;
}

Result<std::optional<std::string>> LineSplitter::next() {
  const std::size_t newline = buffer_.find('\n', scanned_);
  if (newline == std::string::npos) {
    scanned_ = buffer_.size();
    if (buffer_.size() > max_line_) {
      return make_error(ErrorCode::kTooLarge, "request line exceeds " + std::to_string(max_line_) + " bytes");
    }
    return std::optional<std::string>();
  }
  if (newline > max_line_) {
    return make_error(ErrorCode::kTooLarge, "request line exceeds " + std::to_string(max_line_) + " bytes");
  }
  std::string line = buffer_.substr(0, newline);
  buffer_.erase(0, newline + 1);
  scanned_ = 0;
  if (!line.empty() && line.back() == '\r') line.pop_back();
  return std::optional<std::string>(std::move(line));
}

}  // namespace vtpm::control
