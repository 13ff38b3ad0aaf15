// What vtpmd keeps on disk for one instance: its identity and settings and
// the libtpms blobs. This is the plaintext body of a sealed blob
// (state/sealed_blob.h encrypts and authenticates it). Pure: no I/O.
//
// Encoding: "VTPMREC1", u32 metadata length, metadata (JSON), then three
// u32-length-prefixed blobs (permanent, volatile, save state), then a
// SHA-256 over everything before it. The digest is redundant under AES-GCM;
// it stays as a cheap self-check of the encoder and decoder.
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "proto/engine_messages.h"
#include "proto/result.h"
#include "proto/uuid.h"

namespace vtpm::state {

struct InstanceRecord {
  Uuid uuid;
  TpmVersion version = TpmVersion::k20;
  std::int64_t created_unix = 0;
  bool auto_startup = false;
  std::uint32_t max_command_size = 4096;
  bool powered_on = true;
  std::string channels;  // guest-channel configuration (JSON text, opaque here); empty: none
  std::uint32_t max_queued = 0;  // per-instance limits; 0: the daemon's default
  std::uint32_t max_rate = 0;    // commands per second; 0: the daemon's default
  std::string provisioning;      // what `add` provisioned (JSON text, opaque here); empty: nothing
  // The measured-launch event log (proto/event_log.h) of the volatile
  // state's boot: kept only in records that carry volatile state.
  std::vector<std::uint8_t> event_log;
  bool guest_started = false;  // with volatile state: the guest had sent commands this boot
  std::uint32_t max_state_size = 0;  // bytes of the sealed record; 0: the daemon's default
  std::uint32_t max_connections = 0;  // guest-channel connections; 0: the daemon's default
  std::string vchan;  // the vchan channel's setting (JSON text, opaque here); empty: off
  engine::StateBlobs blobs;
};

std::vector<std::uint8_t> encode_record(const InstanceRecord& record);
// encode_record(record).size(), without encoding.
std::size_t encoded_record_size(const InstanceRecord& record);
Result<InstanceRecord> decode_record(std::span<const std::uint8_t> bytes);

}  // namespace vtpm::state
