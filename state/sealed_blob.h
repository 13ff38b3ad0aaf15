// The sealed blob: one instance's record (state/instance_record.h),
// encrypted and authenticated with AES-256-GCM under the instance key. The
// whole header is the GCM additional data, so no header field can be
// changed without detection. Byte layout: docs/state-format.md. Pure.
#pragma once

#include <cstdint>
#include <span>

#include "proto/engine_messages.h"
#include "proto/result.h"
#include "proto/uuid.h"
#include "state/bytes.h"
#include "state/crypto.h"

namespace vtpm::state {

constexpr std::uint16_t kSealedFormatVersion = 1;
constexpr std::size_t kSealedHeaderSize = 56;
constexpr std::size_t kMaxSealedBody = 16 * 1024 * 1024;

struct SealedHeader {
  TpmVersion tpm = TpmVersion::k20;
  bool has_volatile = false;  // the body carries volatile state (suspended instance)
  Uuid uuid;
  std::uint64_t generation = 0;
  std::uint32_t key_epoch = 0;
  Nonce nonce{};
  std::uint32_t body_length = 0;  // plaintext length; set by seal_blob
};

// What the manifest says the blob must be.
struct BlobExpectation {
  Uuid uuid;
  std::uint64_t generation = 0;
  std::uint32_t key_epoch = 0;
};

// The size of a sealed blob with a body of `body_size` bytes.
constexpr std::size_t sealed_blob_size(std::size_t body_size) { return kSealedHeaderSize + body_size + kTagSize; }

Bytes seal_blob(const SecretKey& instance_key, SealedHeader header, std::span<const std::uint8_t> body);

// Structural parse of the header only (no key needed): magic, format
// version, field ranges and the body length against the file size.
Result<SealedHeader> read_sealed_header(std::span<const std::uint8_t> blob);

// The sealed blob inside a slot file (the blob, then zeros to the end of
// the file; docs/state-format.md): its exact bytes, or kCorrupt.
Result<std::span<const std::uint8_t>> sealed_blob_in_file(std::span<const std::uint8_t> file);

struct OpenedBlob {
  SealedHeader header;
  SecureBytes body;  // plaintext, in secure memory
};

// Accepts the expected generation, or the one after it: a write that
// reached the disk before a crash stopped its manifest commit. Anything
// older is a rollback, anything newer cannot have been written by us.
Result<OpenedBlob> open_blob(const SecretKey& instance_key, std::span<const std::uint8_t> blob,
                             const BlobExpectation& expected);

}  // namespace vtpm::state
