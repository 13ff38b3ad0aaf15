#include "state/sealed_blob.h"

#include <cstring>
#include <string>

namespace vtpm::state {
namespace {

constexpr char kMagic[8] = {'V', 'T', 'P', 'M', 'S', 'E', 'A', 'L'};
constexpr std::uint8_t kFlagVolatile = 0x01;

Error corrupt(const std::string& what) { return make_error(ErrorCode::kCorrupt, "sealed blob: " + what); }

std::uint8_t version_code(TpmVersion v) { return v == TpmVersion::k12 ? 1 : 2; }

Bytes encode_header(const SealedHeader& h) {
  ByteWriter w;
  w.raw(std::span(reinterpret_cast<const std::uint8_t*>(kMagic), sizeof kMagic));
  w.u16(kSealedFormatVersion);
  w.u8(version_code(h.tpm));
  w.u8(h.has_volatile ? kFlagVolatile : 0);
  w.raw(h.uuid.bytes());
  w.u64(h.generation);
  w.u32(h.key_epoch);
  w.raw(h.nonce);
  w.u32(h.body_length);
  return w.take();
}

}  // namespace

Bytes seal_blob(const SecretKey& instance_key, SealedHeader header, std::span<const std::uint8_t> body) {
  header.body_length = static_cast<std::uint32_t>(body.size());
  Bytes out = encode_header(header);
  const Bytes sealed = aes_gcm_seal(instance_key, header.nonce, out, body);
  out.insert(out.end(), sealed.begin(), sealed.end());
  return out;
}

Result<SealedHeader> read_sealed_header(std::span<const std::uint8_t> blob) {
  if (blob.size() < kSealedHeaderSize + kTagSize) {
    return corrupt("truncated (" + std::to_string(blob.size()) + " bytes)");
  }
  ByteReader r(blob);
  if (std::memcmp(r.raw(sizeof kMagic).data(), kMagic, sizeof kMagic) != 0) return corrupt("bad magic");
  if (const auto v = r.u16(); v != kSealedFormatVersion) {
    return corrupt("unsupported format version " + std::to_string(v));
  }
  SealedHeader h;
  switch (r.u8()) {
    case 1: h.tpm = TpmVersion::k12; break;
    case 2: h.tpm = TpmVersion::k20; break;
    default: return corrupt("unknown TPM version code");
  }
  const std::uint8_t flags = r.u8();
  if ((flags & ~kFlagVolatile) != 0) return corrupt("unknown flags");
  h.has_volatile = (flags & kFlagVolatile) != 0;
  Uuid::Bytes id{};
  std::memcpy(id.data(), r.raw(id.size()).data(), id.size());
  h.uuid = Uuid(id);
  h.generation = r.u64();
  h.key_epoch = r.u32();
  std::memcpy(h.nonce.data(), r.raw(h.nonce.size()).data(), h.nonce.size());
  h.body_length = r.u32();
  if (!r.ok() || r.position() != kSealedHeaderSize) return corrupt("malformed header");
  if (h.body_length > kMaxSealedBody || blob.size() != kSealedHeaderSize + h.body_length + kTagSize) {
    return corrupt("length " + std::to_string(blob.size()) + " does not match the header (truncated or extended)");
  }
  return h;
}

Result<std::span<const std::uint8_t>> sealed_blob_in_file(std::span<const std::uint8_t> file) {
  if (file.size() < kSealedHeaderSize) return corrupt("truncated (" + std::to_string(file.size()) + " bytes)");
  ByteReader r(file.subspan(kSealedHeaderSize - 4, 4));
  const std::uint64_t length = sealed_blob_size(r.u32());
  const FileExtent extent = record_in_file(file, length);
  if (extent.problem != nullptr) {
    return corrupt(std::string(extent.problem) + ": the file has " + std::to_string(file.size()) +
                   " bytes, the header states a blob of " + std::to_string(length));
  }
  return extent.record;
}

Result<OpenedBlob> open_blob(const SecretKey& instance_key, std::span<const std::uint8_t> blob,
                             const BlobExpectation& expected) {
  auto header = read_sealed_header(blob);
  if (!header) return header.error();
  if (header->uuid != expected.uuid) {
    return corrupt("belongs to instance " + header->uuid.to_string() + ", not " + expected.uuid.to_string());
  }
  if (header->key_epoch != expected.key_epoch) {
    return corrupt("key epoch " + std::to_string(header->key_epoch) + " but the manifest says " +
                   std::to_string(expected.key_epoch));
  }
  auto body = aes_gcm_open(instance_key, header->nonce, blob.first(kSealedHeaderSize), blob.subspan(kSealedHeaderSize));
  if (!body) return corrupt(body.error().message);
  // Authenticated from here on: the generation is the one we wrote.
  if (header->generation < expected.generation) {
    return corrupt("rollback: generation " + std::to_string(header->generation) + " is older than generation " +
                   std::to_string(expected.generation) + " recorded in the manifest");
  }
  // Not "> expected + 1": that wraps at the top of the range and refused the manifest's own
  // generation 2^64-1 (found by tests/fuzz/fuzz_state).
  if (header->generation - expected.generation > 1) {
    return corrupt("generation " + std::to_string(header->generation) + " is ahead of the manifest's " +
                   std::to_string(expected.generation) + " by more than one uncommitted write");
  }
  return OpenedBlob{*header, std::move(*body)};
}

}  // namespace vtpm::state
