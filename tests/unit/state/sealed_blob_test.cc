#include "state/sealed_blob.h"

#include <doctest/doctest.h>

#include <string>

namespace vtpm::state {
namespace {

const Uuid kId = Uuid::parse("6f1c2d3e-4a5b-4c6d-8e7f-0123456789ab").value();
const Uuid kOther = Uuid::parse("0a1b2c3d-4e5f-4a6b-8c7d-8e9fa0b1c2d3").value();

SecretKey key_of(std::uint8_t fill) { return SecretKey(Bytes(kKeySize, fill)); }

SealedHeader header(std::uint64_t generation = 7) {
  SealedHeader h;
  h.tpm = TpmVersion::k20;
  h.has_volatile = true;
  h.uuid = kId;
  h.generation = generation;
  h.key_epoch = 1;
  for (std::size_t i = 0; i < h.nonce.size(); ++i) h.nonce[i] = static_cast<std::uint8_t>(i * 7 + 1);
  return h;
}

Bytes body() {
  Bytes b(300);
  for (std::size_t i = 0; i < b.size(); ++i) b[i] = static_cast<std::uint8_t>(i * 13);
  return b;
}

bool contains(const std::string& s, const std::string& part) { return s.find(part) != std::string::npos; }

}  // namespace

TEST_CASE("sealed_blob: seal then open round-trips header and body") {
  const Bytes blob = seal_blob(key_of(1), header(), body());
  CHECK(blob.size() == kSealedHeaderSize + body().size() + kTagSize);
  auto opened = open_blob(key_of(1), blob, {kId, 7, 1});
  REQUIRE(opened.ok());
  CHECK(Bytes(opened->body.begin(), opened->body.end()) == body());
  CHECK(opened->header.uuid == kId);
  CHECK(opened->header.generation == 7);
  CHECK(opened->header.has_volatile);
  CHECK(opened->header.tpm == TpmVersion::k20);
  CHECK(opened->header.body_length == body().size());
}

TEST_CASE("sealed_blob: the body is not stored in clear") {
  const Bytes plain(64, 0x5a);
  const Bytes blob = seal_blob(key_of(1), header(), plain);
  const std::string text(blob.begin(), blob.end());
  CHECK_FALSE(contains(text, std::string(16, '\x5a')));
}

TEST_CASE("sealed_blob: every single-bit flip is rejected") {
  const Bytes blob = seal_blob(key_of(1), header(), body());
  for (std::size_t i = 0; i < blob.size(); ++i) {
    for (int bit = 0; bit < 8; ++bit) {
      Bytes damaged = blob;
      damaged[i] ^= static_cast<std::uint8_t>(1u << bit);
      auto opened = open_blob(key_of(1), damaged, {kId, 7, 1});
      if (opened.ok()) FAIL("flip of bit " << bit << " at offset " << i << " was accepted");
      CHECK(opened.error().code == ErrorCode::kCorrupt);
    }
  }
}

TEST_CASE("sealed_blob: every truncation and any extension is rejected") {
  const Bytes blob = seal_blob(key_of(1), header(), body());
  for (std::size_t n = 0; n < blob.size(); ++n) {
    auto opened = open_blob(key_of(1), std::span(blob).first(n), {kId, 7, 1});
    if (opened.ok()) FAIL("truncation to " << n << " bytes was accepted");
    CHECK(opened.error().code == ErrorCode::kCorrupt);
  }
  Bytes longer = blob;
  longer.push_back(0);
  CHECK_FALSE(open_blob(key_of(1), longer, {kId, 7, 1}).ok());
}

TEST_CASE("sealed_blob: a blob of another UUID is rejected, naming both") {
  SealedHeader h = header();
  h.uuid = kOther;
  const Bytes blob = seal_blob(key_of(1), h, body());
  auto opened = open_blob(key_of(1), blob, {kId, 7, 1});
  REQUIRE_FALSE(opened.ok());
  CHECK(contains(opened.error().message, "belongs to instance " + kOther.to_string()));
}

TEST_CASE("sealed_blob: the wrong key is rejected") {
  const Bytes blob = seal_blob(key_of(1), header(), body());
  auto opened = open_blob(key_of(2), blob, {kId, 7, 1});
  REQUIRE_FALSE(opened.ok());
  CHECK(contains(opened.error().message, "authentication failed"));
}

TEST_CASE("sealed_blob: an older generation than the manifest's is a rollback") {
  const Bytes blob = seal_blob(key_of(1), header(6), body());
  auto opened = open_blob(key_of(1), blob, {kId, 7, 1});
  REQUIRE_FALSE(opened.ok());
  CHECK(contains(opened.error().message, "rollback: generation 6 is older than generation 7"));
}

TEST_CASE("sealed_blob: one generation ahead is accepted (crash before commit), two is not") {
  CHECK(open_blob(key_of(1), seal_blob(key_of(1), header(8), body()), {kId, 7, 1}).ok());
  auto ahead = open_blob(key_of(1), seal_blob(key_of(1), header(9), body()), {kId, 7, 1});
  REQUIRE_FALSE(ahead.ok());
  CHECK(contains(ahead.error().message, "more than one uncommitted write"));
}

TEST_CASE("sealed_blob: a key epoch other than the manifest's is rejected") {
  auto opened = open_blob(key_of(1), seal_blob(key_of(1), header(), body()), {kId, 7, 2});
  REQUIRE_FALSE(opened.ok());
  CHECK(contains(opened.error().message, "key epoch"));
}

TEST_CASE("sealed_blob: header parse reports magic, version and length problems") {
  const Bytes blob = seal_blob(key_of(1), header(), body());
  Bytes bad_magic = blob;
  bad_magic[0] = 'X';
  CHECK(contains(read_sealed_header(bad_magic).error().message, "bad magic"));
  Bytes bad_version = blob;
  bad_version[9] = 2;
  CHECK(contains(read_sealed_header(bad_version).error().message, "unsupported format version 2"));
  CHECK(contains(read_sealed_header(std::span(blob).first(100)).error().message, "does not match the header"));
  CHECK(contains(read_sealed_header(std::span(blob).first(10)).error().message, "truncated (10 bytes)"));
}

TEST_CASE("sealed_blob: an empty body still authenticates") {
  const Bytes blob = seal_blob(key_of(3), header(), {});
  auto opened = open_blob(key_of(3), blob, {kId, 7, 1});
  REQUIRE(opened.ok());
  CHECK(opened->body.empty());
}

TEST_CASE("sealed_blob: the generation window holds at the top of the range (found by fuzz_state)") {
  const std::uint64_t top = ~std::uint64_t{0};
  const Bytes blob = seal_blob(key_of(1), header(top), body());
  CHECK(open_blob(key_of(1), blob, {kId, top, 1}).ok());
  CHECK(open_blob(key_of(1), blob, {kId, top - 1, 1}).ok());
  CHECK_FALSE(open_blob(key_of(1), blob, {kId, top - 2, 1}).ok());
  CHECK_FALSE(open_blob(key_of(1), seal_blob(key_of(1), header(0), body()), {kId, top, 1}).ok());
}

TEST_CASE("sealed_blob: in a slot file it is followed by zeros; anything else after it, or a cut, is refused") {
  const Bytes blob = seal_blob(key_of(1), header(), body());
  Bytes file = blob;
  file.resize(16384, 0);
  auto inside = sealed_blob_in_file(file);
  REQUIRE(inside.ok());
  CHECK(inside->size() == blob.size());
  CHECK(open_blob(key_of(1), *inside, {kId, 7, 1}).ok());
  CHECK(sealed_blob_in_file(blob).ok());
  Bytes appended = file;
  appended[blob.size() + 3] = 0x80;
  CHECK(contains(sealed_blob_in_file(appended).error().message, "non-zero bytes after the record"));
  CHECK(contains(sealed_blob_in_file(std::span(blob).first(blob.size() - 1)).error().message, "truncated"));
  CHECK(contains(sealed_blob_in_file(std::span(blob).first(10)).error().message, "truncated (10 bytes)"));
}

}  // namespace vtpm::state
