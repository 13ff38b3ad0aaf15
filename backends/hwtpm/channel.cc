#include "backends/hwtpm/channel.h"

#include <tss2/tss2_rc.h>
#include <tss2/tss2_tctildr.h>

#include "backends/hwtpm/mmio_spec.h"

namespace vtpm::hwtpm {
namespace {

constexpr std::string_view kLoaderPrefixes[] = {"device:", "swtpm:", "mssim:"};

}  // namespace

bool is_tpm_channel_spec(std::string_view spec) {
  for (auto prefix : kLoaderPrefixes) {
    if (spec.starts_with(prefix)) return true;
  }
  return is_mmio_spec(spec);
}

Result<TctiHandle> open_tpm_channel(const std::string& spec) {
  if (is_mmio_spec(spec)) return open_mmio_tcti(spec);
  if (!is_tpm_channel_spec(spec)) {
    return make_error(ErrorCode::kInvalidArgument, "'" + spec +
                                                       "' is not a TPM channel (device:PATH, swtpm:path=SOCKET, "
                                                       "swtpm:host=H,port=P, mssim:..., tis:ADDR, crb:ADDR)");
  }
  TSS2_TCTI_CONTEXT* context = nullptr;
  if (TSS2_RC rc = Tss2_TctiLdr_Initialize(spec.c_str(), &context); rc != TSS2_RC_SUCCESS) {
    std::string hint;
    if (spec.starts_with("device:")) hint = " (is the TPM driver loaded, and may vtpmd's user open the device?)";
    else hint = " (is the TPM simulator listening there?)";
    return make_error(ErrorCode::kUnavailable,
                      "cannot open the TPM channel " + spec + ": " + Tss2_RC_Decode(rc) + hint);
  }
  return TctiHandle(context, [](TSS2_TCTI_CONTEXT* c) { Tss2_TctiLdr_Finalize(&c); });
}

}  // namespace vtpm::hwtpm
