#include "backends/hwtpm/devmem_region.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <unistd.h>

#include <bit>
#include <cerrno>
#include <cstdio>
#include <cstring>

namespace vtpm::hwtpm {

namespace {

static_assert(std::endian::native == std::endian::little,
              "TPM registers are little-endian; a big-endian host needs byte swaps in load32/store32");

std::string hex(std::uint64_t v) {
  char buf[24];
  std::snprintf(buf, sizeof buf, "0x%llx", static_cast<unsigned long long>(v));
  return buf;
}

std::string open_hint(int err, const std::string& path) {
  if (err == ENOENT) return " (no " + path + ": the kernel lacks CONFIG_DEVMEM, or /dev is not populated)";
  if (err == EACCES || err == EPERM) {
    return " (vtpmd needs root with CAP_SYS_RAWIO to map " + path +
           "; a sandbox or lockdown=integrity also forbids it)";
  }
  return "";
}

std::string mmap_hint(int err) {
  if (err == EPERM || err == EACCES) {
    return " (the range is probably claimed by a kernel TPM driver under CONFIG_IO_STRICT_DEVMEM: unload "
           "tpm_tis/tpm_crb, or boot with iomem=relaxed)";
  }
  if (err == EINVAL) return " (address or size not accepted by the kernel)";
  return "";
}

}  // namespace

Result<std::unique_ptr<DevmemRegion>> DevmemRegion::open(std::uint64_t physical_base, std::size_t size,
                                                        const std::string& path) {
  if (size == 0) return make_error(ErrorCode::kInvalidArgument, "MMIO window of 0 bytes");
  const long page = ::sysconf(_SC_PAGESIZE);
  const auto page_size = static_cast<std::uint64_t>(page > 0 ? page : 4096);
  const std::uint64_t aligned = physical_base & ~(page_size - 1);
  const auto page_offset = static_cast<std::size_t>(physical_base - aligned);
  const std::size_t mapping_size = (page_offset + size + page_size - 1) / page_size * page_size;

  const int fd = ::open(path.c_str(), O_RDWR | O_SYNC | O_CLOEXEC);
  if (fd < 0) {
    const int err = errno;
    return make_error(err == EACCES || err == EPERM ? ErrorCode::kPermissionDenied : ErrorCode::kUnavailable,
                      "cannot open " + path + ": " + std::strerror(err) + open_hint(err, path));
  }
  void* mapping = ::mmap(nullptr, mapping_size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, static_cast<off_t>(aligned));
  if (mapping == MAP_FAILED) {
    const int err = errno;
    ::close(fd);
    return make_error(err == EACCES || err == EPERM ? ErrorCode::kPermissionDenied : ErrorCode::kIo,
                      "cannot map " + hex(size) + " bytes at physical " + hex(physical_base) + " of " + path + ": " +
                          std::strerror(err) + mmap_hint(err));
  }
  return std::make_unique<DevmemRegion>(Key{}, path, fd, mapping, mapping_size, page_offset, physical_base, size);
}

DevmemRegion::DevmemRegion(Key, std::string path, int fd, void* mapping, std::size_t mapping_size,
                           std::size_t page_offset, std::uint64_t physical_base, std::size_t size)
    : path_(std::move(path)),
      fd_(fd),
      mapping_(mapping),
      mapping_size_(mapping_size),
      page_offset_(page_offset),
      physical_base_(physical_base),
      size_(size) {}

DevmemRegion::~DevmemRegion() {
  ::munmap(mapping_, mapping_size_);
  ::close(fd_);
}

std::string DevmemRegion::describe() const { return path_ + "@" + hex(physical_base_); }

volatile std::uint8_t* DevmemRegion::at(std::size_t offset) const {
  return static_cast<volatile std::uint8_t*>(mapping_) + page_offset_ + offset;
}

// Volatile single accesses of the register's width: the compiler must neither
// merge, split, reorder nor elide them (each one can have a side effect on
// the device, e.g. a FIFO read).
std::uint8_t DevmemRegion::load8(std::size_t offset) { return *at(offset); }

std::uint32_t DevmemRegion::load32(std::size_t offset) {
  // TPM registers are little-endian, as are the hosts vtpmd runs on (x86, arm64).
  return *reinterpret_cast<volatile std::uint32_t*>(at(offset));
}

void DevmemRegion::store8(std::size_t offset, std::uint8_t value) { *at(offset) = value; }

void DevmemRegion::store32(std::size_t offset, std::uint32_t value) {
  *reinterpret_cast<volatile std::uint32_t*>(at(offset)) = value;
}

}  // namespace vtpm::hwtpm
