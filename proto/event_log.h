// The TCG canonical event log, crypto-agile format (TCG PC Client Platform
// Firmware Profile, "TCG_PCR_EVENT2"): a TCG_PCR_EVENT header carrying the
// Spec ID event (the banks and their digest sizes), then one
// TCG_PCR_EVENT2 per measurement with a digest for every bank. All
// integers little-endian. This is what tpm2_eventlog parses and what a
// verifier replays. Pure: no I/O, no hashing.
#pragma once

#include <cstdint>
#include <span>
#include <vector>

#include <tss2/tss2_tpm2_types.h>

#include "proto/result.h"

namespace vtpm::eventlog {

using Bytes = std::vector<std::uint8_t>;

inline constexpr std::uint32_t kEvNoAction = 0x00000003;
inline constexpr std::uint32_t kEvIpl = 0x0000000D;          // IPL code; the PC Client profile's PCRs 8, 9, 12, 14
inline constexpr std::uint32_t kEvCompactHash = 0x0000000C;  // a measurement with a short description
// vtpmd's default event type for a toolstack measurement into `pcr`: what
// boot loaders record there (EV_IPL) where the PC Client profile expects
// it, else EV_COMPACT_HASH, so that tpm2_eventlog accepts the log silently.
inline std::uint32_t default_event_type(std::uint32_t pcr) {
  return pcr == 8 || pcr == 9 || pcr == 12 || pcr == 14 ? kEvIpl : kEvCompactHash;
}

struct Digest {
  TPM2_ALG_ID alg = TPM2_ALG_SHA256;
  Bytes bytes;
};

struct Event {
  std::uint32_t pcr = 0;
  std::uint32_t type = kEvIpl;
  std::vector<Digest> digests;  // one per bank, in the header's order
  Bytes data;                   // the event data (a description of what was measured)
};

struct Log {
  std::vector<TPM2_ALG_ID> banks;  // from the Spec ID event
  std::vector<Event> events;
};

// The Spec ID header alone: a log with no measurements yet.
Bytes encode_header(std::span<const TPM2_ALG_ID> banks);
// One TCG_PCR_EVENT2, to append to a log.
Bytes encode_event(const Event& event);
Bytes encode(const Log& log);
// Checks every size against the header's banks; kCorrupt on anything odd.
Result<Log> decode(std::span<const std::uint8_t> bytes);

}  // namespace vtpm::eventlog
