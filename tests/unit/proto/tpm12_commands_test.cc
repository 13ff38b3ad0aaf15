#include "proto/tpm12_commands.h"

#include <doctest/doctest.h>

#include "proto/tpm_packet.h"

namespace vtpm::tpm12 {

TEST_CASE("tpm12_commands: Startup and CreateEndorsementKeyPair packets") {
  CHECK(startup_clear() == Bytes{0x00, 0xC1, 0, 0, 0, 0x0C, 0, 0, 0, 0x99, 0, 1});
  Nonce nonce{};
  nonce.fill(0xab);
  const Bytes cmd = create_endorsement_key_pair(nonce);
  CHECK(cmd.size() == 10 + 20 + 24);
  CHECK(tpm::validate_command(cmd, TpmVersion::k12, 4096).ok());
  CHECK(cmd[9] == 0x78);
  CHECK(Bytes(cmd.begin() + 10, cmd.begin() + 30) == Bytes(20, 0xab));
  const Bytes parms = {0, 0, 0, 1, 0, 3, 0, 1, 0, 0, 0, 12, 0, 0, 8, 0, 0, 0, 0, 2, 0, 0, 0, 0};
  CHECK(Bytes(cmd.begin() + 30, cmd.end()) == parms);
}

TEST_CASE("tpm12_commands: the EK response is split into pubkey, modulus and checksum") {
  Bytes r = {0x00, 0xC4, 0, 0, 0, 0, 0, 0, 0, 0};
  const Bytes parms = {0, 0, 0, 1, 0, 3, 0, 1, 0, 0, 0, 12, 0, 0, 8, 0, 0, 0, 0, 2, 0, 0, 0, 0};
  r.insert(r.end(), parms.begin(), parms.end());
  r.insert(r.end(), {0, 0, 1, 0});
  r.insert(r.end(), 256, 0x5a);
  r.insert(r.end(), 20, 0xcc);
  r[5] = static_cast<std::uint8_t>(r.size());
  r[4] = static_cast<std::uint8_t>(r.size() >> 8);
  auto ek = parse_create_endorsement_key_pair(r);
  REQUIRE(ek.ok());
  CHECK(ek->modulus == Bytes(256, 0x5a));
  CHECK(ek->checksum == Bytes(20, 0xcc));
  CHECK(ek->pubkey.size() == parms.size() + 4 + 256);

  Bytes error = {0x00, 0xC4, 0, 0, 0, 0x0a, 0, 0, 0, 0x07};
  auto refused = parse_create_endorsement_key_pair(error);
  REQUIRE_FALSE(refused.ok());
  CHECK(refused.error().message.find("rc 7") != std::string::npos);
  CHECK(response_code(error) == kDisabledCmd);
  for (std::size_t n = 0; n < r.size(); n += 13) {
    Bytes cut(r.begin(), r.begin() + static_cast<std::ptrdiff_t>(n));
    if (parse_create_endorsement_key_pair(cut).ok()) FAIL("truncation to " << n << " accepted");
  }
}

TEST_CASE("tpm12_commands: provisioning packets are valid TPM 1.2 commands") {
  const Bytes data(100, 0x11);
  for (const Bytes& cmd : {tsc_physical_presence(kPhysicalPresencePresent), physical_enable(),
                           physical_set_deactivated(false), get_capability_version(),
                           nv_define_space(kEkCertIndex, kNvPerOwnerRead | kNvPerOwnerWrite, 900),
                           nv_write_value(kEkCertIndex, 0, data), nv_lock()}) {
    CAPTURE(cmd.size());
    CHECK(tpm::validate_command(cmd, TpmVersion::k12, 4096).ok());
  }
  // TPM_NV_DATA_PUBLIC: tag, index, two PCR_INFO_SHORTs of 26 bytes,
  // attributes (tag + 4), three flags, size; then a 20-byte encAuth.
  const Bytes define = nv_define_space(kEkCertIndex, kNvPerOwnerRead | kNvPerOwnerWrite, 900);
  CHECK(define.size() == 10 + 2 + 4 + 26 + 26 + 6 + 3 + 4 + 20);
  CHECK(Bytes(define.begin() + 10, define.begin() + 16) == Bytes{0x00, 0x18, 0x10, 0x00, 0xF0, 0x00});
  CHECK(Bytes(define.begin() + 16, define.begin() + 22) == Bytes{0, 3, 0, 0, 0, 0x1F});
  CHECK(Bytes(define.begin() + 68, define.begin() + 74) == Bytes{0x00, 0x17, 0x00, 0x02, 0x00, 0x02});
  CHECK(Bytes(define.begin() + 77, define.begin() + 81) == Bytes{0, 0, 0x03, 0x84});
  const Bytes lock = nv_lock();
  CHECK(Bytes(lock.begin() + 12, lock.begin() + 16) == Bytes{0xFF, 0xFF, 0xFF, 0xFF});
  CHECK(tsc_physical_presence(kPhysicalPresenceCmdEnable) ==
        Bytes{0x00, 0xC1, 0, 0, 0, 0x0C, 0x40, 0, 0, 0x0A, 0x00, 0x20});
}

TEST_CASE("tpm12_commands: the stored certificate header and the version capability") {
  const Bytes der = {0x30, 0x03, 0x02, 0x01, 0x01};
  CHECK(stored_certificate(der) == Bytes{0x10, 0x01, 0x00, 0x00, 0x07, 0x10, 0x02, 0x30, 0x03, 0x02, 0x01, 0x01});
  // What libtpms answers: TPM 1.2, revision 0x12.0x9e, level 2, errata 3, "IBM".
  const Bytes answer = {0x00, 0xC4, 0, 0, 0, 0x1D, 0, 0, 0, 0, 0, 0, 0, 0x0F, 0x00, 0x30, 0x01,
                        0x02, 0x12, 0x9E, 0x00, 0x02, 0x03, 0x49, 0x42, 0x4D, 0x00, 0x00, 0x00};
  auto v = parse_version_info(answer);
  REQUIRE(v.ok());
  CHECK(v->spec_level == 2);
  CHECK(v->errata_rev == 3);
  CHECK(v->vendor == 0x49424D00u);
  CHECK(v->rev_major == 0x12);
  CHECK(v->rev_minor == 0x9E);
  Bytes truncated(answer.begin(), answer.end() - 3);
  truncated[5] = static_cast<std::uint8_t>(truncated.size());
  CHECK_FALSE(parse_version_info(truncated).ok());
  CHECK_FALSE(parse_version_info(Bytes{0x00, 0xC4, 0, 0, 0, 0x0A, 0, 0, 0, 0x07}).ok());
}

}  // namespace vtpm::tpm12
