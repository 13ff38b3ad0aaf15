// Fuzz target: the control API (proto/control_message.h, src/control/params.h), as any process
// that may connect to the control socket sends it.
// Input: u8 chunk seed, u8 flags (bit 0: a small line limit, from the next u16, instead of the
// daemon's 1 MiB), then the byte stream of one connection. The stream goes through LineSplitter
// in random chunks; every line goes through parse_request as in src/control/server.cc, then the
// params helpers the handlers use.
// Invariants: the lines (and the too_large verdict) equal an independent split of the whole
// stream, whatever the chunking; no line exceeds the limit; an accepted request has a non-empty
// method, an object for params, an id of an allowed type, and survives encode_request ->
// parse_request unchanged; results and errors survive encode -> parse_response; the params
// helpers return only values inside the range asked for; hex round-trips.
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "proto/control_message.h"
#include "proto/hex.h"
#include "proto/uuid.h"
#include "src/control/params.h"
#include "tests/fuzz/fuzz_util.h"

using namespace vtpm;
using namespace vtpm::control;

namespace {

struct Split {
  std::vector<std::string> lines;
  bool too_large = false;
};

// The framing rule of docs/control-protocol.md, on the whole stream at once.
Split reference_split(const std::string& stream, std::size_t max_line) {
  Split out;
  std::size_t start = 0;
  while (true) {
    const std::size_t nl = stream.find('\n', start);
    const std::size_t len = (nl == std::string::npos ? stream.size() : nl) - start;
    if (len > max_line) {
      out.too_large = true;
      return out;
    }
    if (nl == std::string::npos) return out;
    std::string line = stream.substr(start, len);
    if (!line.empty() && line.back() == '\r') line.pop_back();
    out.lines.push_back(std::move(line));
    start = nl + 1;
  }
}

void check_params(const Json& params, std::int64_t a, std::int64_t b) {
  if (only_params(params, {"uuid", "command", "locality", "force", "max_command_size"})) {
    for (const auto& [key, value] : params.items()) {
      FUZZ_CHECK(key == "uuid" || key == "command" || key == "locality" || key == "force" || key == "max_command_size");
    }
  }
  if (auto id = uuid_param(params); id) {
    FUZZ_CHECK(!id->is_nil());
    auto again = Uuid::parse(id->to_string());
    FUZZ_CHECK(again.ok() && *again == *id);
  }
  if (auto command = string_param(params, "command"); command && *command) {
    if (auto bytes = from_hex(**command); bytes) {
      const std::string hex = to_hex(*bytes);
      FUZZ_CHECK(hex.size() == 2 * bytes->size());
      auto again = from_hex(hex);
      FUZZ_CHECK(again.ok() && *again == *bytes);
    }
  }
  if (auto force = bool_param(params, "force"); force && *force) FUZZ_CHECK(params.at("force").is_boolean());
  if (auto locality = int_param(params, "locality", 0, 4); locality && *locality) {
    FUZZ_CHECK(**locality >= 0 && **locality <= 4);
  }
  if (auto size = int_param(params, "max_command_size", 1024, 65536); size && *size) {
    FUZZ_CHECK(**size >= 1024 && **size <= 65536);
  }
  const std::int64_t lo = std::min(a, b), hi = std::max(a, b);
  if (auto n = int_param(params, "locality", lo, hi); n && *n) FUZZ_CHECK(**n >= lo && **n <= hi);
}

void check_line(const std::string& line, std::int64_t a, std::int64_t b) {
  (void)parse_response(line);  // what vtpmctl does with the daemon's lines
  Json id;
  auto request = parse_request(line, &id);
  if (!request) {
    FUZZ_CHECK(!request.error().message.empty());
    FUZZ_CHECK(request.error().code == ErrorCode::kInvalidArgument || request.error().code == ErrorCode::kUnsupported);
    FUZZ_CHECK(id.is_null() || id.is_number_integer() || id.is_string());
    // The daemon answers with this error; a client must read it back.
    auto back = parse_response(encode_error(id, request.error()));
    FUZZ_CHECK(back.ok() && !back->ok && back->error.code == request.error().code);
    FUZZ_CHECK(back->error.message == request.error().message && back->id == id);
    return;
  }
  FUZZ_CHECK(!request->method.empty() && request->params.is_object());
  FUZZ_CHECK(request->id.is_null() || request->id.is_number_integer() || request->id.is_string());
  FUZZ_CHECK(request->id == id);

  const std::string encoded = encode_request(request->id, request->method, request->params, request->progress);
  FUZZ_CHECK(!encoded.empty() && encoded.back() == '\n' && encoded.find('\n') == encoded.size() - 1);
  Json id2;
  auto again = parse_request(std::string_view(encoded).substr(0, encoded.size() - 1), &id2);
  FUZZ_CHECK(again.ok());
  FUZZ_CHECK(again->method == request->method && again->params == request->params && again->id == request->id);
  FUZZ_CHECK(again->progress == request->progress);
  auto progress = parse_response(encode_progress(request->id, request->params));
  FUZZ_CHECK(progress.ok() && progress->is_progress && progress->result == request->params &&
             progress->id == request->id);

  auto result = parse_response(encode_result(request->id, request->params));
  FUZZ_CHECK(result.ok() && result->ok && result->result == request->params && result->id == request->id);
  auto error = parse_response(encode_error(request->id, make_error(ErrorCode::kNotFound, request->method)));
  FUZZ_CHECK(error.ok() && !error->ok && error->error.code == ErrorCode::kNotFound);
  FUZZ_CHECK(error->error.message == request->method);

  check_params(request->params, a, b);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  fuzz::Input in(data, size);
  fuzz::Chunker chunker(in.u8());
  const std::uint8_t flags = in.u8();
  const std::size_t max_line = (flags & 1) ? std::size_t{in.u16()} : kMaxLineBytes;
  const std::int64_t range_a = static_cast<std::int8_t>(flags) * 1000;
  const std::int64_t range_b = static_cast<std::int64_t>(flags) - 100;
  const std::string stream = fuzz::as_string(in.rest());

  const Split expected = reference_split(stream, max_line);

  LineSplitter splitter(max_line);
  std::vector<std::string> lines;
  bool too_large = false;
  for (std::size_t pos = 0; pos < stream.size() && !too_large;) {
    const std::size_t n = chunker.next(stream.size() - pos);
    splitter.append(std::string_view(stream).substr(pos, n));
    pos += n;
    while (true) {
      auto line = splitter.next();
      if (!line) {
        FUZZ_CHECK(line.error().code == ErrorCode::kTooLarge);
        too_large = true;
        break;
      }
      if (!*line) break;
      FUZZ_CHECK((*line)->size() <= max_line && (*line)->find('\n') == std::string::npos);
      lines.push_back(std::move(**line));
    }
  }
  FUZZ_CHECK(too_large == expected.too_large && lines == expected.lines);

  for (const auto& line : lines) {
    if (!line.empty()) check_line(line, range_a, range_b);  // the server skips empty lines
  }
  return 0;
}
