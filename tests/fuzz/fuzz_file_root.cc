// Fuzz target: the file root of trust's files (state/file_root.h): the root key file, its counter
// file and the sealed master key it unseals. Files live in a private directory on /dev/shm (or
// /tmp), rewritten for every input.
// Input: u8 flags (bit 0: key file readable by group/others; bit 1: the counter file is made
// valid, holding the u64 below under the key's MAC; bit 2: no key file, open() creates one),
// u8 key length + key bytes, u64 counter value, u8 counter length + counter bytes (when not made
// valid), then the sealed master key handed to unseal().
// Invariants: open() accepts exactly a 32-byte key file that only its owner can read (or creates
// one); the counter reads as 0 when empty, as the value under a valid MAC, and fails otherwise;
// increment_counter() returns one more and reads back; unseal() refuses anything seal() did not
// produce under this key, and returns exactly what seal() sealed.
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdint>
#include <cstdlib>
#include <string>

#include "state/file_io.h"
#include "state/file_root.h"
#include "tests/fuzz/fuzz_util.h"

using namespace vtpm;
using namespace vtpm::state;

namespace {

const std::string& directory() {
  static const std::string dir = [] {
    std::string templ = (::access("/dev/shm", W_OK) == 0 ? "/dev/shm" : "/tmp") + std::string("/vtpmd-fuzz-root.XXXXXX");
    if (::mkdtemp(templ.data()) == nullptr) std::abort();
    return templ;
  }();
  return dir;
}

void write_file(const std::string& path, std::span<const std::uint8_t> bytes, mode_t mode) {
  ::unlink(path.c_str());
  Fd fd(::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, mode));
  if (!fd.valid() || ::fchmod(fd.get(), mode) != 0) std::abort();
  if (!bytes.empty() && ::write(fd.get(), bytes.data(), bytes.size()) != static_cast<ssize_t>(bytes.size())) std::abort();
}

Drbg& drbg() {
  static Drbg instance;
  return instance;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  fuzz::Input in(data, size);
  const std::uint8_t flags = in.u8();
  const auto key = in.bytes(in.u8());
  const std::uint64_t value = in.u64();
  const auto counter = in.bytes(in.u8());
  const auto sealed = in.rest();

  const std::string key_path = directory() + "/root.key";
  const std::string counter_path = key_path + ".counter";
  const bool shared = (flags & 1) != 0;
  const bool create = (flags & 4) != 0;
  if (create) {
    ::unlink(key_path.c_str());
  } else {
    write_file(key_path, key, shared ? 0644 : 0600);
  }
  // A valid counter file starts empty and is advanced below by a second root on the same key.
  write_file(counter_path, (flags & 2) != 0 ? std::span<const std::uint8_t>{} : counter, 0600);

  auto root = FileRootOfTrust::open(key_path, drbg());
  const bool acceptable = create || (!shared && key.size() == kKeySize);
  FUZZ_CHECK(root.ok() == acceptable);
  if (!root) {
    FUZZ_CHECK(!root.error().message.empty());
    return 0;
  }

  if ((flags & 2) != 0) {
    auto writer = FileRootOfTrust::open(key_path, drbg());
    FUZZ_CHECK(writer.ok());
    for (std::uint64_t i = 0; i < (value & 3); ++i) FUZZ_CHECK((*writer)->increment_counter().ok());
  }
  auto read = (*root)->read_counter();
  if ((flags & 2) != 0) {
    FUZZ_CHECK(read.ok() && *read == (value & 3));
  } else if (counter.empty()) {
    FUZZ_CHECK(read.ok() && *read == 0);
  } else if (counter.size() < 40) {
    FUZZ_CHECK(!read.ok());
  }
  if (read) {
    auto next = (*root)->increment_counter();
    FUZZ_CHECK(next.ok() && *next == *read + 1);
    auto again = (*root)->read_counter();
    FUZZ_CHECK(again.ok() && *again == *next);
  }

  // Unsealing outside bytes: refused unless they are a genuine seal (never, by chance).
  auto opened = (*root)->unseal(sealed);
  if (opened) FUZZ_CHECK(sealed.size() == kNonceSize + kKeySize + kTagSize);
  // A genuine seal of a key taken from the input opens to that key, and not once modified.
  const SecretKey secret(sealed.size() >= kKeySize ? sealed.first(kKeySize) : sealed);
  auto blob = (*root)->seal(secret);
  FUZZ_CHECK(blob.ok());
  auto back = (*root)->unseal(*blob);
  FUZZ_CHECK(back.ok() && std::equal(back->bytes().begin(), back->bytes().end(), secret.bytes().begin()));
  Bytes tampered = *blob;
  tampered[value % tampered.size()] ^= static_cast<std::uint8_t>(1u << (flags >> 5));
  FUZZ_CHECK(!(*root)->unseal(tampered).ok());
  return 0;
}
