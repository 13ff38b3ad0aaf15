#include "proto/command_class.h"

#include <doctest/doctest.h>

#include <string>
#include <vector>

namespace vtpm::tpm {
namespace {

std::vector<std::uint8_t> command(std::uint16_t tag, std::uint32_t code) {
  std::vector<std::uint8_t> out;
  append_u16(out, tag);
  append_u32(out, kHeaderSize);
  append_u32(out, code);
  return out;
}

std::string class_of(std::uint32_t code, TpmVersion version = TpmVersion::k20) {
  const std::uint16_t tag = version == TpmVersion::k20 ? kTpm2StNoSessions : kTpm12TagRquCommand;
  return command_class_name(classify_command(command(tag, code), version));
}

TEST_CASE("TPM 2.0 command codes map to their class") {
  CHECK(class_of(0x144) == "startup");     // Startup
  CHECK(class_of(0x182) == "pcr");         // PCR_Extend
  CHECK(class_of(0x17E) == "pcr");         // PCR_Read
  CHECK(class_of(0x17B) == "random");      // GetRandom
  CHECK(class_of(0x17D) == "hash");        // Hash
  CHECK(class_of(0x137) == "nv_write");    // NV_Write
  CHECK(class_of(0x14E) == "nv_read");     // NV_Read
  CHECK(class_of(0x131) == "key_create");  // CreatePrimary
  CHECK(class_of(0x15D) == "key_use");     // Sign
  CHECK(class_of(0x176) == "session");     // StartAuthSession
  CHECK(class_of(0x165) == "context");     // FlushContext
  CHECK(class_of(0x17A) == "capability");  // GetCapability
  CHECK(class_of(0x20000000) == "other");  // a vendor command
}

TEST_CASE("TPM 1.2 ordinals map to their class") {
  CHECK(class_of(0x14, TpmVersion::k12) == "pcr");        // TPM_Extend
  CHECK(class_of(0x46, TpmVersion::k12) == "random");     // TPM_GetRandom
  CHECK(class_of(0xCD, TpmVersion::k12) == "nv_write");   // TPM_NV_WriteValue
  CHECK(class_of(0x0A, TpmVersion::k12) == "session");    // TPM_OIAP
  CHECK(class_of(0x99, TpmVersion::k12) == "startup");    // TPM_Startup
  // The same number means something else in the other version.
  CHECK(class_of(0x14, TpmVersion::k20) == "other");
}

TEST_CASE("a packet too short for a header is unknown") {
  const std::vector<std::uint8_t> short_packet = {0x80, 0x01, 0x00};
  CHECK(classify_command(short_packet, TpmVersion::k20) == CommandClass::kUnknown);
  CHECK(std::string(command_class_name(CommandClass::kUnknown)) == "unknown");
}

}  // namespace
}  // namespace vtpm::tpm
