// Fuzz target: the on-disk and export formats (state/): sealed blobs, the manifest, instance
// records and export bundles. The state directory and an imported bundle are outside bytes.
// Input: u8 mode (modulo 10), then that mode's input. Raw modes hand the bytes to the decoder as
// they are (they fail at the MAC/GCM check but fuzz everything before it); structure-aware modes
// seal or MAC the input with a fixed key first, with the project's own encoders, so the parsing
// behind the authentication is fuzzed too:
//   0 sealed blob, raw: read_sealed_header + open_blob; sealed_blob_in_file on the same bytes
//   1 sealed blob, sealed here: flags, UUID, generation, epoch, nonce, then the plaintext body
//     (an instance record; flags bit 2: without its SHA-256, appended here); seal_blob ->
//     open_blob (fresh, stale, wrong UUID/epoch, tampered) -> decode_record
//   2 manifest, raw: decode_manifest; manifest_in_file on the same bytes
//   3 manifest, MAC'd here: u8 padding/16, then the manifest bytes without their MAC; also found
//     in a file with that many zeros after it
//   4 manifest from an entry list: u64 counter, then 96-byte entries -> encode_manifest -> decode;
//     counter bit 0: every other entry gets an inline blob (version 3)
//   5 instance record: decode_record
//   6 export bundle, raw: open_export
//   7 export bundle, sealed here: salt, nonce, then the plaintext record; also seal_export
//   8 instance record without its SHA-256 (appended here): decode_record past its self-check
//   9 as 7, the record without its SHA-256
// Invariants: accepted data has the documented sizes; re-encoding what was decoded decodes to the
// same value; the generation window is exactly {expected, expected + 1}; any tampering with an
// authenticated file is refused; the export path accepts exactly what decode_record accepts.
#include <cstdint>
#include <cstring>
#include <memory>
#include <utility>

#include "state/crypto.h"
#include "state/export_bundle.h"
#include "state/instance_record.h"
#include "state/key_hierarchy.h"
#include "state/manifest.h"
#include "state/sealed_blob.h"
#include "tests/fuzz/fuzz_util.h"

using namespace vtpm;
using namespace vtpm::state;

namespace {

const SecretKey& fixed_key() {
  static const SecretKey key(Bytes(kKeySize, 0x42));
  return key;
}
const Bytes& transport_key() {
  static const Bytes key(24, 0x17);
  return key;
}

// An instance record ends with a SHA-256 of everything before it; random bytes never match it.
Bytes with_digest(std::span<const std::uint8_t> record) {
  Bytes out(record.begin(), record.end());
  const Digest digest = sha256(record);
  out.insert(out.end(), digest.begin(), digest.end());
  return out;
}

bool same_record(const InstanceRecord& a, const InstanceRecord& b) {
  return a.uuid == b.uuid && a.version == b.version && a.created_unix == b.created_unix &&
         a.auto_startup == b.auto_startup && a.max_command_size == b.max_command_size &&
         a.powered_on == b.powered_on && a.channels == b.channels && a.max_queued == b.max_queued &&
         a.max_rate == b.max_rate && a.max_state_size == b.max_state_size &&
         a.max_connections == b.max_connections && a.blobs.permanent == b.blobs.permanent &&
         a.blobs.volatile_state == b.blobs.volatile_state && a.blobs.save_state == b.blobs.save_state;
}

void check_record(std::span<const std::uint8_t> bytes, const Result<InstanceRecord>& record) {
  if (!record) {
    FUZZ_CHECK(record.error().code == ErrorCode::kCorrupt && !record.error().message.empty());
    return;
  }
  FUZZ_CHECK(bytes.size() >= 8 + 4 * 4 + 32 && std::memcmp(bytes.data(), "VTPMREC1", 8) == 0);
  FUZZ_CHECK(!record->uuid.is_nil() && !record->blobs.permanent.empty());
  const Bytes encoded = encode_record(*record);
  auto again = decode_record(encoded);
  FUZZ_CHECK(again.ok() && same_record(*again, *record));
  FUZZ_CHECK(encode_record(*again) == encoded);
}

bool same_manifest(const Manifest& a, const Manifest& b) {
  if (a.counter != b.counter || a.sequence != b.sequence || a.entries.size() != b.entries.size()) return false;
  for (auto i = a.entries.begin(), j = b.entries.begin(); i != a.entries.end(); ++i, ++j) {
    if (i->first != j->first || i->second.generation != j->second.generation ||
        i->second.key_epoch != j->second.key_epoch || i->second.quarantined != j->second.quarantined ||
        i->second.key_salt != j->second.key_salt || i->second.blob_digest != j->second.blob_digest) {
      return false;
    }
  }
  if (a.inline_blobs.size() != b.inline_blobs.size()) return false;
  for (auto i = a.inline_blobs.begin(), j = b.inline_blobs.begin(); i != a.inline_blobs.end(); ++i, ++j) {
    if (i->first != j->first || *i->second != *j->second) return false;
  }
  return true;
}

void check_manifest(std::span<const std::uint8_t> bytes, const Result<Manifest>& m) {
  if (!m) {
    FUZZ_CHECK(m.error().code == ErrorCode::kCorrupt);
    return;
  }
  // Version 1 (no sequence number) is read and rewritten as the current one.
  const std::size_t fixed = (bytes[8] == 0 && bytes[9] == 1) ? 24 : 32;
  // Version 3 carries inline blobs after the MAC, each matching its entry's digest.
  std::size_t inline_size = 0;
  for (const auto& [id, blob] : m->inline_blobs) {
    FUZZ_CHECK(m->entries.contains(id) && sha256(*blob) == m->entries.at(id).blob_digest && blob->size() <= kMaxInlineBlob);
    inline_size += 16 + 4 + blob->size();
  }
  if (!m->inline_blobs.empty()) inline_size += 4;
  FUZZ_CHECK((bytes[9] == 3) == !m->inline_blobs.empty());
  FUZZ_CHECK(bytes.size() == fixed + 96 * m->entries.size() + 32 + inline_size &&
             std::memcmp(bytes.data(), "VTPMMANI", 8) == 0);
  if (fixed == 24) FUZZ_CHECK(m->sequence == m->counter);
  const Bytes encoded = encode_manifest(*m, fixed_key());
  FUZZ_CHECK(encoded.size() == 32 + 96 * m->entries.size() + 32 + inline_size);
  auto again = decode_manifest(encoded, fixed_key());
  FUZZ_CHECK(again.ok() && same_manifest(*again, *m));
  FUZZ_CHECK(encode_manifest(*again, fixed_key()) == encoded);
}

void sealed_blob_raw(std::span<const std::uint8_t> blob) {
  auto header = read_sealed_header(blob);
  if (header) {
    FUZZ_CHECK(header->body_length <= kMaxSealedBody);
    FUZZ_CHECK(blob.size() == kSealedHeaderSize + header->body_length + kTagSize);
  }
  const BlobExpectation expected = header ? BlobExpectation{header->uuid, header->generation, header->key_epoch}
                                          : BlobExpectation{};
  auto opened = open_blob(fixed_key(), blob, expected);
  if (opened) {
    FUZZ_CHECK(header.ok() && opened->body.size() == header->body_length);
    check_record(opened->body, decode_record(opened->body));
  } else {
    FUZZ_CHECK(opened.error().code == ErrorCode::kCorrupt);
  }
}

void sealed_blob_structured(fuzz::Input& in) {
  const std::uint8_t flags = in.u8();
  SealedHeader h;
  h.tpm = (flags & 1) ? TpmVersion::k12 : TpmVersion::k20;
  h.has_volatile = (flags & 2) != 0;
  Uuid::Bytes id{};
  const auto id_bytes = in.bytes(id.size());
  std::copy(id_bytes.begin(), id_bytes.end(), id.begin());
  h.uuid = Uuid(id);
  h.generation = in.u64();
  h.key_epoch = in.u32();
  const auto nonce = in.bytes(h.nonce.size());
  std::copy(nonce.begin(), nonce.end(), h.nonce.begin());
  const std::uint64_t back = in.u8() % 4;  // how far the manifest's generation lags behind
  const std::uint32_t tamper_at = in.u32();
  const auto rest = in.rest();
  const Bytes body = (flags & 4) ? with_digest(rest) : Bytes(rest.begin(), rest.end());

  const Bytes blob = seal_blob(fixed_key(), h, body);
  FUZZ_CHECK(blob.size() == kSealedHeaderSize + body.size() + kTagSize);
  auto header = read_sealed_header(blob);
  FUZZ_CHECK(header.ok() && header->tpm == h.tpm && header->has_volatile == h.has_volatile &&
             header->uuid == h.uuid && header->generation == h.generation && header->key_epoch == h.key_epoch &&
             header->nonce == h.nonce && header->body_length == body.size());

  // The manifest may be at the blob's generation or one behind (an uncommitted write); any other
  // distance is a rollback or a blob from the future.
  const std::uint64_t expected_generation = h.generation - back;  // wraps like any u64
  auto opened = open_blob(fixed_key(), blob, {h.uuid, expected_generation, h.key_epoch});
  const bool in_window = back <= 1 && h.generation >= back;
  FUZZ_CHECK(opened.ok() == in_window);
  if (opened) {
    FUZZ_CHECK(opened->body.size() == body.size() && std::equal(body.begin(), body.end(), opened->body.begin()));
  } else {
    FUZZ_CHECK(opened.error().code == ErrorCode::kCorrupt);
  }

  Uuid::Bytes other = id;
  other[15] ^= 1;
  FUZZ_CHECK(!open_blob(fixed_key(), blob, {Uuid(other), h.generation, h.key_epoch}).ok());
  FUZZ_CHECK(!open_blob(fixed_key(), blob, {h.uuid, h.generation, h.key_epoch + 1}).ok());
  Bytes damaged = blob;
  damaged[tamper_at % damaged.size()] ^= static_cast<std::uint8_t>(1u << (tamper_at >> 29));
  FUZZ_CHECK(!open_blob(fixed_key(), damaged, {h.uuid, h.generation, h.key_epoch}).ok());
  FUZZ_CHECK(!open_blob(fixed_key(), std::span(blob).first(blob.size() - 1 - tamper_at % blob.size()),
                        {h.uuid, h.generation, h.key_epoch})
                  .ok());

  // Behind the authentication: what StateStore does with the body.
  if (opened) check_record(opened->body, decode_record(opened->body));
}

void manifest_from_entries(fuzz::Input& in) {
  Manifest m;
  m.counter = in.u64();
  while (in.remaining() >= 96) {
    Uuid::Bytes id{};
    const auto id_bytes = in.bytes(id.size());
    std::copy(id_bytes.begin(), id_bytes.end(), id.begin());
    ManifestEntry e;
    e.generation = in.u64();
    e.key_epoch = in.u32();
    e.quarantined = (in.u32() & 1) != 0;
    const auto salt = in.bytes(e.key_salt.size());
    std::copy(salt.begin(), salt.end(), e.key_salt.begin());
    const auto digest = in.bytes(e.blob_digest.size());
    std::copy(digest.begin(), digest.end(), e.blob_digest.begin());
    m.entries[Uuid(id)] = e;
  }
  // Counter bit 0: every other entry carries an inline blob (its salt,
  // repeated), with the entry's digest made to match.
  if ((m.counter & 1) != 0) {
    bool take = true;
    for (auto& [id, e] : m.entries) {
      if (std::exchange(take, !take)) {
        Bytes blob;
        for (std::size_t i = 0; i < e.generation % 300; ++i) blob.push_back(e.key_salt[i % e.key_salt.size()]);
        e.blob_digest = sha256(blob);
        m.inline_blobs[id] = std::make_shared<const Bytes>(std::move(blob));
      }
    }
  }
  const Bytes encoded = encode_manifest(m, fixed_key());
  auto decoded = decode_manifest(encoded, fixed_key());
  FUZZ_CHECK(decoded.ok() && same_manifest(*decoded, m));
  check_manifest(encoded, decoded);
  // Any change to any byte fails the MAC, or (after it) an inline blob's digest, order or size.
  const std::uint64_t at = m.counter;
  Bytes damaged = encoded;
  damaged[at % damaged.size()] ^= static_cast<std::uint8_t>(1u << ((at >> 32) % 8));
  FUZZ_CHECK(!decode_manifest(damaged, fixed_key()).ok());
}

// A file holds its record and then zeros (file_io.h): the extent found is a
// prefix with only zeros after it, and it never reads past the file.
void check_extent(std::span<const std::uint8_t> file, const Result<std::span<const std::uint8_t>>& extent) {
  if (!extent) {
    FUZZ_CHECK(extent.error().code == ErrorCode::kCorrupt);
    return;
  }
  FUZZ_CHECK(extent->data() == file.data() && extent->size() <= file.size());
  for (std::size_t i = extent->size(); i < file.size(); ++i) FUZZ_CHECK(file[i] == 0);
}

void manifest_maced(std::span<const std::uint8_t> body, std::size_t padding) {
  Bytes bytes(body.begin(), body.end());
  const Digest mac = hmac_sha256(fixed_key(), body);
  bytes.insert(bytes.end(), mac.begin(), mac.end());
  auto decoded = decode_manifest(bytes, fixed_key());
  check_manifest(bytes, decoded);
  // In a file, with zeros after it: found again exactly when it decoded.
  Bytes file = bytes;
  file.resize(bytes.size() + padding, 0);
  auto extent = manifest_in_file(file);
  check_extent(file, extent);
  if (decoded) FUZZ_CHECK(extent.ok() && extent->size() == bytes.size());
}

void export_raw(std::span<const std::uint8_t> bundle) {
  auto record = open_export(bundle, transport_key());
  if (!record) {
    FUZZ_CHECK(record.error().code == ErrorCode::kCorrupt);
    return;
  }
  // Only a bundle sealed under the key gets here; what it yields must still be sane.
  FUZZ_CHECK(!record->uuid.is_nil() && !record->blobs.permanent.empty());
  const Bytes encoded = encode_record(*record);
  check_record(encoded, decode_record(encoded));
}

void export_structured(fuzz::Input& in, bool add_digest) {
  const auto salt = in.bytes(32);
  Nonce nonce{};
  const auto nonce_bytes = in.bytes(nonce.size());
  std::copy(nonce_bytes.begin(), nonce_bytes.end(), nonce.begin());
  const auto rest = in.rest();
  const Bytes body = add_digest ? with_digest(rest) : Bytes(rest.begin(), rest.end());
  Bytes salt_full(32, 0);
  std::copy(salt.begin(), salt.end(), salt_full.begin());

  // docs/state-format.md, "Export bundle", built with the project's primitives.
  ByteWriter w;
  w.raw(as_bytes("VTPMXPRT"));
  w.u16(1);
  w.u16(0);
  w.raw(salt_full);
  w.raw(nonce);
  w.u32(static_cast<std::uint32_t>(body.size()));
  const Bytes sealed = aes_gcm_seal(derive_transport_key(transport_key(), salt_full), nonce, w.bytes(), body);
  w.raw(sealed);
  const Bytes bundle = w.take();

  auto opened = open_export(bundle, transport_key());
  auto direct = decode_record(body);
  FUZZ_CHECK(opened.ok() == direct.ok());
  if (!opened) return;
  FUZZ_CHECK(same_record(*opened, *direct));
  check_record(body, direct);

  // And through seal_export (random salt and nonce).
  static Drbg drbg;
  auto exported = seal_export(*opened, transport_key(), drbg);
  FUZZ_CHECK(exported.ok());
  auto reopened = open_export(*exported, transport_key());
  FUZZ_CHECK(reopened.ok() && same_record(*reopened, *opened));
  const Bytes short_key(kMinTransportKey - 1, 0x17);
  FUZZ_CHECK(!open_export(*exported, short_key).ok());
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  fuzz::Input in(data, size);
  switch (in.u8() % 10) {
    case 0: {
      const auto bytes = in.rest();
      sealed_blob_raw(bytes);
      check_extent(bytes, sealed_blob_in_file(bytes));
      break;
    }
    case 1: sealed_blob_structured(in); break;
    case 2: {
      const auto bytes = in.rest();
      check_manifest(bytes, decode_manifest(bytes, fixed_key()));
      check_extent(bytes, manifest_in_file(bytes));
      break;
    }
    case 3: {
      const std::size_t padding = in.u8() * 16u;
      manifest_maced(in.rest(), padding);
      break;
    }
    case 4: manifest_from_entries(in); break;
    case 5: {
      const auto bytes = in.rest();
      check_record(bytes, decode_record(bytes));
      break;
    }
    case 6: export_raw(in.rest()); break;
    case 7: export_structured(in, false); break;
    case 8: {
      const Bytes bytes = with_digest(in.rest());
      check_record(bytes, decode_record(bytes));
      break;
    }
    case 9: export_structured(in, true); break;
  }
  return 0;
}
