// The embedded default root of trust: a 256-bit key in a file (mode 0600)
// and a counter file beside it. It protects against nothing that can read
// the key file: use it where no hardware TPM exists, and know that it is
// not hardware-protected (vtpmd says so loudly at every start).
//
// The counter is best-effort: a rollback of the whole directory that
// holds the key and counter files goes unnoticed. Keeping the key file on
// other storage than the state directory (--root-key-file) narrows that.
#pragma once

#include <memory>
#include <string>

#include "state/file_io.h"
#include "state/root_of_trust.h"

namespace vtpm::state {

class FileRootOfTrust final : public RootOfTrust {
 public:
  // Creates the key file (32 random bytes, 0600) if it does not exist;
  // refuses a key file that group or others can access, or of wrong size.
  static Result<std::unique_ptr<FileRootOfTrust>> open(const std::string& key_path, Drbg& drbg);

  std::string kind() const override { return "file"; }
  std::string describe() const override;
  bool hardware_protected() const override { return false; }
  Result<Bytes> seal(const SecretKey& secret) override;
  Result<SecretKey> unseal(std::span<const std::uint8_t> sealed) override;
  Result<std::uint64_t> read_counter() override;
  Result<std::uint64_t> increment_counter() override;

  // Use open(); the tag keeps the constructor private in effect.
  struct OpenTag {};
  FileRootOfTrust(OpenTag, std::string key_path, const SecretKey& root_key, Drbg& drbg, Fd counter_fd);

 private:
  Status write_counter(std::uint64_t value);

  std::string key_path_;
  SecretKey wrap_key_;     // seals the master key
  SecretKey counter_key_;  // MACs the counter file
  Drbg& drbg_;
  Fd counter_fd_;
};

}  // namespace vtpm::state
