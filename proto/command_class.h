// Command classes for metrics: a TPM command's code (TPM 2.0) or ordinal
// (TPM 1.2) mapped to a small set of kinds an operator can reason about
// (latency of key creation differs from PCR traffic by orders of magnitude).
// Pure: no I/O.
#pragma once

#include <array>
#include <cstdint>
#include <span>

#include "proto/tpm_packet.h"

namespace vtpm::tpm {

enum class CommandClass : std::uint8_t {
  kStartup,     // Startup, Shutdown, self tests
  kPcr,         // PCR_Extend/Read/Reset/Event, TPM 1.2 Extend/PcrRead
  kRandom,      // GetRandom, StirRandom
  kHash,        // Hash, HMAC, sequences
  kNvWrite,     // NV define/undefine/write/increment/extend/set bits/lock
  kNvRead,      // NV read/read public/certify
  kKeyCreate,   // CreatePrimary, Create, CreateLoaded, 1.2 CreateWrapKey/MakeIdentity
  kKeyUse,      // Load, Sign, decrypt/encrypt, Quote, Certify, Unseal, ECDH...
  kSession,     // StartAuthSession, policies, 1.2 OIAP/OSAP
  kContext,     // ContextSave/Load, FlushContext, EvictControl
  kCapability,  // GetCapability, ReadClock, ReadPublic, TestParms
  kOther,
  kUnknown,     // too short to carry a code
};

inline constexpr std::size_t kCommandClassCount = static_cast<std::size_t>(CommandClass::kUnknown) + 1;

// The class of a command packet of `version` (only the header is read).
CommandClass classify_command(std::span<const std::uint8_t> command, TpmVersion version);
// Lower-case label: "startup", "pcr", "random", "hash", "nv_write", ...
const char* command_class_name(CommandClass c);

}  // namespace vtpm::tpm
