// The real MmioRegion: a mapping of physical memory through /dev/mem, as
// Xen's vtpmmgr reached the TPM from a domain without a TPM driver. Owns the
// fd and the mapping (both released by the destructor).
#pragma once

#include <cstdint>
#include <memory>
#include <string>

#include "backends/hwtpm/mmio_region.h"
#include "proto/result.h"

namespace vtpm::hwtpm {

class DevmemRegion final : public MmioRegion {
 public:
  // Maps [physical_base, physical_base + size) of `path` (default /dev/mem;
  // tests map a regular file). The base need not be page-aligned.
  static Result<std::unique_ptr<DevmemRegion>> open(std::uint64_t physical_base, std::size_t size,
                                                    const std::string& path = "/dev/mem");
  // Only open() can make the key, so only open() constructs.
  struct Key {
   private:
    Key() = default;
    friend class DevmemRegion;
  };
  DevmemRegion(Key, std::string path, int fd, void* mapping, std::size_t mapping_size, std::size_t page_offset,
               std::uint64_t physical_base, std::size_t size);
  ~DevmemRegion() override;
  DevmemRegion(const DevmemRegion&) = delete;
  DevmemRegion& operator=(const DevmemRegion&) = delete;

  std::uint64_t physical_base() const override { return physical_base_; }
  std::size_t size() const override { return size_; }
  std::string describe() const override;

 protected:
  std::uint8_t load8(std::size_t offset) override;
  std::uint32_t load32(std::size_t offset) override;
  void store8(std::size_t offset, std::uint8_t value) override;
  void store32(std::size_t offset, std::uint32_t value) override;

 private:
  volatile std::uint8_t* at(std::size_t offset) const;

  std::string path_;
  int fd_;
  void* mapping_;
  std::size_t mapping_size_;
  std::size_t page_offset_;  // physical_base_ - (page-aligned start of the mapping)
  std::uint64_t physical_base_;
  std::size_t size_;
};

}  // namespace vtpm::hwtpm
