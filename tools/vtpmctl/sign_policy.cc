#include "tools/vtpmctl/sign_policy.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "proto/hex.h"
#include "state/crypto.h"
#include "state/file_io.h"
#include "state/tpm_policy.h"

namespace vtpm::ctl {

Result<std::string> sign_policy_file(const control::Json& params) {
  auto pcrs = state::parse_pcr_selection(params["pcrs"].get<std::string>());
  if (!pcrs) return pcrs.error();
  auto values = state::parse_pcr_values(params["pcr_values"].get<std::vector<std::string>>());
  if (!values) return values.error();
  auto composite = state::pcr_composite_digest(*pcrs, *values);
  if (!composite) return composite.error();
  const state::Bytes approved = state::policy_pcr_digest(*pcrs, *composite);
  state::Drbg drbg;
  if (Status s = drbg.seeded(); !s) return s.error();
  auto text = state::sign_policy(params["key"].get<std::string>(), *pcrs, approved, drbg);
  if (!text) return text.error();
  const std::string path = params["policy_file"].get<std::string>();
  state::Fd fd(::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644));
  if (!fd.valid()) return make_error(ErrorCode::kIo, "cannot create " + path + ": " + std::strerror(errno));
  if (Status s = state::write_all(fd.get(), state::as_bytes(*text), path); !s) return s.error();
  return "signed policy for " + state::describe_pcr_selection(*pcrs) + " (policy digest " + to_hex(approved) +
         ") written to " + path + "\n";
}

}  // namespace vtpm::ctl
