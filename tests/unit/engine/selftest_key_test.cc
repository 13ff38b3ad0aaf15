// The TPM 1.2 self-test key cache: restores reuse one genuinely generated
// key, the TPM stays healthy, and no other key generation is affected.
#define OPENSSL_SUPPRESS_DEPRECATED 1

#include <doctest/doctest.h>
#include <openssl/bn.h>
#include <openssl/rsa.h>

#include <memory>

#include "src/engine/libtpms_selftest_key.h"
#include "src/engine/multiplexer.h"
#include "tests/support/tpm_commands.h"

namespace vtpm::engine {
namespace {

using namespace vtpm::testing;

std::unique_ptr<RSA, decltype(&RSA_free)> generate() {
  std::unique_ptr<RSA, decltype(&RSA_free)> key(RSA_new(), RSA_free);
  std::unique_ptr<BIGNUM, decltype(&BN_free)> e(BN_new(), BN_free);
  BN_set_word(e.get(), 65537);
  REQUIRE(RSA_generate_key_ex(key.get(), 1024, e.get(), nullptr) == 1);
  return key;
}

Completion run(Multiplexer& mux, JobId id, const Uuid& instance, JobKind kind, Bytes command = {}) {
  Job job;
  job.id = id;
  job.instance = instance;
  job.kind = kind;
  job.command = std::move(command);
  job.params = InstanceParams{TpmVersion::k12, 4096, true};
  mux.enqueue(std::move(job), Clock::now());
  return mux.run_next();
}

}  // namespace

TEST_CASE("key generation outside a TPM 1.2 restore always produces a fresh key") {
  auto a = generate();
  auto b = generate();
  const BIGNUM *na = nullptr, *nb = nullptr;
  RSA_get0_key(a.get(), &na, nullptr, nullptr);
  RSA_get0_key(b.get(), &nb, nullptr, nullptr);
  CHECK(BN_cmp(na, nb) != 0);
}

TEST_CASE("TPM 1.2 restores reuse the self-test key and the instances stay healthy") {
  Multiplexer mux(LibtpmsAdapter::instance(), MultiplexerOptions{std::chrono::microseconds(0)});
  Uuid::Bytes ba{}, bb{};
  ba[15] = 0xa1;
  bb[15] = 0xb2;
  const Uuid a(ba), b(bb);
  JobId next = 1;
  REQUIRE(run(mux, next++, a, JobKind::kAttach).ok);
  REQUIRE(run(mux, next++, b, JobKind::kAttach).ok);
  const std::uint64_t before = selftest_keys_reused();
  Bytes last_a, last_b;
  for (std::uint8_t i = 0; i < 4; ++i) {
    Completion ra = run(mux, next++, a, JobKind::kExecute, tpm12_extend(10, i));
    Completion rb = run(mux, next++, b, JobKind::kExecute, tpm12_extend(11, i));
    REQUIRE(ra.ok);
    REQUIRE(rb.ok);
    CHECK(ra.swapped);
    CHECK(tpm::response_code(ra.response) == 0);  // not in failure mode: the self-test passed
    CHECK(tpm::response_code(rb.response) == 0);
    last_a = tail(ra.response, 20);
    last_b = tail(rb.response, 20);
  }
  // 8 restores; the first in the process may have generated the key.
  CHECK(selftest_keys_reused() - before >= 7);
  CHECK(tail(run(mux, next++, a, JobKind::kExecute, tpm12_pcr_read(10)).response, 20) == last_a);
  CHECK(tail(run(mux, next++, b, JobKind::kExecute, tpm12_pcr_read(11)).response, 20) == last_b);
  CHECK(run(mux, next++, a, JobKind::kDetach).ok);
  CHECK(run(mux, next++, b, JobKind::kDetach).ok);
}

}  // namespace vtpm::engine
