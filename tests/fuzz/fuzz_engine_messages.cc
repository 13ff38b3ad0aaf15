// Fuzz target: the engine worker pipe codec (proto/engine_messages.h). The daemon decodes what a
// vtpmd-engine worker writes, and a worker runs libtpms on guest input: it is less trusted than
// the daemon. The worker decodes jobs.
// Input: u8 mode (modulo 3), then: 0 a job payload, 1 a completion payload, 2 the byte stream of
// a worker pipe, split into frames as src/engine/process_shard.cc does, each payload decoded as
// a completion or a job (by its type byte).
// Invariants: what decodes re-encodes to a payload of the same size that decodes to the same
// value, and encoding is then stable; decoded kinds and error codes are in their enums; frames
// lie inside the stream and within kMaxFrame; frame() and complete_frame_length() agree.
#include <cstdint>

#include "proto/engine_messages.h"
#include "tests/fuzz/fuzz_util.h"

using namespace vtpm;
using namespace vtpm::engine;

namespace {

bool same_job(const Job& a, const Job& b) {
  return a.id == b.id && a.instance == b.instance && a.kind == b.kind && a.locality == b.locality &&
         a.command == b.command && a.params.version == b.params.version &&
         a.params.max_command_size == b.params.max_command_size && a.params.auto_startup == b.params.auto_startup &&
         a.blobs.permanent == b.blobs.permanent && a.blobs.volatile_state == b.blobs.volatile_state &&
         a.blobs.save_state == b.blobs.save_state;
}

bool same_completion(const Completion& a, const Completion& b) {
  return a.id == b.id && a.instance == b.instance && a.kind == b.kind && a.error == b.error && a.ok == b.ok &&
         a.message == b.message && a.response == b.response && a.permanent == b.permanent &&
         a.save_state == b.save_state && a.volatile_state == b.volatile_state &&
         a.timing.queued_us == b.timing.queued_us && a.timing.load_us == b.timing.load_us &&
         a.timing.run_us == b.timing.run_us && a.swapped == b.swapped;
}

bool valid_kind(JobKind k) {
  const auto v = static_cast<std::uint8_t>(k);
  return v >= static_cast<std::uint8_t>(JobKind::kAttach) && v <= static_cast<std::uint8_t>(JobKind::kEstablishedReset);
}

void check_job(std::span<const std::uint8_t> payload) {
  auto job = decode_job(payload);
  if (!job) {
    FUZZ_CHECK(job.error().code == ErrorCode::kCorrupt);
    return;
  }
  FUZZ_CHECK(valid_kind(job->kind));
  FUZZ_CHECK(job->params.version == TpmVersion::k12 || job->params.version == TpmVersion::k20);
  const Bytes encoded = encode_job(*job);
  FUZZ_CHECK(encoded.size() == payload.size());
  auto again = decode_job(encoded);
  FUZZ_CHECK(again.ok() && same_job(*again, *job) && encode_job(*again) == encoded);
}

void check_completion(std::span<const std::uint8_t> payload) {
  auto c = decode_completion(payload);
  if (!c) {
    FUZZ_CHECK(c.error().code == ErrorCode::kCorrupt);
    return;
  }
  FUZZ_CHECK(valid_kind(c->kind));
  FUZZ_CHECK(static_cast<int>(c->error) >= 0 && c->error <= ErrorCode::kInternal);
  (void)error_code_name(c->error);
  const Bytes encoded = encode_completion(*c);
  FUZZ_CHECK(encoded.size() == payload.size());
  auto again = decode_completion(encoded);
  FUZZ_CHECK(again.ok() && same_completion(*again, *c) && encode_completion(*again) == encoded);
}

void check_stream(std::span<const std::uint8_t> stream) {
  while (true) {
    auto length = complete_frame_length(stream);
    if (!length) {
      FUZZ_CHECK(stream.size() >= 4 && length.error().code == ErrorCode::kCorrupt);
      return;
    }
    if (*length == 0) return;
    FUZZ_CHECK(*length <= kMaxFrame && 4 + *length <= stream.size());
    const auto payload = stream.subspan(4, *length);
    const Bytes copy(payload.begin(), payload.end());
    const Bytes framed = frame(copy);
    FUZZ_CHECK(framed.size() == 4 + copy.size() && std::equal(framed.begin(), framed.end(), stream.begin()));
    auto again = complete_frame_length(framed);
    FUZZ_CHECK(again.ok() && *again == *length);
    if (payload[0] == 'J') check_job(payload);
    else check_completion(payload);
    stream = stream.subspan(4 + *length);
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  fuzz::Input in(data, size);
  switch (in.u8() % 3) {
    case 0: check_job(in.rest()); break;
    case 1: check_completion(in.rest()); break;
    case 2: check_stream(in.rest()); break;
  }
  return 0;
}
