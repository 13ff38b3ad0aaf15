// The key hierarchy of the state store:
//
//   root of trust --seals--> master key (256 bit, random, file master.key)
//   master key --HKDF--> manifest MAC key
//   master key --HKDF(salt = per-instance random, info = UUID, epoch)--> instance key
//   master key --HKDF--> local CA wrapping key (seals the EK CA's private key, state/local_ca.h)
//
// The master key exists in clear only in vtpmd's memory.
#pragma once

#include <array>
#include <cstdint>
#include <span>
#include <string>

#include "proto/result.h"
#include "proto/uuid.h"
#include "state/crypto.h"
#include "state/root_of_trust.h"

namespace vtpm::state {

struct MasterKey {
  SecretKey key;
  std::uint32_t epoch = 1;  // bumped by a future key rotation; carried in every blob
};

using KeySalt = std::array<std::uint8_t, 32>;

SecretKey derive_instance_key(const MasterKey& master, const Uuid& id, std::uint32_t epoch, const KeySalt& salt);
SecretKey derive_manifest_key(const MasterKey& master);
SecretKey derive_ca_wrapping_key(const MasterKey& master);
// The key that protects an export: from the operator's transport key
// (any length, at least 16 bytes) and the export's random salt.
SecretKey derive_transport_key(std::span<const std::uint8_t> operator_key, std::span<const std::uint8_t> salt);

// The master key file: magic "VTPMMKEY", u16 format version, u16 reserved,
// u32 epoch, u16 + root kind, u32 + sealed key (root-specific).
Result<MasterKey> load_master_key(const std::string& path, RootOfTrust& root);
Result<MasterKey> create_master_key(const std::string& path, RootOfTrust& root, Drbg& drbg);
// The root of trust kind recorded in the file ("file", "tpm"); "" when
// the file does not exist.
Result<std::string> master_key_root_kind(const std::string& path);
// Replaces the file (durably) with `sealed` from `root_kind`'s seal or reseal.
Status store_master_key(const std::string& path, const std::string& root_kind, std::uint32_t epoch,
                        std::span<const std::uint8_t> sealed);

}  // namespace vtpm::state
