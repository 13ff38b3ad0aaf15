#include "src/engine/libtpms_adapter.h"

#include "src/engine/libtpms_selftest_key.h"

#include <libtpms/tpm_error.h>
#include <libtpms/tpm_library.h>
#include <libtpms/tpm_nvfilename.h>
#include <libtpms/tpm_tis.h>

#include <cstdlib>
#include <cstring>
#include <string>
#include <string_view>

#if __has_include(<valgrind/memcheck.h>)
#include <valgrind/memcheck.h>
#define VTPMD_HAVE_MEMCHECK_H 1
#else
#define VTPMD_HAVE_MEMCHECK_H 0
#endif
#include <strings.h>

namespace vtpm::engine {
namespace {

// The callbacks below have no context pointer, so the state they work on
// lives here. Only the engine thread touches it (see the header contract).
struct LoadedState {
  StateBlobs* blobs = nullptr;
  std::uint8_t locality = 0;
  bool suppress_stores = false;
  bool permanent_changed = false;
  bool save_state_changed = false;
  // libtpms reallocates this response buffer as needed; reusing it saves a
  // malloc per command.
  unsigned char* response_buffer = nullptr;
  std::uint32_t response_buffer_size = 0;
};

LoadedState g_state;

Bytes* blob_for_name(const char* name) {
  if (g_state.blobs == nullptr) return nullptr;
  const std::string_view n(name);
  if (n == TPM_PERMANENT_ALL_NAME) return &g_state.blobs->permanent;
  if (n == TPM_VOLATILESTATE_NAME) return &g_state.blobs->volatile_state;
  if (n == TPM_SAVESTATE_NAME) return &g_state.blobs->save_state;
  return nullptr;
}

TPM_RESULT on_nvram_init() { return TPM_SUCCESS; }

TPM_RESULT on_nvram_load(unsigned char** data, std::uint32_t* length, std::uint32_t, const char* name) {
  Bytes* blob = blob_for_name(name);
  if (blob == nullptr || blob->empty()) return TPM_RETRY;  // "no such state yet"
  // libtpms releases this buffer with free().
  auto* copy = static_cast<unsigned char*>(std::malloc(blob->size()));
  if (copy == nullptr) return TPM_FAIL;
  std::memcpy(copy, blob->data(), blob->size());
  *data = copy;
  *length = static_cast<std::uint32_t>(blob->size());
  return TPM_SUCCESS;
}

// libtpms 0.9.2 writes some bytes of its state from uninitialised stack
// memory (the unused tail of a structure it stores whole: valgrind with
// --track-origins traces them to a stack frame in libtpms while an NV
// index is defined). The engine thread runs every instance, so those bytes
// could be another tenant's leftovers: load() clears the stack libtpms
// will use before each swap-in. What is left is this instance's own, and
// valgrind is told to treat libtpms' state as the opaque bytes it is.
void mark_state_bytes_defined([[maybe_unused]] const void* data, [[maybe_unused]] std::size_t length) {
#if VTPMD_HAVE_MEMCHECK_H
  VALGRIND_MAKE_MEM_DEFINED(data, length);
#endif
}

// Zeroes `kStackScrubBytes` of the stack below the caller; not inlined, so
// the array lies where libtpms' frames will.
constexpr std::size_t kStackScrubBytes = 32 * 1024;
[[gnu::noinline]] void scrub_stack() {
  unsigned char area[kStackScrubBytes];
  ::explicit_bzero(area, sizeof area);  // never elided, unlike memset of a dying array
}

TPM_RESULT on_nvram_store(const unsigned char* data, std::uint32_t length, std::uint32_t, const char* name) {
  if (g_state.suppress_stores) return TPM_SUCCESS;
  mark_state_bytes_defined(data, length);
  Bytes* blob = blob_for_name(name);
  if (blob == nullptr) return TPM_FAIL;
  blob->assign(data, data + length);
  if (blob == &g_state.blobs->permanent) g_state.permanent_changed = true;
  if (blob == &g_state.blobs->save_state) g_state.save_state_changed = true;
  return TPM_SUCCESS;
}

TPM_RESULT on_nvram_delete(std::uint32_t, const char* name, TPM_BOOL must_exist) {
  Bytes* blob = blob_for_name(name);
  if (blob == nullptr) return must_exist ? TPM_FAIL : TPM_SUCCESS;
  if (blob->empty() && must_exist) return TPM_FAIL;
  if (!blob->empty() && blob == &g_state.blobs->save_state) g_state.save_state_changed = true;
  blob->clear();
  return TPM_SUCCESS;
}

TPM_RESULT on_io_init() { return TPM_SUCCESS; }

TPM_RESULT on_get_locality(TPM_MODIFIER_INDICATOR* locality, std::uint32_t) {
  *locality = g_state.locality;
  return TPM_SUCCESS;
}

TPM_RESULT on_get_physical_presence(TPM_BOOL* present, std::uint32_t) {
  *present = FALSE;
  return TPM_SUCCESS;
}

TPMLIB_TPMVersion to_libtpms(TpmVersion v) {
  return v == TpmVersion::k12 ? TPMLIB_TPM_VERSION_1_2 : TPMLIB_TPM_VERSION_2;
}

Error libtpms_error(const char* what, TPM_RESULT rc) {
  return make_error(ErrorCode::kTpmFailure, std::string(what) + " failed with libtpms error 0x" +
                                                [rc] {
                                                  char buf[16];
                                                  std::snprintf(buf, sizeof buf, "%x", rc);
                                                  return std::string(buf);
                                                }());
}

}  // namespace

LibtpmsAdapter& LibtpmsAdapter::instance() {
  static LibtpmsAdapter adapter;
  return adapter;
}

LibtpmsAdapter::LibtpmsAdapter() {
  static libtpms_callbacks callbacks{};
  callbacks.sizeOfStruct = sizeof(callbacks);
  callbacks.tpm_nvram_init = on_nvram_init;
  callbacks.tpm_nvram_loaddata = on_nvram_load;
  callbacks.tpm_nvram_storedata = on_nvram_store;
  callbacks.tpm_nvram_deletename = on_nvram_delete;
  callbacks.tpm_io_init = on_io_init;
  callbacks.tpm_io_getlocality = on_get_locality;
  callbacks.tpm_io_getphysicalpresence = on_get_physical_presence;
  TPMLIB_RegisterCallbacks(&callbacks);
}

Status LibtpmsAdapter::load(const InstanceParams& params, StateBlobs* blobs) {
  if (TPM_RESULT rc = TPMLIB_ChooseTPMVersion(to_libtpms(params.version)); rc != TPM_SUCCESS) {
    return libtpms_error("TPMLIB_ChooseTPMVersion", rc);
  }
  std::uint32_t min_size = 0;
  std::uint32_t max_size = 0;
  TPMLIB_SetBufferSize(params.max_command_size, &min_size, &max_size);
  const bool restoring = !blobs->permanent.empty();
  g_state.blobs = blobs;
  g_state.suppress_stores = restoring;
  g_state.permanent_changed = false;
  g_state.save_state_changed = false;
  selftest_key_cache_restoring(restoring && params.version == TpmVersion::k12);
  scrub_stack();
  const TPM_RESULT rc = TPMLIB_MainInit();
  selftest_key_cache_restoring(false);
  g_state.suppress_stores = false;
  if (rc != TPM_SUCCESS) {
    TPMLIB_Terminate();
    g_state.blobs = nullptr;
    return libtpms_error(restoring ? "restoring state (TPMLIB_MainInit)" : "manufacturing (TPMLIB_MainInit)", rc);
  }
  return Status::success();
}

Status LibtpmsAdapter::capture_volatile() {
  unsigned char* buffer = nullptr;
  std::uint32_t length = 0;
  if (TPM_RESULT rc = TPMLIB_VolatileAll_Store(&buffer, &length); rc != TPM_SUCCESS) {
    return libtpms_error("TPMLIB_VolatileAll_Store", rc);
  }
  mark_state_bytes_defined(buffer, length);
  g_state.blobs->volatile_state.assign(buffer, buffer + length);
  std::free(buffer);
  return Status::success();
}

Status LibtpmsAdapter::unload() {
  Status status = capture_volatile();
  discard();
  return status;
}

void LibtpmsAdapter::discard() {
  // Terminate may still write NV through the callbacks; those writes belong
  // to the instance being unloaded, so blobs stays set until after it.
  TPMLIB_Terminate();
  g_state.blobs = nullptr;
}

bool LibtpmsAdapter::loaded() const { return g_state.blobs != nullptr; }

Result<Bytes> LibtpmsAdapter::process(Bytes& command, std::uint8_t locality) {
  g_state.locality = locality;
  std::uint32_t response_length = 0;
  const TPM_RESULT rc = TPMLIB_Process(&g_state.response_buffer, &response_length, &g_state.response_buffer_size,
                                       command.data(), static_cast<std::uint32_t>(command.size()));
  if (rc != TPM_SUCCESS) return libtpms_error("TPMLIB_Process", rc);
  return Bytes(g_state.response_buffer, g_state.response_buffer + response_length);
}

void LibtpmsAdapter::cancel() { TPMLIB_CancelCommand(); }

std::uint32_t LibtpmsAdapter::platform(JobKind kind, std::span<const std::uint8_t> data, std::uint8_t locality,
                                       bool* established) {
  g_state.locality = locality;
  switch (kind) {
    case JobKind::kHashStart: return TPM_IO_Hash_Start();
    case JobKind::kHashData: return TPM_IO_Hash_Data(data.data(), static_cast<std::uint32_t>(data.size()));
    case JobKind::kHashEnd: return TPM_IO_Hash_End();
    case JobKind::kEstablishedGet: {
      TPM_BOOL bit = FALSE;
      const TPM_RESULT rc = TPM_IO_TpmEstablished_Get(&bit);
      *established = bit != FALSE;
      return rc;
    }
    case JobKind::kEstablishedReset: return TPM_IO_TpmEstablished_Reset();
    default: return TPM_FAIL;
  }
}

bool LibtpmsAdapter::take_permanent_changed() { return std::exchange(g_state.permanent_changed, false); }

bool LibtpmsAdapter::take_save_state_changed() { return std::exchange(g_state.save_state_changed, false); }

}  // namespace vtpm::engine
