// Instance records as files in the state directory, one "<uuid>.vtpm" per
// instance. Writes are crash-safe: write a temporary file, fsync it, rename
// it over the old one, fsync the directory. Blocking: call from a worker
// thread (the daemon uses the libuv threadpool), never from the loop.
#pragma once

#include <string>
#include <vector>

#include "proto/result.h"
#include "state/instance_record.h"

namespace vtpm::state {

struct LoadedRecords {
  std::vector<InstanceRecord> records;
  // Files that could not be read or decoded: "<file>: <why>". They are left
  // in place for an operator to inspect; the instance is not re-created.
  std::vector<std::string> failures;
  // UUIDs (from the file names) of the unreadable files, in the same order
  // as `failures` where the file name is a UUID. The daemon keeps these
  // UUIDs reserved so that nothing is re-created over the evidence.
  std::vector<std::pair<Uuid, std::string>> unreadable;
};

class FileStore {
 public:
  explicit FileStore(std::string directory) : directory_(std::move(directory)) {}

  // Creates the directory (mode 0700) if missing.
  Status prepare() const;
  Status save(const InstanceRecord& record) const;
  Status remove(const Uuid& id) const;
  LoadedRecords load_all() const;
  std::string path_of(const Uuid& id) const;
  const std::string& directory() const { return directory_; }

 private:
  Status sync_directory() const;

  std::string directory_;
};

}  // namespace vtpm::state
