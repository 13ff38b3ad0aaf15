// The MMIO channel specs: `tis:ADDRESS[,locality=N]` and
// `crb:ADDRESS[,locality=N]` (ADDRESS in hex with 0x, 4 KiB aligned, e.g.
// tis:0xFED40000; locality 0..4, default 2). They reach a TPM that no kernel
// driver owns by mapping its registers through /dev/mem.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>

#include "backends/hwtpm/mmio_region.h"
#include "backends/hwtpm/mmio_timeouts.h"
#include "backends/hwtpm/tcti_handle.h"
#include "backends/hwtpm/tpm_transport.h"
#include "proto/result.h"

namespace vtpm::hwtpm {

enum class MmioInterface { kTis, kCrb };

struct MmioSpec {
  MmioInterface interface = MmioInterface::kTis;
  std::uint64_t address = 0;
  std::uint8_t locality = 2;
};

// True if `spec` names an MMIO channel (starts with "tis:" or "crb:").
bool is_mmio_spec(std::string_view spec);

Result<MmioSpec> parse_mmio_spec(std::string_view spec);

// The driver for `spec` over `region` (a DevmemRegion, or a test model).
Result<std::unique_ptr<TpmTransport>> open_mmio_transport(const MmioSpec& spec, std::shared_ptr<MmioRegion> region,
                                                          const MmioTimeouts& timeouts = {});

// The channel factory's entry point: parse, map /dev/mem at the address,
// probe the TPM, and wrap the driver in a TCTI (transport_tcti.h).
Result<TctiHandle> open_mmio_tcti(std::string_view spec);

}  // namespace vtpm::hwtpm
