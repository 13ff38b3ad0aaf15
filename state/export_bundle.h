// The export bundle: one instance's record (state/instance_record.h),
// encrypted and authenticated for transport between vtpmd state
// directories under a key the operator supplies (AES-256-GCM; key =
// HKDF-SHA256 of the operator's key with a random salt). Independent of
// either host's master key. Byte layout: docs/state-format.md. Pure.
#pragma once

#include <span>

#include "proto/result.h"
#include "state/bytes.h"
#include "state/crypto.h"
#include "state/instance_record.h"

namespace vtpm::state {

constexpr std::size_t kMinTransportKey = 16;

Result<Bytes> seal_export(const InstanceRecord& record, std::span<const std::uint8_t> transport_key, Drbg& drbg);
Result<InstanceRecord> open_export(std::span<const std::uint8_t> bundle, std::span<const std::uint8_t> transport_key);

}  // namespace vtpm::state
