// Messages between the reactor and an engine shard (the in-process engine
// thread or a vtpmd-engine worker process), plus their wire codec for the
// worker pipe. Frame = u32 payload length, then the payload; all integers
// big-endian. Pure: no I/O.
#pragma once

#include <cstdint>
#include <optional>
#include <span>
#include <vector>

#include "proto/result.h"
#include "proto/tpm_packet.h"
#include "proto/uuid.h"

namespace vtpm::engine {

using Bytes = std::vector<std::uint8_t>;
using JobId = std::uint64_t;

enum class JobKind : std::uint8_t {
  kAttach = 1,    // host an instance: manufacture (no permanent blob) or restore
  kExecute = 2,   // run one TPM command
  kPowerOn = 3,   // _TPM_Init: volatile state dropped, TPM restarted from NV
  kDetach = 4,    // stop hosting; the completion carries the final blobs
  kSnapshot = 5,  // copy of the current blobs (for saving), instance stays
  kCancel = 6,    // cancel queued jobs and the running command of an instance
  // Platform (TIS) signals that are not TPM commands. The completion's
  // response is the u32 TPM result, big-endian, then for kEstablishedGet one
  // byte with the TPM-established bit.
  kHashStart = 7,         // _TPM_Hash_Start (H-CRTM sequence)
  kHashData = 8,          // _TPM_Hash_Data, job.command carries the data
  kHashEnd = 9,           // _TPM_Hash_End
  kEstablishedGet = 10,   // read the TPM-established bit
  kEstablishedReset = 11, // reset it (job.locality: the requesting locality)
};

// libtpms state of one instance. An empty vector means "absent".
struct StateBlobs {
  Bytes permanent;
  Bytes volatile_state;
  Bytes save_state;
};

struct InstanceParams {
  TpmVersion version = TpmVersion::k20;
  std::uint32_t max_command_size = 4096;
  bool auto_startup = false;  // send Startup(CLEAR) after every power-on
};

struct Job {
  JobId id = 0;
  Uuid instance;
  JobKind kind = JobKind::kExecute;
  std::uint8_t locality = 0;
  Bytes command;         // kExecute
  InstanceParams params; // kAttach; for kPowerOn, params.auto_startup says
                         // whether the instance's automatic Startup may run
  StateBlobs blobs;      // kAttach
};

struct Timing {
  std::uint64_t queued_us = 0;  // waited in the engine before it started
  std::uint64_t load_us = 0;    // swap-in (or manufacture) paid by this job
  std::uint64_t run_us = 0;     // libtpms execution
};

struct Completion {
  JobId id = 0;
  Uuid instance;
  JobKind kind = JobKind::kExecute;
  ErrorCode error = ErrorCode::kInternal;
  bool ok = false;
  std::string message;  // set when !ok
  Bytes response;       // kExecute: the TPM response
  // Set when the job changed persistent state (NV write, manufacture,
  // TPM 1.2 SaveState) or when the job returns state (detach, snapshot).
  std::optional<Bytes> permanent;
  std::optional<Bytes> save_state;
  std::optional<Bytes> volatile_state;  // detach and snapshot only
  Timing timing;
  bool swapped = false;
};

// Worker pipe codec. A frame is u32 length + payload; payload starts with
// a message type byte: 'J' job, 'C' completion.
inline constexpr std::size_t kMaxFrame = 4 * 1024 * 1024;

Bytes encode_job(const Job& job);
Bytes encode_completion(const Completion& completion);
Result<Job> decode_job(std::span<const std::uint8_t> payload);
Result<Completion> decode_completion(std::span<const std::uint8_t> payload);

// Splits frames off the front of a byte stream. Returns the payload length
// of the first complete frame, 0 when more bytes are needed, or an error for
// an oversized frame.
Result<std::size_t> complete_frame_length(std::span<const std::uint8_t> stream);
Bytes frame(const Bytes& payload);

}  // namespace vtpm::engine
