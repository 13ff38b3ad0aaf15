#include "state/manifest.h"

#include <cstring>
#include <memory>
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
  w.u16(m.inline_blobs.empty() ? kManifestFormatVersion : kManifestInlineVersion);
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
  // After the MAC: each inline blob is bound by its entry's digest, so the
  // MAC stays as cheap as without them (they may be hundreds of KiB).
  if (!m.inline_blobs.empty()) {
    w.u32(static_cast<std::uint32_t>(m.inline_blobs.size()));
    for (const auto& [id, blob] : m.inline_blobs) {
      w.raw(id.bytes());
      w.u32(static_cast<std::uint32_t>(blob->size()));
      w.raw(*blob);
    }
  }
  return w.take();
}

namespace {

// Header fields needed to find the parts: version, entry count, and where
// the MAC is. Not authenticated yet: bounds only.
struct Layout {
  std::uint16_t version = 0;
  std::uint32_t count = 0;
  std::uint64_t mac_at = 0;  // header + entries
};

Result<Layout> read_layout(std::span<const std::uint8_t> bytes) {
  ByteReader r(bytes);
  r.raw(sizeof kMagic);
  Layout l;
  l.version = r.u16();
  r.u16();
  r.u64();
  if (l.version != 1) r.u64();
  l.count = r.u32();
  if (!r.ok()) return corrupt("truncated (" + std::to_string(bytes.size()) + " bytes)");
  l.mac_at = r.position() + std::uint64_t{l.count} * kEntrySize;
  if (l.mac_at + kDigestSize > bytes.size()) return corrupt("truncated (" + std::to_string(bytes.size()) + " bytes)");
  return l;
}

}  // namespace

Result<Manifest> decode_manifest(std::span<const std::uint8_t> bytes, const SecretKey& mac_key) {
  if (bytes.size() < kFixedSize + kDigestSize) return corrupt("truncated (" + std::to_string(bytes.size()) + " bytes)");
  auto layout = read_layout(bytes);
  if (!layout) return layout.error();
  const auto body = bytes.first(static_cast<std::size_t>(layout->mac_at));
  if (!equal_in_constant_time(hmac_sha256(mac_key, body), bytes.subspan(body.size(), kDigestSize))) {
    return corrupt("MAC mismatch (modified, truncated, or written under another master key)");
  }
  ByteReader r(body);
  if (std::memcmp(r.raw(sizeof kMagic).data(), kMagic, sizeof kMagic) != 0) return corrupt("bad magic");
  const auto version = r.u16();
  if (version != 1 && version != kManifestFormatVersion && version != kManifestInlineVersion) {
    return corrupt("unsupported format version " + std::to_string(version));
  }
  r.u16();
  Manifest m;
  m.counter = r.u64();
  m.sequence = version == 1 ? m.counter : r.u64();
  const std::uint32_t count = r.u32();
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
  if (!r.ok() || r.remaining() != 0) return corrupt("malformed");
  const auto rest = bytes.subspan(body.size() + kDigestSize);
  if (version != kManifestInlineVersion) {
    if (!rest.empty()) return corrupt("bytes after the MAC");
    return m;
  }
  ByteReader in(rest);
  const std::uint32_t inlined = in.u32();
  if (!in.ok() || inlined == 0 || inlined > count) return corrupt("inline blob count out of range");
  for (std::uint32_t i = 0; i < inlined; ++i) {
    Uuid::Bytes id{};
    const auto id_bytes = in.raw(id.size());
    const std::uint32_t size = in.u32();
    if (!in.ok() || size > kMaxInlineBlob || size > in.remaining()) return corrupt("inline blob " + std::to_string(i) + " truncated or too large");
    std::memcpy(id.data(), id_bytes.data(), id.size());
    const auto blob = in.raw(size);
    const Uuid owner(id);
    const auto entry = m.entries.find(owner);
    if (entry == m.entries.end()) return corrupt("inline blob without an entry: " + owner.to_string());
    // Sorted and unique, as written: the encoding stays canonical.
    if (!m.inline_blobs.empty() && !(m.inline_blobs.rbegin()->first < owner)) {
      return corrupt("inline blobs out of order at " + owner.to_string());
    }
    // A torn write of this part fails here, like a torn write of the
    // authenticated part fails its MAC: the manifest is not used.
    if (sha256(blob) != entry->second.blob_digest) return corrupt("inline blob of " + owner.to_string() + " does not match its digest");
    m.inline_blobs.emplace(owner, std::make_shared<const Bytes>(blob.begin(), blob.end()));
  }
  if (in.remaining() != 0) return corrupt("bytes after the inline blobs");
  return m;
}

Result<std::span<const std::uint8_t>> manifest_in_file(std::span<const std::uint8_t> file) {
  auto layout = read_layout(file);
  if (!layout) return layout.error();
  std::uint64_t length = layout->mac_at + kDigestSize;
  if (layout->version == kManifestInlineVersion) {
    // Walk the inline blobs' lengths (bounds only).
    ByteReader blobs(file.subspan(static_cast<std::size_t>(length)));
    const std::uint32_t inlined = blobs.u32();
    for (std::uint32_t i = 0; i < inlined && blobs.ok(); ++i) {
      blobs.raw(16);
      blobs.raw(blobs.u32());
    }
    if (!blobs.ok()) return corrupt("truncated inline blobs (" + std::to_string(file.size()) + " bytes)");
    length += blobs.position();
  }
  const FileExtent extent = record_in_file(file, length);
  if (extent.problem != nullptr) {
    return corrupt(std::string(extent.problem) + ": the file has " + std::to_string(file.size()) + " bytes, the manifest " +
                   std::to_string(length));
  }
  return extent.record;
}

}  // namespace vtpm::state
