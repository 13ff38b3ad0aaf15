// The manifest: the state directory's table of contents. It binds every
// instance's latest committed generation and the SHA-256 of its sealed
// blob file, and carries the root of trust's monotonic counter value (the
// epoch) it was written in plus its own commit sequence number. It is
// MAC'd (HMAC-SHA256 under a key derived from the master key), so neither
// an entry nor the numbers can be changed, and a manifest from an older
// epoch is recognised by its counter value.
// Byte layout: docs/state-format.md. Pure.
#pragma once

#include <array>
#include <cstdint>
#include <map>
#include <memory>
#include <span>

#include "proto/result.h"
#include "proto/uuid.h"
#include "state/bytes.h"
#include "state/crypto.h"

namespace vtpm::state {

// Version 2 added the sequence number; version 1 (sequence == counter) is
// still read. Version 3 is version 2 plus inline blobs; it is written only
// when there are some.
constexpr std::uint16_t kManifestFormatVersion = 2;
constexpr std::uint16_t kManifestInlineVersion = 3;
// Largest sealed blob carried inline (a TPM 2.0 blob is ~2 KiB, one with
// EK certificates ~6 KiB): larger ones go to their slot file.
constexpr std::size_t kMaxInlineBlob = 16 * 1024;

struct ManifestEntry {
  std::uint64_t generation = 0;
  std::uint32_t key_epoch = 0;
  // Kept for an instance whose blob failed to load: the entry is carried
  // forward unchanged so the evidence is never treated as an orphan.
  bool quarantined = false;
  // Random per incarnation of a UUID; input to the instance key, so a
  // re-created UUID never shares a key with its predecessor.
  std::array<std::uint8_t, 32> key_salt{};
  Digest blob_digest{};  // SHA-256 of the sealed blob (without its file's zero tail)
};

struct Manifest {
  std::uint64_t counter = 0;   // root-of-trust counter value (epoch) this manifest is bound to
  std::uint64_t sequence = 0;  // commit number: picks the slot and the newest manifest
  std::map<Uuid, ManifestEntry> entries;
  // Sealed blobs carried in the manifest instead of a slot file, each its
  // entry's committed generation: a new instance's first write goes here,
  // so an add costs the manifest's one sync instead of three (blob file,
  // directory, manifest). The persister moves them to slot files later, in
  // the background. Every key has an entry.
  std::map<Uuid, std::shared_ptr<const Bytes>> inline_blobs;  // shared: copying a manifest is cheap
};

Bytes encode_manifest(const Manifest& manifest, const SecretKey& mac_key);
// Rejects (kCorrupt) a bad MAC, truncation, trailing bytes, malformed
// fields and an inline blob that does not match its entry's digest (the
// MAC covers the header and entries; inline blobs follow it). Freshness
// against the counter is the caller's check.
Result<Manifest> decode_manifest(std::span<const std::uint8_t> bytes, const SecretKey& mac_key);
// The manifest inside a manifest file (the manifest, then zeros to the end
// of the file; docs/state-format.md): its exact bytes, by the entry count
// in its (not yet authenticated) header, or kCorrupt.
Result<std::span<const std::uint8_t>> manifest_in_file(std::span<const std::uint8_t> file);

}  // namespace vtpm::state
