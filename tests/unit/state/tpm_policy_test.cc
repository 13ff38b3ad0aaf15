// PCR selections, predicted values and signed-policy files: parsing and the
// offline policy digest (whose agreement with a real TPM the hardware-root
// integration tests prove by unsealing with it).
#include "state/tpm_policy.h"

#include <doctest/doctest.h>

#include "proto/hex.h"

namespace vtpm::state {

TEST_CASE("tpm policy: PCR selections parse, describe and reject nonsense") {
  auto sel = parse_pcr_selection("sha256:0,2,4,7");
  REQUIRE(sel.ok());
  CHECK(sel->count == 1);
  CHECK(sel->pcrSelections[0].hash == TPM2_ALG_SHA256);
  CHECK(sel->pcrSelections[0].sizeofSelect == 3);
  CHECK(sel->pcrSelections[0].pcrSelect[0] == 0x95);
  CHECK(describe_pcr_selection(*sel) == "sha256:0,2,4,7");
  auto two = parse_pcr_selection("sha1:23+sha384:8,16");
  REQUIRE(two.ok());
  CHECK(describe_pcr_selection(*two) == "sha1:23+sha384:8,16");
  for (const char* bad : {"", "sha256", "sha256:", "md5:1", "sha256:24", "sha256:-1", "sha256:1,,2", "sha256:1+sha256:2",
                          "sha256:0x1"}) {
    CAPTURE(bad);
    CHECK_FALSE(parse_pcr_selection(bad).ok());
  }
}

TEST_CASE("tpm policy: predicted values need the bank's length and a complete selection") {
  auto values = parse_pcr_values({"sha256:7=" + std::string(64, 'a'), "sha1:0=" + std::string(40, 'b')});
  REQUIRE(values.ok());
  CHECK(values->size() == 2);
  CHECK_FALSE(parse_pcr_values({"sha256:7=abcd"}).ok());
  CHECK_FALSE(parse_pcr_values({"sha256:7"}).ok());
  CHECK_FALSE(parse_pcr_values({"sha999:7=" + std::string(64, 'a')}).ok());
  auto sel = parse_pcr_selection("sha256:0,7");
  REQUIRE(sel.ok());
  auto missing = pcr_composite_digest(*sel, *values);
  REQUIRE_FALSE(missing.ok());
  CHECK(missing.error().message.find("sha256:0") != std::string::npos);
}

TEST_CASE("tpm policy: the PolicyPCR digest follows the TPM's formula") {
  // sha256:0 all zeros: composite = SHA-256(32 zero bytes); policy =
  // SHA-256(0^32 ‖ TPM_CC_PolicyPCR ‖ TPML_PCR_SELECTION ‖ composite).
  auto sel = parse_pcr_selection("sha256:0");
  REQUIRE(sel.ok());
  PcrValues v;
  v[{TPM2_ALG_SHA256, 0}] = Bytes(32, 0);
  auto composite = pcr_composite_digest(*sel, v);
  REQUIRE(composite.ok());
  CHECK(to_hex(*composite) == "66687aadf862bd776c8fc18b8e9f8e20089714856ee233b3902a591d0d5f2925");
  ByteWriter w;
  w.raw(Bytes(32, 0));
  w.u32(0x0000017F);
  w.raw(from_hex("00000001000b03010000").value());
  w.raw(*composite);
  const Digest expected = sha256(w.bytes());
  CHECK(policy_pcr_digest(*sel, *composite) == Bytes(expected.begin(), expected.end()));
}

TEST_CASE("tpm policy: signed-policy files are checked field by field") {
  const std::string good = R"({"format":"vtpmd-signed-policy-1","pcrs":"sha256:7","approved_policy":")" +
                           std::string(64, 'a') + R"(","policy_ref":"","signature":"0014000b0004deadbeef"})";
  auto p = parse_signed_policy(good, "p.json");
  REQUIRE_MESSAGE(p.ok(), (p.ok() ? "" : p.error().message));
  CHECK(p->signature.sigAlg == TPM2_ALG_RSASSA);
  CHECK(p->approved.size == 32);
  for (const std::string& bad :
       {std::string("not json"), std::string("[]"), std::string(R"({"format":"x"})"),
        good.substr(0, good.find("signature")) + R"(signature":"zz"})",
        good.substr(0, good.find("approved_policy")) + R"(approved_policy":"ab","policy_ref":"","signature":"00"})"}) {
    CAPTURE(bad);
    auto r = parse_signed_policy(bad, "bad.json");
    REQUIRE_FALSE(r.ok());
    CHECK(r.error().message.find("bad.json") != std::string::npos);
  }
}

TEST_CASE("tpm policy: signing keys must be RSA 2048+ or ECC P-256 PEM files") {
  auto missing = signing_key_public("/nonexistent.pem");
  REQUIRE_FALSE(missing.ok());
  CHECK(missing.error().message.find("/nonexistent.pem") != std::string::npos);
}

}  // namespace vtpm::state
