#include "state/state_store.h"

#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <memory>
#include <set>

#include "state/file_io.h"
#include "state/sealed_blob.h"

namespace vtpm::state {
namespace {

constexpr std::string_view kBlobSuffix = ".vtpm";
constexpr const char* kManifestName = "manifest";
constexpr const char* kMasterKeyName = "master.key";

std::string hex_of(std::span<const std::uint8_t> b) {
  static constexpr char kDigits[] = "0123456789abcdef";
  std::string s;
  for (auto v : b) {
    s += kDigits[v >> 4];
    s += kDigits[v & 15];
  }
  return s;
}

}  // namespace

StateStore::StateStore(std::string directory, RootOfTrust& root, CrashPoints crash)
    : directory_(std::move(directory)), root_(root), crash_(std::move(crash)) {}

std::string StateStore::blob_path(const Uuid& id) const {
  return directory_ + "/" + id.to_string() + std::string(kBlobSuffix);
}

Status prepare_directory(const std::string& path) {
  if (::mkdir(path.c_str(), 0700) != 0 && errno != EEXIST) return io_error("mkdir", path);
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0) return io_error("stat", path);
  if (!S_ISDIR(st.st_mode)) return make_error(ErrorCode::kIo, path + " is not a directory");
  return Status::success();
}

Result<MasterKey> StateStore::open_master_key(Drbg& drbg, bool store_has_state) {
  const std::string path = directory_ + "/" + kMasterKeyName;
  if (file_exists(path)) return load_master_key(path, root_);
  if (store_has_state) {
    // Creating a new key would make every existing blob undecryptable and
    // hide what happened: refuse, and leave everything as it is.
    return make_error(ErrorCode::kCorrupt, "the state directory " + directory_ +
                                               " holds instance state but no master key file (" + path +
                                               "); refusing to start rather than create a new key");
  }
  return create_master_key(path, root_, drbg);
}

Result<OpenedState> StateStore::open(Drbg& drbg) {
  if (Status s = prepare_directory(directory_); !s) return s.error();
  OpenedState out;
  std::vector<Uuid> blob_files;
  {
    std::unique_ptr<DIR, int (*)(DIR*)> dir(::opendir(directory_.c_str()), ::closedir);
    if (!dir) return io_error("opendir", directory_);
    while (dirent* entry = ::readdir(dir.get())) {
      const std::string name = entry->d_name;
      if (name.ends_with(".tmp")) {
        // An interrupted replace: the file it was replacing is intact.
        ::unlink((directory_ + "/" + name).c_str());
        out.notes.push_back("removed the leftover of an interrupted write: " + name);
        continue;
      }
      if (!name.ends_with(kBlobSuffix)) continue;
      auto id = Uuid::parse(std::string_view(name).substr(0, name.size() - kBlobSuffix.size()));
      if (!id) {
        out.notes.push_back("ignoring " + name + ": not named after a UUID");
        continue;
      }
      blob_files.push_back(*id);
    }
  }
  std::sort(blob_files.begin(), blob_files.end());
  const std::string manifest_path = directory_ + "/" + kManifestName;
  const bool has_manifest = file_exists(manifest_path);

  auto master = open_master_key(drbg, has_manifest || !blob_files.empty());
  if (!master) return master.error();
  master_ = *master;
  manifest_key_ = derive_manifest_key(master_);
  auto counter = root_.read_counter();
  if (!counter) return make_error(counter.error().code, "root of trust counter: " + counter.error().message);
  counter_ = *counter;

  std::string distrust;  // why the manifest cannot be used; empty if it can
  if (!has_manifest) {
    if (!blob_files.empty()) distrust = "the manifest is missing, so no state file can be checked for freshness";
  } else if (auto bytes = read_whole_file(manifest_path); !bytes) {
    distrust = bytes.error().message;
  } else if (auto m = decode_manifest(*bytes, manifest_key_); !m) {
    distrust = m.error().message;
    ::rename(manifest_path.c_str(), (manifest_path + ".rejected").c_str());
    out.notes.push_back("kept the rejected manifest as " + manifest_path + ".rejected");
  } else if (m->counter == counter_ || m->counter == counter_ + 1) {
    if (m->counter == counter_ + 1) {
      // A commit renamed its manifest but died before the increment.
      auto bumped = root_.increment_counter();
      if (!bumped) return bumped.error();
      counter_ = *bumped;
      out.notes.push_back("completed an interrupted manifest commit (counter now " + std::to_string(counter_) + ")");
    }
    out.manifest = std::move(*m);
  } else {
    distrust = "the manifest is bound to counter value " + std::to_string(m->counter) +
               " but the root of trust's counter is " + std::to_string(counter_) +
               (m->counter < counter_ ? ": the state directory was rolled back to an older copy"
                                      : ": the root of trust's counter went backwards");
    out.manifest = std::move(*m);
    for (auto& [id, entry] : out.manifest.entries) entry.quarantined = true;
  }

  if (!distrust.empty()) {
    for (const auto& id : blob_files) out.manifest.entries[id].quarantined = true;
    for (const auto& [id, entry] : out.manifest.entries) out.quarantined.emplace_back(id, distrust);
  } else {
    open_blobs(out, std::move(blob_files), true);
  }
  if (Status s = commit(out.manifest); !s) return s.error();
  return out;
}

void StateStore::open_blobs(OpenedState& out, std::vector<Uuid> blob_files, bool /*manifest_trusted*/) {
  const std::set<Uuid> on_disk(blob_files.begin(), blob_files.end());
  for (auto& [id, entry] : out.manifest.entries) {
    const std::string path = blob_path(id);
    auto reject = [&](const std::string& why) {
      entry.quarantined = true;
      out.quarantined.emplace_back(id, path + ": " + why);
    };
    if (entry.quarantined) {
      out.quarantined.emplace_back(id, "quarantined at an earlier start (see that start's log); " + path +
                                           " is kept for inspection");
      continue;
    }
    if (!on_disk.contains(id)) {
      reject("the state file is missing (the manifest lists generation " + std::to_string(entry.generation) + ")");
      continue;
    }
    auto bytes = read_whole_file(path);
    if (!bytes) {
      reject(bytes.error().message);
      continue;
    }
    auto opened = open_blob(instance_key(id, entry), *bytes, {id, entry.generation, entry.key_epoch});
    if (!opened) {
      reject(opened.error().message);
      continue;
    }
    const Digest digest = sha256(*bytes);
    if (opened->header.generation == entry.generation && digest != entry.blob_digest) {
      reject("generation " + std::to_string(entry.generation) + " but SHA-256 " + hex_of(digest) +
             " differs from the manifest's " + hex_of(entry.blob_digest));
      continue;
    }
    auto record = decode_record(opened->body);
    if (!record || record->uuid != id || record->version != opened->header.tpm) {
      reject(record ? "the record inside does not match its header" : record.error().message);
      continue;
    }
    if (opened->header.generation != entry.generation) {
      out.notes.push_back(id.to_string() + ": generation " + std::to_string(opened->header.generation) +
                          " reached the disk before a crash stopped its commit; it is adopted");
      entry.generation = opened->header.generation;
      entry.blob_digest = digest;
    }
    out.records.push_back(std::move(*record));
  }
  for (const auto& id : blob_files) {
    if (out.manifest.entries.contains(id)) continue;
    // Not in a trusted manifest: an add that crashed before its commit, or
    // a remove that crashed after it. Neither was acknowledged as existing.
    if (Status s = shred(id); !s) out.notes.push_back("cannot discard " + blob_path(id) + ": " + s.error().message);
    else out.notes.push_back("discarded " + blob_path(id) + ": not in the manifest (an uncommitted add or remove)");
  }
}

Result<Digest> StateStore::write_blob(const Uuid& id, std::span<const std::uint8_t> sealed) const {
  const Status s = replace_file(blob_path(id), sealed, [this](const char* step) {
    crash_.reached(std::string("blob-") + step);
  });
  if (!s) return s.error();
  return sha256(sealed);
}

Status StateStore::commit(Manifest manifest) {
  // The blobs' renames must be durable before a manifest that names them.
  if (Status s = sync_directory(directory_); !s) return s;
  manifest.counter = counter_ + 1;
  const Bytes bytes = encode_manifest(manifest, manifest_key_);
  const Status written = replace_file(directory_ + "/" + kManifestName, bytes, [this](const char* step) {
    crash_.reached(std::string("manifest-") + step);
  });
  if (!written) return written;
  if (Status s = sync_directory(directory_); !s) return s;
  auto bumped = root_.increment_counter();
  if (!bumped) return bumped.error();
  if (*bumped != manifest.counter) {
    return make_error(ErrorCode::kInternal, "root of trust counter moved to " + std::to_string(*bumped) +
                                                 ", expected " + std::to_string(manifest.counter));
  }
  counter_ = *bumped;
  crash_.reached("counter-incremented");
  return Status::success();
}

Status StateStore::shred(const Uuid& id) const {
  const std::string path = blob_path(id);
  {
    Fd fd(::open(path.c_str(), O_WRONLY | O_CLOEXEC));
    if (!fd.valid()) return errno == ENOENT ? Status::success() : Status(io_error("open", path));
    struct stat st {};
    if (::fstat(fd.get(), &st) == 0 && st.st_size > 0) {
      // Not key material: the overwrite only has to differ from the original.
      Bytes noise(static_cast<std::size_t>(st.st_size), 0);
      if (Status s = write_all(fd.get(), noise, path); !s) return s;
      if (::fdatasync(fd.get()) != 0) return io_error("fdatasync", path);
    }
  }
  if (::unlink(path.c_str()) != 0 && errno != ENOENT) return io_error("unlink", path);
  return sync_directory(directory_);
}

}  // namespace vtpm::state
