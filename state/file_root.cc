#include "state/file_root.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>

namespace vtpm::state {
namespace {

constexpr std::size_t kCounterFileSize = 8 + kDigestSize;  // value, HMAC(value)

std::string directory_of(const std::string& path) {
  const auto slash = path.rfind('/');
  return slash == std::string::npos ? "." : slash == 0 ? "/" : path.substr(0, slash);
}

std::string octal(mode_t mode) {
  char buf[8];
  std::snprintf(buf, sizeof buf, "%04o", static_cast<unsigned>(mode & 07777));
  return buf;
}

Result<SecretKey> create_key_file(const std::string& path, Drbg& drbg) {
  auto key = drbg.new_key();
  if (!key) return key.error();
  Fd fd(::open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600));
  if (!fd.valid()) return io_error("create", path);
  if (Status s = write_all(fd.get(), key->bytes(), path); !s) return s.error();
  if (::fsync(fd.get()) != 0) return io_error("fsync", path);
  if (Status s = sync_directory(directory_of(path)); !s) return s.error();
  return key;
}

// Reads the key straight into secure memory: no buffer on the way holds it.
Result<SecretKey> read_key_file(const std::string& path) {
  Fd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (!fd.valid()) return io_error("open", path);
  struct stat st {};
  if (::fstat(fd.get(), &st) != 0) return io_error("stat", path);
  if ((st.st_mode & 077) != 0) {
    return make_error(ErrorCode::kInvalidArgument, "root key file " + path + " is accessible by group or others (mode " +
                                                       octal(st.st_mode) + "); run: chmod 600 " + path);
  }
  if (st.st_size != static_cast<off_t>(kKeySize)) {
    return make_error(ErrorCode::kCorrupt, "root key file " + path + " has " + std::to_string(st.st_size) +
                                               " bytes, expected " + std::to_string(kKeySize));
  }
  SecretKey key;
  const auto out = key.mutable_bytes();
  std::size_t done = 0;
  while (done < out.size()) {
    const ssize_t n = ::read(fd.get(), out.data() + done, out.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return io_error("read", path);
    if (n == 0) return make_error(ErrorCode::kCorrupt, "root key file " + path + " shrank while being read");
    done += static_cast<std::size_t>(n);
  }
  return key;
}

}  // namespace

Result<std::unique_ptr<FileRootOfTrust>> FileRootOfTrust::open(const std::string& key_path, Drbg& drbg) {
  auto key = file_exists(key_path) ? read_key_file(key_path) : create_key_file(key_path, drbg);
  if (!key) return key.error();
  const std::string counter_path = key_path + ".counter";
  Fd counter(::open(counter_path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600));
  if (!counter.valid()) return io_error("open", counter_path);
  if (Status s = sync_directory(directory_of(counter_path)); !s) return s.error();
  return std::make_unique<FileRootOfTrust>(OpenTag{}, key_path, *key, drbg, std::move(counter));
}

FileRootOfTrust::FileRootOfTrust(OpenTag, std::string key_path, const SecretKey& root_key, Drbg& drbg, Fd counter_fd)
    : key_path_(std::move(key_path)),
      wrap_key_(hkdf_sha256(root_key, {}, as_bytes("vtpmd file root: master key wrap"))),
      counter_key_(hkdf_sha256(root_key, {}, as_bytes("vtpmd file root: counter mac"))),
      drbg_(drbg),
      counter_fd_(std::move(counter_fd)) {}

std::string FileRootOfTrust::describe() const {
  return "file " + key_path_ + " (NOT hardware-protected: anyone who can read this file can decrypt every vTPM)";
}

Result<Bytes> FileRootOfTrust::seal(const SecretKey& secret) {
  auto nonce = drbg_.new_nonce();
  if (!nonce) return nonce.error();
  Bytes out(nonce->begin(), nonce->end());
  const Bytes sealed = aes_gcm_seal(wrap_key_, *nonce, as_bytes("vtpmd master key"), secret.bytes());
  out.insert(out.end(), sealed.begin(), sealed.end());
  return out;
}

Result<SecretKey> FileRootOfTrust::unseal(std::span<const std::uint8_t> sealed) {
  if (sealed.size() != kNonceSize + kKeySize + kTagSize) {
    return make_error(ErrorCode::kCorrupt, "sealed master key has the wrong size");
  }
  Nonce nonce{};
  std::copy_n(sealed.begin(), kNonceSize, nonce.begin());
  auto key = aes_gcm_open(wrap_key_, nonce, as_bytes("vtpmd master key"), sealed.subspan(kNonceSize));
  if (!key) {
    return make_error(ErrorCode::kCorrupt, "cannot unseal the master key with root key " + key_path_ +
                                               " (a different root key, or a modified master key file)");
  }
  if (key->size() != kKeySize) return make_error(ErrorCode::kCorrupt, "sealed master key has the wrong size");
  return SecretKey(*key);
}

Result<std::uint64_t> FileRootOfTrust::read_counter() {
  const std::string path = key_path_ + ".counter";
  std::uint8_t buf[kCounterFileSize];
  const ssize_t n = ::pread(counter_fd_.get(), buf, sizeof buf, 0);
  if (n < 0) return io_error("read", path);
  if (n == 0) return std::uint64_t{0};  // new counter
  if (static_cast<std::size_t>(n) != sizeof buf) return make_error(ErrorCode::kCorrupt, "counter file " + path + " is truncated");
  const std::span<const std::uint8_t> value(buf, 8);
  if (!equal_in_constant_time(hmac_sha256(counter_key_, value), std::span<const std::uint8_t>(buf + 8, kDigestSize))) {
    return make_error(ErrorCode::kCorrupt, "counter file " + path + " fails its MAC (modified)");
  }
  ByteReader r(value);
  return r.u64();
}

Status FileRootOfTrust::write_counter(std::uint64_t value) {
  ByteWriter w;
  w.u64(value);
  const Digest mac = hmac_sha256(counter_key_, w.bytes());
  w.raw(mac);
  const std::string path = key_path_ + ".counter";
  // One 40-byte write inside the first sector: not torn in practice.
  if (::pwrite(counter_fd_.get(), w.bytes().data(), w.size(), 0) != static_cast<ssize_t>(w.size())) {
    return io_error("write", path);
  }
  if (::fdatasync(counter_fd_.get()) != 0) return io_error("fdatasync", path);
  return Status::success();
}

Result<std::uint64_t> FileRootOfTrust::increment_counter() {
  auto value = read_counter();
  if (!value) return value.error();
  if (Status s = write_counter(*value + 1); !s) return s.error();
  return *value + 1;
}

}  // namespace vtpm::state
