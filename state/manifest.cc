#include "state/manifest.h"

#include <cstring>
#include <string>

namespace vtpm::state {
namespace {

constexpr char kMagic[8] = {'V', 'T', 'P', 'M', 'M', 'A', 'N', 'I'};
constexpr std::uint32_t kFlagQuarantined = 0x1;
constexpr std::size_t kEntrySize = 16 + 8 + 4 + 4 + 32 + 32;
constexpr std::size_t kFixedSize = 8 + 2 + 2 + 8 + 4;  // version 1; version 2 adds 8

Error corrupt(const std::string& what) { return make_error(ErrorCode::kCorrupt, "manifest: " + what); }

}  // namespace

Bytes encode_manifest(const Manifest& m, const SecretKey& mac_key) {
  ByteWriter w;
  w.raw(std::span(reinterpret_cast<const std::uint8_t*>(kMagic), sizeof kMagic));
  w.u16(kManifestFormatVersion);
  w.u16(0);  // reserved
  w.u64(m.counter);
  w.u64(m.sequence);
  w.u32(static_cast<std::uint32_t>(m.entries.size()));
  for (const auto& [id, e] : m.entries) {  // std::map: sorted, so the encoding is canonical
    w.raw(id.bytes());
    w.u64(e.generation);
    w.u32(e.key_epoch);
    w.u32(e.quarantined ? kFlagQuarantined : 0);
    w.raw(e.key_salt);
    w.raw(e.blob_digest);
  }
  const Digest mac = hmac_sha256(mac_key, w.bytes());
  w.raw(mac);
  return w.take();
}

Result<Manifest> decode_manifest(std::span<const std::uint8_t> bytes, const SecretKey& mac_key) {
  if (bytes.size() < kFixedSize + kDigestSize) return corrupt("truncated (" + std::to_string(bytes.size()) + " bytes)");
  const auto body = bytes.first(bytes.size() - kDigestSize);
  if (!equal_in_constant_time(hmac_sha256(mac_key, body), bytes.subspan(body.size()))) {
    return corrupt("MAC mismatch (modified, truncated, or written under another master key)");
  }
  ByteReader r(body);
  if (std::memcmp(r.raw(sizeof kMagic).data(), kMagic, sizeof kMagic) != 0) return corrupt("bad magic");
  const auto version = r.u16();
  if (version != 1 && version != kManifestFormatVersion) return corrupt("unsupported format version " + std::to_string(version));
  r.u16();
  Manifest m;
  m.counter = r.u64();
  m.sequence = version == 1 ? m.counter : r.u64();
  const std::uint32_t count = r.u32();
  if (r.remaining() != static_cast<std::size_t>(count) * kEntrySize) return corrupt("entry count does not match the size");
  for (std::uint32_t i = 0; i < count; ++i) {
    Uuid::Bytes id{};
    std::memcpy(id.data(), r.raw(id.size()).data(), id.size());
    ManifestEntry e;
    e.generation = r.u64();
    e.key_epoch = r.u32();
    const std::uint32_t flags = r.u32();
    if ((flags & ~kFlagQuarantined) != 0) return corrupt("unknown entry flags");
    e.quarantined = (flags & kFlagQuarantined) != 0;
    std::memcpy(e.key_salt.data(), r.raw(e.key_salt.size()).data(), e.key_salt.size());
    std::memcpy(e.blob_digest.data(), r.raw(e.blob_digest.size()).data(), e.blob_digest.size());
    if (!m.entries.emplace(Uuid(id), e).second) return corrupt("duplicate entry " + Uuid(id).to_string());
  }
  if (!r.ok()) return corrupt("malformed");
  return m;
}

}  // namespace vtpm::state
