#include "proto/swtpm_ctrl.h"

#include <doctest/doctest.h>

#include "proto/tpm_packet.h"

namespace vtpm::swtpm {
namespace {

Bytes request(std::uint32_t code, Bytes body = {}) {
  Bytes out;
  tpm::append_u32(out, code);
  out.insert(out.end(), body.begin(), body.end());
  return out;
}

}  // namespace

TEST_CASE("swtpm_ctrl: a request is incomplete until its code and minimum body arrived") {
  CHECK(*request_length(Bytes{0, 0, 0}) == 0);
  CHECK(*request_length(request(0x02)) == 0);            // INIT needs its flags
  CHECK(*request_length(request(0x02, {0, 0, 0})) == 0);
  CHECK(*request_length(request(0x02, {0, 0, 0, 1})) == 8);
  CHECK(*request_length(request(0x01)) == 4);
  CHECK(*request_length(request(0x0c, Bytes(11, 0))) == 0);
  CHECK(*request_length(request(0x0c, Bytes(12, 0))) == 16);
}

TEST_CASE("swtpm_ctrl: SET_LOCALITY accepts the 1-byte and the 4-byte body") {
  CHECK(*request_length(request(0x05, {3})) == 5);
  CHECK(*request_length(request(0x05, {3, 0, 0, 0})) == 8);
  auto q = decode_request(request(0x05, {3, 0, 0, 0}));
  REQUIRE(q);
  CHECK(q->command == CtrlCommand::kSetLocality);
  CHECK(q->locality == 3);
}

TEST_CASE("swtpm_ctrl: unknown command codes are errors, not waits") {
  for (std::uint32_t code : {0u, 0x13u, 0x20u, 0xffffffffu}) {
    auto r = request_length(request(code, Bytes(64, 0)));
    CHECK_FALSE(r.ok());
    CHECK(r.error().message.find("unknown command") != std::string::npos);
  }
}

TEST_CASE("swtpm_ctrl: HASH_DATA and SET_STATEBLOB are sized by their length fields") {
  Bytes hash = request(0x07, {0, 0, 0, 3, 'a', 'b'});
  CHECK(*request_length(hash) == 0);
  hash.push_back('c');
  CHECK(*request_length(hash) == 11);
  auto q = decode_request(hash);
  REQUIRE(q);
  CHECK(q->data == Bytes{'a', 'b', 'c'});
  CHECK_FALSE(request_length(request(0x07, {0, 0, 0x10, 0x01})).ok());  // 4097 bytes: too long

  Bytes set = request(0x0d, {0, 0, 0, 1, 0, 0, 0, 2, 0, 0, 0, 2, 0xaa});
  CHECK(*request_length(set) == 0);
  set.push_back(0xbb);
  auto s = decode_request(set);
  REQUIRE(s);
  CHECK(s->blob_type == kBlobTypeVolatile);
  CHECK(s->data == Bytes{0xaa, 0xbb});
  CHECK_FALSE(request_length(request(0x0d, {0, 0, 0, 1, 0, 0, 0, 1, 0, 0x08, 0, 1})).ok());  // > 512 KiB
}

TEST_CASE("swtpm_ctrl: GET_STATEBLOB and GET_INFO decode every field") {
  auto g = decode_request(request(0x0c, {0, 0, 0, 1, 0, 0, 0, 3, 0, 0, 0, 9}));
  REQUIRE(g);
  CHECK(g->state_flags == kBlobFlagDecrypted);
  CHECK(g->blob_type == kBlobTypeSaveState);
  CHECK(g->offset == 9);
  auto i = decode_request(request(0x12, {0, 0, 0, 1, 0, 0, 0, 2, 0, 0, 0, 5, 0, 0, 0, 0}));
  REQUIRE(i);
  CHECK(i->info_flags == 0x100000002ULL);
  CHECK(i->offset == 5);
}

TEST_CASE("swtpm_ctrl: decode refuses a buffer that is not exactly one request") {
  CHECK_FALSE(decode_request(request(0x02, {0, 0})).ok());
  CHECK_FALSE(decode_request(request(0x01, {0})).ok());
}

TEST_CASE("swtpm_ctrl: responses have the sizes QEMU reads") {
  CHECK(encode_capability(0x348f) == Bytes{0, 0, 0, 0, 0, 0, 0x34, 0x8f});
  CHECK(encode_established(0, true) == Bytes{0, 0, 0, 0, 1, 0, 0, 0});
  CHECK(encode_buffer_size(0, 4096, 2808, 4096).size() == 16);
  CHECK(encode_result(kBadLocality) == Bytes{0, 0, 0, 0x3d});
  const Bytes blob = {1, 2, 3};
  CHECK(encode_state_blob(0, 0, blob) == Bytes{0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 3, 0, 0, 0, 3, 1, 2, 3});
  const Bytes info = encode_info(0, "{\"a\":1}", 2);
  CHECK(tpm::read_u32(info, 4) == 7);
  CHECK(tpm::read_u32(info, 8) == 5);
}

}  // namespace vtpm::swtpm
