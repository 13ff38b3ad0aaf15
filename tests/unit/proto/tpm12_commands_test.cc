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

}  // namespace vtpm::tpm12
