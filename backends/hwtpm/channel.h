// The channel to the hardware TPM, from the --root-of-trust spec:
//   device:/dev/tpmrm0   the kernel's resource manager (or /dev/tpm0)
//   swtpm:path=SOCKET    a swtpm (or a vtpmd instance) on a Unix socket
//   swtpm:host=H,port=P  the same over TCP
//   mssim:host=H,port=P  the Microsoft/IBM simulator protocol
//   tis:ADDR[,locality=N], crb:ADDR[,locality=N]   MMIO through /dev/mem
// The first four are tpm2-tss's own TCTIs; the MMIO ones are ours.
#pragma once

#include <string>
#include <string_view>

#include "backends/hwtpm/tcti_handle.h"
#include "proto/result.h"

namespace vtpm::hwtpm {

bool is_tpm_channel_spec(std::string_view spec);
Result<TctiHandle> open_tpm_channel(const std::string& spec);

}  // namespace vtpm::hwtpm
