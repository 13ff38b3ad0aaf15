#include "proto/command_class.h"

#include <tss2/tss2_tpm2_types.h>

namespace vtpm::tpm {
namespace {

CommandClass classify_tpm2(std::uint32_t cc) {
  switch (cc) {
    case TPM2_CC_Startup: case TPM2_CC_Shutdown: case TPM2_CC_SelfTest: case TPM2_CC_IncrementalSelfTest:
    case TPM2_CC_GetTestResult:
      return CommandClass::kStartup;
    case TPM2_CC_PCR_Extend: case TPM2_CC_PCR_Read: case TPM2_CC_PCR_Reset: case TPM2_CC_PCR_Event:
    case TPM2_CC_PCR_Allocate: case TPM2_CC_PCR_SetAuthPolicy: case TPM2_CC_PCR_SetAuthValue:
      return CommandClass::kPcr;
    case TPM2_CC_GetRandom: case TPM2_CC_StirRandom:
      return CommandClass::kRandom;
    case TPM2_CC_Hash: case TPM2_CC_HMAC: case TPM2_CC_HashSequenceStart: case TPM2_CC_HMAC_Start:
    case TPM2_CC_SequenceUpdate: case TPM2_CC_SequenceComplete: case TPM2_CC_EventSequenceComplete:
      return CommandClass::kHash;
    case TPM2_CC_NV_DefineSpace: case TPM2_CC_NV_UndefineSpace: case TPM2_CC_NV_UndefineSpaceSpecial:
    case TPM2_CC_NV_Write: case TPM2_CC_NV_Increment: case TPM2_CC_NV_Extend: case TPM2_CC_NV_SetBits:
    case TPM2_CC_NV_WriteLock: case TPM2_CC_NV_GlobalWriteLock: case TPM2_CC_NV_ReadLock: case TPM2_CC_NV_ChangeAuth:
      return CommandClass::kNvWrite;
    case TPM2_CC_NV_Read: case TPM2_CC_NV_ReadPublic: case TPM2_CC_NV_Certify:
      return CommandClass::kNvRead;
    case TPM2_CC_CreatePrimary: case TPM2_CC_Create: case TPM2_CC_CreateLoaded:
      return CommandClass::kKeyCreate;
    case TPM2_CC_Load: case TPM2_CC_LoadExternal: case TPM2_CC_Sign: case TPM2_CC_VerifySignature:
    case TPM2_CC_Quote: case TPM2_CC_Certify: case TPM2_CC_CertifyCreation: case TPM2_CC_CertifyX509:
    case TPM2_CC_RSA_Encrypt: case TPM2_CC_RSA_Decrypt: case TPM2_CC_EncryptDecrypt: case TPM2_CC_EncryptDecrypt2:
    case TPM2_CC_ECDH_KeyGen: case TPM2_CC_ECDH_ZGen: case TPM2_CC_ZGen_2Phase: case TPM2_CC_EC_Ephemeral:
    case TPM2_CC_Commit: case TPM2_CC_Unseal: case TPM2_CC_Import: case TPM2_CC_Duplicate: case TPM2_CC_Rewrap:
    case TPM2_CC_ObjectChangeAuth: case TPM2_CC_ActivateCredential: case TPM2_CC_MakeCredential:
    case TPM2_CC_GetTime: case TPM2_CC_GetSessionAuditDigest: case TPM2_CC_GetCommandAuditDigest:
      return CommandClass::kKeyUse;
    case TPM2_CC_StartAuthSession: case TPM2_CC_PolicySigned: case TPM2_CC_PolicySecret: case TPM2_CC_PolicyTicket:
    case TPM2_CC_PolicyOR: case TPM2_CC_PolicyPCR: case TPM2_CC_PolicyLocality: case TPM2_CC_PolicyNV:
    case TPM2_CC_PolicyCounterTimer: case TPM2_CC_PolicyCommandCode: case TPM2_CC_PolicyPhysicalPresence:
    case TPM2_CC_PolicyCpHash: case TPM2_CC_PolicyNameHash: case TPM2_CC_PolicyDuplicationSelect:
    case TPM2_CC_PolicyAuthorize: case TPM2_CC_PolicyAuthValue: case TPM2_CC_PolicyPassword:
    case TPM2_CC_PolicyGetDigest: case TPM2_CC_PolicyNvWritten: case TPM2_CC_PolicyTemplate:
    case TPM2_CC_PolicyAuthorizeNV: case TPM2_CC_PolicyRestart:
      return CommandClass::kSession;
    case TPM2_CC_ContextSave: case TPM2_CC_ContextLoad: case TPM2_CC_FlushContext: case TPM2_CC_EvictControl:
      return CommandClass::kContext;
    case TPM2_CC_GetCapability: case TPM2_CC_ReadClock: case TPM2_CC_ReadPublic: case TPM2_CC_TestParms:
    case TPM2_CC_ECC_Parameters:
      return CommandClass::kCapability;
    default:
      return CommandClass::kOther;
  }
}

// TPM 1.2 ordinals (TPM Main Part 2, section 17); the common ones only.
CommandClass classify_tpm12(std::uint32_t ordinal) {
  switch (ordinal) {
    case 0x99: case 0x98: case 0x50: case 0x53:  // Startup SaveState SelfTestFull ContinueSelfTest
      return CommandClass::kStartup;
    case 0x14: case 0x15: case 0xC8:  // Extend PcrRead PCR_Reset
      return CommandClass::kPcr;
    case 0x46: case 0x47:  // GetRandom StirRandom
      return CommandClass::kRandom;
    case 0xA0: case 0xA1: case 0xA2: case 0xA3:  // SHA1Start Update Complete CompleteExtend
      return CommandClass::kHash;
    case 0xCC: case 0xCD: case 0xCE:  // NV_DefineSpace NV_WriteValue NV_WriteValueAuth
      return CommandClass::kNvWrite;
    case 0xCF: case 0xD0:  // NV_ReadValue NV_ReadValueAuth
      return CommandClass::kNvRead;
    case 0x1F: case 0x79: case 0x78: case 0x0D:  // CreateWrapKey MakeIdentity CreateEndorsementKeyPair TakeOwnership
      return CommandClass::kKeyCreate;
    case 0x20: case 0x41: case 0x3C: case 0x16: case 0x3E: case 0x17: case 0x18: case 0x1E: case 0x21:
      // LoadKey LoadKey2 Sign Quote Quote2 Seal Unseal UnBind GetPubKey
      return CommandClass::kKeyUse;
    case 0x0A: case 0x0B:  // OIAP OSAP
      return CommandClass::kSession;
    case 0xB8: case 0xB9: case 0xBA:  // SaveContext LoadContext FlushSpecific
      return CommandClass::kContext;
    case 0x65: case 0x7C:  // GetCapability ReadPubek
      return CommandClass::kCapability;
    default:
      return CommandClass::kOther;
  }
}

}  // namespace

CommandClass classify_command(std::span<const std::uint8_t> command, TpmVersion version) {
  if (command.size() < kHeaderSize) return CommandClass::kUnknown;
  const std::uint32_t code = read_u32(command, 6);
  return version == TpmVersion::k20 ? classify_tpm2(code) : classify_tpm12(code);
}

const char* command_class_name(CommandClass c) {
  switch (c) {
    case CommandClass::kStartup: return "startup";
    case CommandClass::kPcr: return "pcr";
    case CommandClass::kRandom: return "random";
    case CommandClass::kHash: return "hash";
    case CommandClass::kNvWrite: return "nv_write";
    case CommandClass::kNvRead: return "nv_read";
    case CommandClass::kKeyCreate: return "key_create";
    case CommandClass::kKeyUse: return "key_use";
    case CommandClass::kSession: return "session";
    case CommandClass::kContext: return "context";
    case CommandClass::kCapability: return "capability";
    case CommandClass::kOther: return "other";
    case CommandClass::kUnknown: return "unknown";
  }
  return "unknown";
}

}  // namespace vtpm::tpm
