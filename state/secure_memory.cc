#include "state/secure_memory.h"

#include <mbedtls/platform_util.h>
#include <sys/mman.h>
#include <unistd.h>

#include <array>
#include <mutex>
#include <unordered_map>

namespace vtpm::state {
namespace {

// Slot sizes of the shared pages; a larger block gets its own mapping.
constexpr std::array<std::size_t, 7> kSlotSizes = {32, 64, 128, 256, 512, 1024, 2048};

std::size_t page_size() {
  static const std::size_t size = static_cast<std::size_t>(::sysconf(_SC_PAGESIZE));
  return size;
}

class Arena {
 public:
  void* allocate(std::size_t size) {
    const std::size_t wanted = size == 0 ? 1 : size;
    std::lock_guard lock(mutex_);
    for (std::size_t c = 0; c < kSlotSizes.size(); ++c) {
      if (wanted > kSlotSizes[c]) continue;
      auto& free = free_[c];
      if (free.empty()) carve(c);
      void* block = free.back();
      free.pop_back();
      ++in_use_;
      return block;
    }
    const std::size_t length = round_to_pages(wanted);
    void* start = nullptr;
    const bool locked = map(length, start);
    try {
      large_.emplace(start, Large{length, locked});
    } catch (...) {
      unmap(start, length, locked);
      throw;
    }
    ++in_use_;
    return start;
  }

  void deallocate(void* block, std::size_t size) noexcept {
    if (block == nullptr) return;
    const std::size_t wanted = size == 0 ? 1 : size;
    std::lock_guard lock(mutex_);
    --in_use_;
    for (std::size_t c = 0; c < kSlotSizes.size(); ++c) {
      if (wanted > kSlotSizes[c]) continue;
      // Wipe the whole slot: a vector may have used less than it asked for.
      mbedtls_platform_zeroize(block, kSlotSizes[c]);
      free_[c].push_back(block);  // capacity reserved in carve(): cannot throw
      return;
    }
    auto it = large_.find(block);
    if (it == large_.end()) return;  // not ours: nothing safe to do
    mbedtls_platform_zeroize(block, it->second.length);
    unmap(block, it->second.length, it->second.locked);
    large_.erase(it);
  }

  SecureMemoryStats stats() {
    std::lock_guard lock(mutex_);
    return {mapped_, locked_, in_use_};
  }

 private:
  struct Large {
    std::size_t length = 0;
    bool locked = false;
  };

  static std::size_t round_to_pages(std::size_t n) { return (n + page_size() - 1) / page_size() * page_size(); }

  // Maps `length` bytes into `start`; returns whether they are locked.
  // Throws std::bad_alloc if the kernel refuses the mapping.
  bool map(std::size_t length, void*& start) {
    void* p = ::mmap(nullptr, length, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED) throw std::bad_alloc();
    // Out of core dumps. This one is not best effort: without it the
    // arena would promise what it cannot keep.
    if (::madvise(p, length, MADV_DONTDUMP) != 0) {
      ::munmap(p, length);
      throw std::bad_alloc();
    }
    // A child between fork and exec (a vtpmd-engine spawn) sees zeros.
    ::madvise(p, length, MADV_WIPEONFORK);
    // Out of swap where RLIMIT_MEMLOCK allows.
    const bool locked = ::mlock(p, length) == 0;
    start = p;
    mapped_ += length;
    if (locked) locked_ += length;
    return locked;
  }

  void unmap(void* start, std::size_t length, bool locked) noexcept {
    mapped_ -= length;
    if (locked) locked_ -= length;
    ::munmap(start, length);  // also unlocks
  }

  void carve(std::size_t c) {
    const std::size_t slots = page_size() / kSlotSizes[c];
    auto& free = free_[c];
    // Room for every slot of the class first, so deallocate never allocates.
    free.reserve(slot_count_[c] + slots);
    void* start = nullptr;
    map(page_size(), start);
    slot_count_[c] += slots;
    auto* bytes = static_cast<std::uint8_t*>(start);
    for (std::size_t i = slots; i-- > 0;) free.push_back(bytes + i * kSlotSizes[c]);
  }

  std::mutex mutex_;
  std::array<std::vector<void*>, kSlotSizes.size()> free_;
  std::array<std::size_t, kSlotSizes.size()> slot_count_{};
  std::unordered_map<void*, Large> large_;
  std::size_t mapped_ = 0;
  std::size_t locked_ = 0;
  std::size_t in_use_ = 0;
};

// Never destroyed: a key in a static object may be freed during exit,
// after the arena's own destructor would have run.
union ImmortalArena {
  ImmortalArena() : arena() {}
  ~ImmortalArena() {}
  Arena arena;
};

Arena& arena() {
  static ImmortalArena holder;
  return holder.arena;
}

}  // namespace

void* secure_allocate(std::size_t size) { return arena().allocate(size); }

void secure_deallocate(void* block, std::size_t size) noexcept { arena().deallocate(block, size); }

SecureMemoryStats secure_memory_stats() { return arena().stats(); }

void wipe(std::span<std::uint8_t> bytes) noexcept { mbedtls_platform_zeroize(bytes.data(), bytes.size()); }

}  // namespace vtpm::state
