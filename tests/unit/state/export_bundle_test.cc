#include "state/export_bundle.h"

#include <doctest/doctest.h>

#include <string>

namespace vtpm::state {
namespace {

InstanceRecord sample() {
  InstanceRecord r;
  r.uuid = Uuid::parse("6f1c2d3e-4a5b-4c6d-8e7f-0123456789ab").value();
  r.version = TpmVersion::k12;
  r.created_unix = 1790000000;
  r.auto_startup = true;
  r.blobs.permanent = Bytes(300, 0x11);
  r.blobs.volatile_state = Bytes(40, 0x22);
  return r;
}

const Bytes kKey(32, 0x42);

bool contains(const std::string& s, const std::string& part) { return s.find(part) != std::string::npos; }

}  // namespace

TEST_CASE("export_bundle: round-trips a record under the transport key") {
  Drbg drbg;
  auto bundle = seal_export(sample(), kKey, drbg);
  REQUIRE(bundle.ok());
  auto record = open_export(*bundle, kKey);
  REQUIRE(record.ok());
  CHECK(record->uuid == sample().uuid);
  CHECK(record->version == TpmVersion::k12);
  CHECK(record->auto_startup);
  CHECK(record->blobs.permanent == sample().blobs.permanent);
  CHECK(record->blobs.volatile_state == sample().blobs.volatile_state);
}

TEST_CASE("export_bundle: two exports of the same record differ (fresh salt and nonce)") {
  Drbg drbg;
  CHECK(seal_export(sample(), kKey, drbg).value() != seal_export(sample(), kKey, drbg).value());
}

TEST_CASE("export_bundle: a wrong key, any bit flip and any truncation are rejected") {
  Drbg drbg;
  const Bytes bundle = seal_export(sample(), kKey, drbg).value();
  auto wrong = open_export(bundle, Bytes(32, 0x43));
  REQUIRE_FALSE(wrong.ok());
  CHECK(contains(wrong.error().message, "wrong transport key"));
  for (std::size_t i = 0; i < bundle.size(); ++i) {
    Bytes damaged = bundle;
    damaged[i] ^= static_cast<std::uint8_t>(1u << (i % 8));
    if (open_export(damaged, kKey).ok()) FAIL("flip at " << i << " accepted");
  }
  for (std::size_t n = 0; n < bundle.size(); n += 7) {
    if (open_export(std::span(bundle).first(n), kKey).ok()) FAIL("truncation to " << n << " accepted");
  }
}

TEST_CASE("export_bundle: a transport key shorter than 16 bytes is refused") {
  Drbg drbg;
  auto bundle = seal_export(sample(), Bytes(15, 1), drbg);
  REQUIRE_FALSE(bundle.ok());
  CHECK(bundle.error().code == ErrorCode::kInvalidArgument);
}

}  // namespace vtpm::state
