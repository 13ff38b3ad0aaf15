#include "proto/tpm2_commands.h"

#include <doctest/doctest.h>

#include "proto/tpm_packet.h"

namespace vtpm::tpm2 {

TEST_CASE("tpm2_commands: Startup and Shutdown are the well-known packets") {
  CHECK(startup(true) == Bytes{0x80, 0x01, 0, 0, 0, 0x0c, 0, 0, 0x01, 0x44, 0, 0});
  CHECK(startup(false) == Bytes{0x80, 0x01, 0, 0, 0, 0x0c, 0, 0, 0x01, 0x44, 0, 1});
  CHECK(shutdown(true) == Bytes{0x80, 0x01, 0, 0, 0, 0x0c, 0, 0, 0x01, 0x45, 0, 0});
}

TEST_CASE("tpm2_commands: authorized commands carry one empty password session") {
  const Bytes cmd = evict_control(TPM2_RH_OWNER, 0x80000000, kEkRsaPersistentHandle);
  // tag, size, code, two handles, auth size 9, TPM_RS_PW, nonce 0, attrs 0, hmac 0, persistent handle
  const Bytes expected = {0x80, 0x02, 0, 0, 0, 0x23, 0, 0, 0x01, 0x20, 0x40, 0, 0, 0x01, 0x80, 0, 0, 0,
                          0, 0, 0, 9, 0x40, 0, 0, 0x09, 0, 0, 0, 0, 0, 0x81, 0x01, 0, 0x01};
  CHECK(cmd == expected);
  CHECK(tpm::validate_command(cmd, TpmVersion::k20, 4096).ok());
}

TEST_CASE("tpm2_commands: ReadPublic names the object in its handle area, without a session") {
  CHECK(read_public(kEkRsaPersistentHandle) ==
        Bytes{0x80, 0x01, 0, 0, 0, 0x0e, 0, 0, 0x01, 0x73, 0x81, 0x01, 0, 0x01});
}

TEST_CASE("tpm2_commands: every command is a valid TPM 2.0 packet") {
  const Bytes chunk(kNvWriteChunk, 0x5a);
  const PcrDigest digests[] = {{TPM2_ALG_SHA1, Bytes(20, 1)}, {TPM2_ALG_SHA256, Bytes(32, 2)}};
  const TPM2_ALG_ID banks[] = {TPM2_ALG_SHA256};
  for (const Bytes& cmd : {pcr_allocate(banks), create_primary(TPM2_RH_ENDORSEMENT, ek_template(EkKind::kRsa2048)),
                           create_primary(TPM2_RH_ENDORSEMENT, ek_template(EkKind::kEccP256)), flush_context(0x80000001), read_public(0x81010002),
                           nv_define_space(TPM2_RH_PLATFORM, kEkRsaCertIndex, kCertificateNvAttributes, 900),
                           nv_write(TPM2_RH_PLATFORM, kEkRsaCertIndex, chunk, 1024),
                           nv_write_lock(TPM2_RH_PLATFORM, kEkRsaCertIndex), pcr_extend(4, digests),
                           get_capability_pcrs(), get_capability_fixed_properties()}) {
    CAPTURE(cmd.size());
    CHECK(tpm::validate_command(cmd, TpmVersion::k20, 4096).ok());
  }
}

TEST_CASE("tpm2_commands: the EK templates are the TCG low-range defaults") {
  const TPM2B_PUBLIC rsa = ek_template(EkKind::kRsa2048);
  CHECK(rsa.publicArea.objectAttributes == 0x000300B2);
  CHECK(rsa.publicArea.authPolicy.size == 32);
  CHECK(rsa.publicArea.authPolicy.buffer[0] == 0x83);
  CHECK(rsa.publicArea.parameters.rsaDetail.keyBits == 2048);
  CHECK(rsa.publicArea.unique.rsa.size == 256);
  const TPM2B_PUBLIC ecc = ek_template(EkKind::kEccP256);
  CHECK(ecc.publicArea.parameters.eccDetail.curveID == TPM2_ECC_NIST_P256);
  CHECK(ecc.publicArea.unique.ecc.x.size == 32);
  CHECK(ek_persistent_handle(EkKind::kEccP256) == 0x81010002);
  CHECK(ek_cert_index(EkKind::kEccP256) == 0x01C0000A);
}

TEST_CASE("tpm2_commands: responses are split into handles and parameters") {
  const Bytes with_session = {0x80, 0x02, 0, 0, 0, 0x17, 0, 0, 0, 0, 0x80, 0, 0, 0,
                              0, 0, 0, 2, 0xab, 0xcd, 0, 0, 1};  // handle, paramSize 2, params, empty auth
  auto r = parse_response(with_session, 1, true);
  REQUIRE(r.ok());
  CHECK(r->rc == 0);
  CHECK(r->handles == std::vector<TPM2_HANDLE>{0x80000000});
  CHECK(r->parameters == Bytes{0xab, 0xcd});
  const Bytes error = {0x80, 0x01, 0, 0, 0, 0x0a, 0, 0, 0x01, 0x00};
  auto e = parse_response(error, 1, true);
  REQUIRE(e.ok());
  CHECK(e->rc == kRcInitialize);
  CHECK_FALSE(parse_response(Bytes{0x80, 0x01, 0, 0, 0, 0x0b, 0, 0, 0, 0}, 0, false).ok());  // size lies
  CHECK_FALSE(parse_response(Bytes{0x80, 0x01, 0, 0, 0, 0x0a, 0, 0, 0, 0}, 1, false).ok());  // no handle
  CHECK_FALSE(parse_response(Bytes{0x80, 0x02, 0, 0, 0, 0x0e, 0, 0, 0, 0, 0, 0, 0, 9}, 0, true).ok());
}

TEST_CASE("tpm2_commands: bank and EK names") {
  CHECK(bank_from_name("sha384") == TPM2_ALG_SHA384);
  CHECK_FALSE(bank_from_name("md5").has_value());
  CHECK_FALSE(bank_from_name("SHA256").has_value());
  CHECK(digest_size(TPM2_ALG_SHA512) == 64);
  CHECK(ek_from_name("ecc") == EkKind::kEccP256);
  CHECK_FALSE(ek_from_name("rsa3072").has_value());
}

}  // namespace vtpm::tpm2
