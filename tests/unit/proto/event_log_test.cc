#include "proto/event_log.h"

#include <doctest/doctest.h>

namespace vtpm::eventlog {
namespace {

Log sample() {
  Log log;
  log.banks = {TPM2_ALG_SHA1, TPM2_ALG_SHA256};
  Event kernel;
  kernel.pcr = 4;
  kernel.type = kEvCompactHash;
  kernel.digests = {{TPM2_ALG_SHA1, Bytes(20, 0xaa)}, {TPM2_ALG_SHA256, Bytes(32, 0xbb)}};
  kernel.data = {'v', 'm', 'l', 'i', 'n', 'u', 'z'};
  Event cmdline = kernel;
  cmdline.pcr = 5;
  cmdline.data = {};
  log.events = {kernel, cmdline};
  return log;
}

}  // namespace

TEST_CASE("event_log: the Spec ID header is the PC Client profile's, byte for byte") {
  const Bytes header = encode_header(std::vector<TPM2_ALG_ID>{TPM2_ALG_SHA256});
  const Bytes expected = {
      0, 0, 0, 0,  3, 0, 0, 0,                                            // PCR 0, EV_NO_ACTION
      0, 0, 0, 0,  0, 0, 0, 0,  0, 0, 0, 0,  0, 0, 0, 0,  0, 0, 0, 0,       // SHA-1 sized zero digest
      33, 0, 0, 0,                                                        // event size
      'S', 'p', 'e', 'c', ' ', 'I', 'D', ' ', 'E', 'v', 'e', 'n', 't', '0', '3', 0,
      0, 0, 0, 0,                                                         // platform class
      0, 2, 0, 2,                                                         // version 2.0, errata 0, UINT64
      1, 0, 0, 0,  0x0b, 0, 32, 0,                                        // sha256, 32 bytes
      0};                                                                 // no vendor info
  CHECK(header == expected);
}

TEST_CASE("event_log: round-trips banks, events, digests and data") {
  const Bytes bytes = encode(sample());
  auto log = decode(bytes);
  REQUIRE(log.ok());
  CHECK(log->banks == sample().banks);
  REQUIRE(log->events.size() == 2);
  CHECK(log->events[0].pcr == 4);
  CHECK(log->events[0].type == kEvCompactHash);
  CHECK(log->events[0].digests[1].bytes == Bytes(32, 0xbb));
  CHECK(log->events[0].data == sample().events[0].data);
  CHECK(log->events[1].data.empty());
  // Appending an encoded event to a header is the same as encoding the log.
  Bytes appended = encode_header(sample().banks);
  for (const Event& e : sample().events) {
    const Bytes one = encode_event(e);
    appended.insert(appended.end(), one.begin(), one.end());
  }
  CHECK(appended == bytes);
}

TEST_CASE("event_log: a header alone is a valid, empty log") {
  auto log = decode(encode_header(std::vector<TPM2_ALG_ID>{TPM2_ALG_SHA384, TPM2_ALG_SHA512}));
  REQUIRE(log.ok());
  CHECK(log->events.empty());
  CHECK(log->banks == std::vector<TPM2_ALG_ID>{TPM2_ALG_SHA384, TPM2_ALG_SHA512});
}

TEST_CASE("event_log: every truncation and inconsistent digests are rejected") {
  const Bytes bytes = encode(sample());
  // Cuts at an event boundary leave a shorter, complete log.
  const std::size_t header = encode_header(sample().banks).size();
  const std::size_t first_event = header + encode_event(sample().events[0]).size();
  for (std::size_t n = 0; n < bytes.size(); ++n) {
    if (n == header || n == first_event) {
      CHECK(decode(std::span(bytes).first(n)).ok());
      continue;
    }
    if (decode(std::span(bytes).first(n)).ok()) FAIL("truncation to " << n << " accepted");
  }
  Log missing = sample();
  missing.events[0].digests.pop_back();
  CHECK_FALSE(decode(encode(missing)).ok());
  Log swapped = sample();
  std::swap(swapped.events[0].digests[0], swapped.events[0].digests[1]);
  CHECK_FALSE(decode(encode(swapped)).ok());
  Bytes bad_signature = bytes;
  bad_signature[32] = 'X';
  CHECK_FALSE(decode(bad_signature).ok());
}

TEST_CASE("event_log: default event types follow the PC Client profile") {
  CHECK(default_event_type(4) == kEvCompactHash);
  CHECK(default_event_type(5) == kEvCompactHash);
  CHECK(default_event_type(8) == kEvIpl);
  CHECK(default_event_type(9) == kEvIpl);
}

}  // namespace vtpm::eventlog
