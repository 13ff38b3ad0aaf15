// The libtpms adapter: the only code in vtpmd with process-global mutable
// state, because libtpms itself is one global TPM per process and its
// callbacks carry no context pointer. It loads one instance's state into
// libtpms at a time and captures what libtpms writes back.
//
// Thread affinity: every method except cancel() must be called from the one
// engine thread of the process. cancel() may be called from any thread while
// process() runs (that is what TPMLIB_CancelCommand is for).
#pragma once

#include <cstdint>
#include <span>

#include "proto/engine_messages.h"
#include "proto/result.h"

namespace vtpm::engine {

class LibtpmsAdapter {
 public:
  // The process's one adapter. Registers the libtpms callbacks once.
  static LibtpmsAdapter& instance();

  LibtpmsAdapter(const LibtpmsAdapter&) = delete;
  LibtpmsAdapter& operator=(const LibtpmsAdapter&) = delete;

  // Starts libtpms as a `params.version` TPM over `blobs`, which must stay
  // alive until unload(). An empty permanent blob manufactures a new TPM
  // (libtpms writes the result into blobs->permanent). When restoring, the
  // permanent-state write that MainInit makes is suppressed: it is identical
  // to what was just loaded. REQUIRES: !loaded().
  Status load(const InstanceParams& params, StateBlobs* blobs);
  // Captures the volatile state into the loaded blobs and stops libtpms.
  Status unload();
  // Stops libtpms without capturing volatile state (a power loss).
  void discard();
  // Captures the volatile state into the loaded blobs; libtpms keeps running.
  Status capture_volatile();

  bool loaded() const;
  // Runs one command at `locality`. The response is libtpms' own (a TPM
  // error code inside a well-formed packet is still a success here).
  Result<Bytes> process(Bytes& command, std::uint8_t locality);
  // Thread-safe: asks libtpms to abort a long-running command.
  static void cancel();
  // A platform signal (kHashStart..kEstablishedReset) at `locality`; the
  // TPM result, and the established bit for kEstablishedGet.
  std::uint32_t platform(JobKind kind, std::span<const std::uint8_t> data, std::uint8_t locality, bool* established);

  // Whether libtpms wrote permanent state / save state since the last call.
  bool take_permanent_changed();
  bool take_save_state_changed();

 private:
  LibtpmsAdapter();
};

}  // namespace vtpm::engine
