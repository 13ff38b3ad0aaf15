// Spare blob files: zero-filled, allocated and synced ahead of need, so
// that the first write of a new instance's slot renames one into place and
// overwrites blocks that exist. Creating a file instead makes that write's
// fdatasync allocate blocks and commit a journal transaction: 0.5-7 ms on
// ext4 under I/O load, most of a durable `add` (docs/performance.md).
//
// Files are named `spare.<n>` in the state directory. Their content never
// matters (a taken spare is overwritten, keeping its length, blob then zeros; a
// blob that was not committed is discarded at start-up). Removed
// instances' shredded slot files are recycled as spares.
//
// Thread-safe: taken and recycled from the threadpool's blob writers and
// shreds in parallel, refilled by one background job.
#pragma once

#include <cstddef>
#include <cstdint>
#include <mutex>
#include <string>
#include <vector>

#include "proto/result.h"

namespace vtpm::state {

class SpareFiles {
 public:
  static constexpr std::size_t kTarget = 16;  // spares made by a refill
  // A refill is due at this many or fewer: refills come in bulk, not
  // after every add, so most adds' syncs do not queue behind a refill's.
  static constexpr std::size_t kLowWater = 8;
  static constexpr std::size_t kFileSize = 16 * 1024;  // covers a provisioned TPM's blob

  explicit SpareFiles(std::string directory) : directory_(std::move(directory)) {}

  // A directory entry found at start-up: adopted if it is a regular
  // `spare.<n>`. Returns whether the name is a spare's (adopted or not).
  bool adopt(const std::string& name);
  // Renames a spare to `path`, which must not exist. False when none is
  // left (the caller creates the file). The caller syncs the directory.
  bool take(const std::string& path);
  // The file at `path` (shredded: zero-filled and synced) becomes a spare
  // if fewer than kTarget are ready; otherwise it is unlinked.
  Status recycle(const std::string& path);
  // Creates spares up to kTarget (all written, then each fdatasynced, then
  // one directory fsync). Blocks on the disk: threadpool.
  Status refill();
  bool wanted() const;  // kLowWater or fewer ready
  std::size_t ready() const;

 private:
  std::string path_of(std::uint64_t n) const { return directory_ + "/spare." + std::to_string(n); }

  std::string directory_;
  mutable std::mutex mutex_;
  std::vector<std::uint64_t> ready_;  // numbers of the spares on disk
  std::uint64_t next_ = 0;            // never reused within a run
};

}  // namespace vtpm::state
