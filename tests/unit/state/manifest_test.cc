#include "state/manifest.h"

#include <doctest/doctest.h>

#include <string>

namespace vtpm::state {
namespace {

SecretKey key_of(std::uint8_t fill) { return SecretKey(Bytes(kKeySize, fill)); }

Uuid uuid_of(std::uint8_t last) {
  Uuid::Bytes b{};
  b[0] = 0x22;
  b[6] = 0x40;
  b[8] = 0x80;
  b[15] = last;
  return Uuid(b);
}

Manifest sample() {
  Manifest m;
  m.counter = 42;
  for (std::uint8_t i = 1; i <= 3; ++i) {
    ManifestEntry e;
    e.generation = 100 + i;
    e.key_epoch = 1;
    e.quarantined = i == 2;
    e.key_salt.fill(i);
    e.blob_digest.fill(static_cast<std::uint8_t>(0xf0 + i));
    m.entries[uuid_of(i)] = e;
  }
  return m;
}

bool contains(const std::string& s, const std::string& part) { return s.find(part) != std::string::npos; }

}  // namespace

TEST_CASE("manifest: round-trips every field") {
  const Manifest m = sample();
  auto decoded = decode_manifest(encode_manifest(m, key_of(1)), key_of(1));
  REQUIRE(decoded.ok());
  CHECK(decoded->counter == 42);
  REQUIRE(decoded->entries.size() == 3);
  for (const auto& [id, e] : m.entries) {
    const ManifestEntry& d = decoded->entries.at(id);
    CHECK(d.generation == e.generation);
    CHECK(d.key_epoch == e.key_epoch);
    CHECK(d.quarantined == e.quarantined);
    CHECK(d.key_salt == e.key_salt);
    CHECK(d.blob_digest == e.blob_digest);
  }
}

TEST_CASE("manifest: an empty manifest round-trips") {
  Manifest m;
  m.counter = 1;
  auto decoded = decode_manifest(encode_manifest(m, key_of(1)), key_of(1));
  REQUIRE(decoded.ok());
  CHECK(decoded->entries.empty());
}

TEST_CASE("manifest: every single-bit flip and every truncation is rejected") {
  const Bytes bytes = encode_manifest(sample(), key_of(1));
  for (std::size_t i = 0; i < bytes.size(); ++i) {
    for (int bit = 0; bit < 8; ++bit) {
      Bytes damaged = bytes;
      damaged[i] ^= static_cast<std::uint8_t>(1u << bit);
      if (decode_manifest(damaged, key_of(1)).ok()) FAIL("flip of bit " << bit << " at " << i << " accepted");
    }
  }
  for (std::size_t n = 0; n < bytes.size(); ++n) {
    if (decode_manifest(std::span(bytes).first(n), key_of(1)).ok()) FAIL("truncation to " << n << " accepted");
  }
}

TEST_CASE("manifest: a manifest MAC'd under another master key is rejected") {
  auto decoded = decode_manifest(encode_manifest(sample(), key_of(1)), key_of(2));
  REQUIRE_FALSE(decoded.ok());
  CHECK(contains(decoded.error().message, "MAC mismatch"));
}

TEST_CASE("manifest: the encoding is canonical (entries sorted by UUID)") {
  Manifest a = sample();
  Manifest b;
  b.counter = a.counter;
  for (auto it = a.entries.rbegin(); it != a.entries.rend(); ++it) b.entries.insert(*it);
  CHECK(encode_manifest(a, key_of(1)) == encode_manifest(b, key_of(1)));
}

TEST_CASE("manifest: in a file it is followed by zeros; anything else after it, or a cut, is refused") {
  const Bytes bytes = encode_manifest(sample(), key_of(1));
  Bytes file = bytes;
  file.resize(4096, 0);
  auto inside = manifest_in_file(file);
  REQUIRE(inside.ok());
  CHECK(inside->size() == bytes.size());
  CHECK(decode_manifest(*inside, key_of(1)).ok());
  CHECK(manifest_in_file(bytes).ok());  // no padding at all
  for (std::size_t at : {bytes.size(), std::size_t{4095}}) {
    Bytes appended = file;
    appended[at] = 1;
    REQUIRE_FALSE(manifest_in_file(appended).ok());
    CHECK(contains(manifest_in_file(appended).error().message, "non-zero bytes after the record"));
  }
  REQUIRE_FALSE(manifest_in_file(std::span(bytes).first(bytes.size() - 1)).ok());
  CHECK(contains(manifest_in_file(std::span(bytes).first(bytes.size() - 1)).error().message, "truncated"));
  CHECK_FALSE(manifest_in_file(std::span(bytes).first(20)).ok());
  // An entry count raised in the (unauthenticated) header cannot read past the file.
  Bytes more = file;
  more[28] = 0xff;
  CHECK_FALSE(manifest_in_file(more).ok());
}

}  // namespace vtpm::state
