// Makes any TpmTransport a tpm2-tss TCTI, so ESAPI can drive the MMIO
// drivers like the kernel device or swtpm.
//
// transmit() starts the transaction on a worker thread and returns;
// receive() waits up to its timeout (TSS2_TCTI_RC_TRY_AGAIN when it has not
// finished), cancel() reaches the transport while the command runs. One
// command at a time, as every TCTI. The TCTI's error codes say little
// (TSS2_TCTI_RC_IO_ERROR), so the transport's own message is kept for
// transport_tcti_last_error().
#pragma once

#include <memory>
#include <string>

#include <tss2/tss2_tcti.h>

#include "backends/hwtpm/tcti_handle.h"
#include "backends/hwtpm/tpm_transport.h"

namespace vtpm::hwtpm {

// Every context made here starts with this magic ("vtpmxprt").
inline constexpr std::uint64_t kTransportTctiMagic = 0x7674706d78707274ull;

TctiHandle make_transport_tcti(std::unique_ptr<TpmTransport> transport);

// The message of the last failed transaction on a context made by
// make_transport_tcti ("" if none, or if the context is not ours).
std::string transport_tcti_last_error(TSS2_TCTI_CONTEXT* context);

}  // namespace vtpm::hwtpm
