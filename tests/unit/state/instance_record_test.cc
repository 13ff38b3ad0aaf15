#include "state/instance_record.h"

#include <doctest/doctest.h>

#include <mbedtls/sha256.h>
#include <nlohmann/json.hpp>

#include <array>
#include <string>

namespace vtpm::state {
namespace {

using Bytes = std::vector<std::uint8_t>;

Bytes pattern(std::size_t n, std::uint8_t seed) {
  Bytes b(n);
  for (std::size_t i = 0; i < n; ++i) b[i] = static_cast<std::uint8_t>(seed ^ (i * 31));
  return b;
}

InstanceRecord sample_record() {
  InstanceRecord r;
  r.uuid = Uuid::parse("6f1c2d3e-4a5b-4c6d-8e7f-0123456789ab").value();
  r.version = TpmVersion::k12;
  r.created_unix = 1790000000;
  r.auto_startup = true;
  r.max_command_size = 8192;
  r.powered_on = false;
  r.max_state_size = 65536;
  r.max_connections = 3;
  r.blobs.permanent = pattern(200, 1);
  r.blobs.volatile_state = pattern(64, 2);
  r.blobs.save_state = pattern(16, 3);
  return r;
}

void check_same(const InstanceRecord& a, const InstanceRecord& b) {
  CHECK(a.uuid == b.uuid);
  CHECK(a.version == b.version);
  CHECK(a.created_unix == b.created_unix);
  CHECK(a.auto_startup == b.auto_startup);
  CHECK(a.max_command_size == b.max_command_size);
  CHECK(a.powered_on == b.powered_on);
  CHECK(a.max_state_size == b.max_state_size);
  CHECK(a.max_connections == b.max_connections);
  CHECK(a.blobs.permanent == b.blobs.permanent);
  CHECK(a.blobs.volatile_state == b.blobs.volatile_state);
  CHECK(a.blobs.save_state == b.blobs.save_state);
}

bool contains(const std::string& haystack, const std::string& needle) {
  return haystack.find(needle) != std::string::npos;
}

// Builds the body of a record the way encode_record does (magic, then four
// length-prefixed sections) but with arbitrary metadata and blobs, so the
// decoder's checks behind the checksum can be reached. Seal with with_digest.
Bytes forge(const std::string& meta, const Bytes& permanent, const Bytes& volatile_state = {},
            const Bytes& save_state = {}) {
  const std::string magic = "VTPMREC1";
  Bytes out(magic.begin(), magic.end());
  auto append_blob = [&out](const Bytes& b) {
    tpm::append_u32(out, static_cast<std::uint32_t>(b.size()));
    out.insert(out.end(), b.begin(), b.end());
  };
  append_blob(Bytes(meta.begin(), meta.end()));
  append_blob(permanent);
  append_blob(volatile_state);
  append_blob(save_state);
  return out;
}

Bytes with_digest(Bytes body) {
  std::array<unsigned char, 32> digest{};
  REQUIRE(mbedtls_sha256_ret(body.data(), body.size(), digest.data(), 0) == 0);
  body.insert(body.end(), digest.begin(), digest.end());
  return body;
}

std::string meta_text(const nlohmann::json& overrides, const char* drop = nullptr) {
  nlohmann::json meta = {{"uuid", "6f1c2d3e-4a5b-4c6d-8e7f-0123456789ab"},
                         {"tpm", "2.0"},
                         {"created", 1},
                         {"auto_startup", false},
                         {"max_command_size", 4096},
                         {"powered_on", true}};
  if (overrides.is_object()) meta.update(overrides);
  if (drop != nullptr) meta.erase(drop);
  return meta.dump();
}

}  // namespace

TEST_CASE("instance_record: a record with every field set round-trips") {
  const InstanceRecord r = sample_record();
  auto decoded = decode_record(encode_record(r));
  REQUIRE(decoded.ok());
  check_same(*decoded, r);
}

TEST_CASE("instance_record: encoded_record_size is the encoding's size, without encoding") {
  InstanceRecord r = sample_record();
  CHECK(encoded_record_size(r) == encode_record(r).size());
  r.blobs.volatile_state.clear();
  r.channels = R"({"swtpm":{"path":"/run/vtpm/x"}})";
  r.max_state_size = 0;
  CHECK(encoded_record_size(r) == encode_record(r).size());
}

TEST_CASE("instance_record: empty volatile and save state round-trip as empty") {
  InstanceRecord r = sample_record();
  r.version = TpmVersion::k20;
  r.powered_on = true;
  r.auto_startup = false;
  r.blobs.volatile_state.clear();
  r.blobs.save_state.clear();
  auto decoded = decode_record(encode_record(r));
  REQUIRE(decoded.ok());
  check_same(*decoded, r);
  CHECK(decoded->blobs.volatile_state.empty());
  CHECK(decoded->blobs.save_state.empty());
}

TEST_CASE("instance_record: negative creation time and large sizes round-trip") {
  InstanceRecord r = sample_record();
  r.created_unix = -12345;
  r.max_command_size = 0xffffffffu;
  auto decoded = decode_record(encode_record(r));
  REQUIRE(decoded.ok());
  check_same(*decoded, r);
}

TEST_CASE("instance_record: the encoding starts with the magic") {
  const Bytes encoded = encode_record(sample_record());
  REQUIRE(encoded.size() > 8);
  CHECK(std::string(encoded.begin(), encoded.begin() + 8) == "VTPMREC1");
}

TEST_CASE("instance_record: every single-byte flip is detected") {
  const Bytes encoded = encode_record(sample_record());
  for (std::size_t i = 0; i < encoded.size(); ++i) {
    for (std::uint8_t mask : {std::uint8_t{0x01}, std::uint8_t{0x80}, std::uint8_t{0xff}}) {
      Bytes damaged = encoded;
      damaged[i] ^= mask;
      auto decoded = decode_record(damaged);
      if (decoded.ok()) {
        FAIL("flip at offset " << i << " with mask " << int(mask) << " was accepted");
      }
      CHECK(decoded.error().code == ErrorCode::kCorrupt);
    }
  }
}

TEST_CASE("instance_record: every truncation is detected") {
  const Bytes encoded = encode_record(sample_record());
  for (std::size_t n = 0; n < encoded.size(); ++n) {
    auto decoded = decode_record(std::span(encoded).first(n));
    if (decoded.ok()) FAIL("truncation to " << n << " bytes was accepted");
    CHECK(decoded.error().code == ErrorCode::kCorrupt);
  }
}

TEST_CASE("instance_record: short input is reported as truncated") {
  const Bytes encoded = encode_record(sample_record());
  auto decoded = decode_record(std::span(encoded).first(20));
  REQUIRE_FALSE(decoded.ok());
  CHECK(contains(decoded.error().message, "truncated (20 bytes)"));
}

TEST_CASE("instance_record: appended bytes are detected") {
  Bytes encoded = encode_record(sample_record());
  encoded.push_back(0);
  auto decoded = decode_record(encoded);
  REQUIRE_FALSE(decoded.ok());
  CHECK(decoded.error().code == ErrorCode::kCorrupt);
}

TEST_CASE("instance_record: wrong magic is reported") {
  Bytes encoded = encode_record(sample_record());
  encoded[7] = '2';
  auto decoded = decode_record(encoded);
  REQUIRE_FALSE(decoded.ok());
  CHECK(contains(decoded.error().message, "bad magic"));
}

TEST_CASE("instance_record: modified content is a checksum mismatch") {
  Bytes encoded = encode_record(sample_record());
  encoded[encoded.size() - 40] ^= 1;
  auto decoded = decode_record(encoded);
  REQUIRE_FALSE(decoded.ok());
  CHECK(contains(decoded.error().message, "checksum mismatch"));
}

TEST_CASE("instance_record: garbage is rejected") {
  for (const Bytes& in : {Bytes{}, Bytes(40, 0), Bytes(100, 0xff), pattern(500, 7)}) {
    CAPTURE(in.size());
    auto decoded = decode_record(in);
    REQUIRE_FALSE(decoded.ok());
    CHECK(decoded.error().code == ErrorCode::kCorrupt);
  }
}

TEST_CASE("instance_record: forged records decode when well-formed (sanity check of the forger)") {
  auto decoded = decode_record(with_digest(forge(meta_text({}), {1, 2, 3})));
  REQUIRE(decoded.ok());
  CHECK(decoded->blobs.permanent == Bytes{1, 2, 3});
}

TEST_CASE("instance_record: a record without permanent state is rejected") {
  auto decoded = decode_record(with_digest(forge(meta_text({}), {})));
  REQUIRE_FALSE(decoded.ok());
  CHECK(contains(decoded.error().message, "no permanent state"));
}

TEST_CASE("instance_record: metadata that is not a JSON object is rejected") {
  for (const std::string meta : {"", "[]", "{", "\"x\""}) {
    CAPTURE(meta);
    auto decoded = decode_record(with_digest(forge(meta, {1})));
    REQUIRE_FALSE(decoded.ok());
    CHECK(contains(decoded.error().message, "metadata is not a JSON object"));
  }
}

TEST_CASE("instance_record: missing or mistyped metadata fields are rejected") {
  for (const std::string field : {"uuid", "tpm", "created", "auto_startup", "max_command_size", "powered_on"}) {
    CAPTURE(field);
    auto missing = decode_record(with_digest(forge(meta_text({}, field.c_str()), {1})));
    REQUIRE_FALSE(missing.ok());
    CHECK(contains(missing.error().message, "metadata field missing or mistyped"));
  }
  auto mistyped = decode_record(with_digest(forge(meta_text({{"powered_on", "yes"}}), {1})));
  REQUIRE_FALSE(mistyped.ok());
  CHECK(contains(mistyped.error().message, "mistyped"));
}

TEST_CASE("instance_record: an invalid UUID or TPM version in the metadata is rejected") {
  auto bad_uuid = decode_record(with_digest(forge(meta_text({{"uuid", "not-a-uuid"}}), {1})));
  REQUIRE_FALSE(bad_uuid.ok());
  CHECK(contains(bad_uuid.error().message, "invalid UUID"));
  auto nil_uuid = decode_record(with_digest(forge(meta_text({{"uuid", "00000000-0000-0000-0000-000000000000"}}), {1})));
  REQUIRE_FALSE(nil_uuid.ok());
  auto bad_version = decode_record(with_digest(forge(meta_text({{"tpm", "3.0"}}), {1})));
  REQUIRE_FALSE(bad_version.ok());
  CHECK(contains(bad_version.error().message, "unknown TPM version '3.0'"));
}

TEST_CASE("instance_record: blob lengths pointing past the end are rejected") {
  Bytes body = forge(meta_text({}), {1, 2, 3});
  // The last blob (save state, empty) has its u32 length at the very end.
  body[body.size() - 1] = 5;
  auto decoded = decode_record(with_digest(body));
  REQUIRE_FALSE(decoded.ok());
  CHECK(contains(decoded.error().message, "blob length out of range"));
}

TEST_CASE("instance_record: bytes after the last blob are rejected") {
  Bytes body = forge(meta_text({}), {1, 2, 3});
  body.push_back(0);
  auto decoded = decode_record(with_digest(body));
  REQUIRE_FALSE(decoded.ok());
  CHECK(contains(decoded.error().message, "trailing bytes"));
}

TEST_CASE("instance_record: a missing blob length is rejected") {
  Bytes body = forge(meta_text({}), {1, 2, 3});
  body.erase(body.end() - 2, body.end());  // cut into the last u32 length
  auto decoded = decode_record(with_digest(body));
  REQUIRE_FALSE(decoded.ok());
  CHECK(contains(decoded.error().message, "truncated blob length"));
}

TEST_CASE("instance_record: numeric metadata must be an integer in the field's range (found by fuzz_state)") {
  // Each was a plain cast in nlohmann's get<T>(): undefined behaviour or a silent wrap.
  for (const char* bad : {R"({"created": 1e30})", R"({"created": 1.5})", R"({"created": 9223372036854775808})",
                          R"({"max_command_size": -1})", R"({"max_command_size": 4294967296})",
                          R"({"max_command_size": 1e20})", R"({"max_command_size": "4096"})",
                          R"({"max_queued": 1e20})", R"({"max_rate": -1})", R"({"max_rate": null})"}) {
    CAPTURE(bad);
    auto decoded = decode_record(with_digest(forge(meta_text(nlohmann::json::parse(bad)), {1})));
    REQUIRE_FALSE(decoded.ok());
    CHECK(contains(decoded.error().message, "metadata field"));
  }
  auto edge = decode_record(with_digest(forge(
      meta_text(nlohmann::json::parse(R"({"created": -9223372036854775808, "max_command_size": 4294967295})")), {1})));
  REQUIRE(edge.ok());
  CHECK(edge->created_unix == INT64_MIN);
  CHECK(edge->max_command_size == 0xffffffffu);
}

}  // namespace vtpm::state

namespace vtpm::state {

TEST_CASE("instance_record: provisioning summary and event log round-trip; older records have neither") {
  InstanceRecord r = sample_record();
  r.provisioning = R"({"ek":[{"type":"rsa"}],"pcr_banks":["sha256"]})";
  r.event_log = {1, 2, 3, 0xff};
  r.guest_started = true;
  auto back = decode_record(encode_record(r));
  REQUIRE(back.ok());
  CHECK(back->provisioning == r.provisioning);
  CHECK(back->event_log == r.event_log);
  CHECK(back->guest_started);
  const InstanceRecord plain = sample_record();
  const Bytes encoded = encode_record(plain);
  const std::string text(encoded.begin(), encoded.end());
  CHECK(text.find("provisioning") == std::string::npos);
  CHECK(text.find("event_log") == std::string::npos);
  auto old = decode_record(encoded);
  REQUIRE(old.ok());
  CHECK(old->provisioning.empty());
  CHECK(old->event_log.empty());
  CHECK_FALSE(old->guest_started);
}

}  // namespace vtpm::state

namespace vtpm::state {

TEST_CASE("instance_record: the vchan setting round-trips; records without one decode as off") {
  InstanceRecord r = sample_record();
  r.vchan = R"({"domid":7,"path":"/local/domain/0/data/vtpmd/x"})";
  auto back = decode_record(encode_record(r));
  REQUIRE(back.ok());
  CHECK(back->vchan == r.vchan);
  CHECK(encoded_record_size(r) == encode_record(r).size());
  const Bytes plain = encode_record(sample_record());
  CHECK(std::string(plain.begin(), plain.end()).find("vchan") == std::string::npos);
  auto old = decode_record(plain);
  REQUIRE(old.ok());
  CHECK(old->vchan.empty());
}

}  // namespace vtpm::state
