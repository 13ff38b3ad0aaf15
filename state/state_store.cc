#include "state/state_store.h"

#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <memory>
#include <optional>
#include <set>

#include "proto/hex.h"
#include "state/file_io.h"
#include "state/sealed_blob.h"

namespace vtpm::state {
namespace {

constexpr std::string_view kBlobSuffix = ".vtpm";
constexpr const char* kMasterKeyName = "master.key";

char slot_letter(std::uint64_t n) { return (n & 1) == 0 ? 'a' : 'b'; }

}  // namespace

StateStore::StateStore(std::string directory, RootOfTrust& root, CrashPoints crash)
    : directory_(std::move(directory)), spares_(directory_), root_(root), crash_(std::move(crash)) {}

std::string StateStore::blob_path(const Uuid& id, std::uint64_t generation) const {
  return directory_ + "/" + id.to_string() + "." + slot_letter(generation) + std::string(kBlobSuffix);
}

std::string StateStore::manifest_path(std::uint64_t sequence) const {
  return directory_ + "/manifest." + slot_letter(sequence);
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
  std::set<Uuid> blob_owners;
  bool has_manifest = false;
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
      if (name == "manifest.a" || name == "manifest.b") has_manifest = true;
      if (spares_.adopt(name)) continue;
      // <uuid>.a.vtpm or <uuid>.b.vtpm
      if (!name.ends_with(kBlobSuffix) || name.size() < kBlobSuffix.size() + 2) continue;
      const std::string_view stem = std::string_view(name).substr(0, name.size() - kBlobSuffix.size() - 2);
      const std::string_view slot = std::string_view(name).substr(stem.size(), 2);
      auto id = Uuid::parse(stem);
      if (!id || (slot != ".a" && slot != ".b")) {
        out.notes.push_back("ignoring " + name + ": not a state file name (<uuid>.a.vtpm or <uuid>.b.vtpm)");
        continue;
      }
      blob_owners.insert(*id);
    }
  }
  const std::vector<Uuid> blob_files(blob_owners.begin(), blob_owners.end());

  auto master = open_master_key(drbg, has_manifest || !blob_files.empty());
  if (!master) return master.error();
  master_ = *master;
  manifest_key_ = derive_manifest_key(master_);
  auto counter = root_.read_counter();
  if (!counter) return make_error(counter.error().code, "root of trust counter: " + counter.error().message);
  counter_ = *counter;
  target_ = counter_;
  counter_value_ = counter_;

  // The newest manifest that authenticates. A slot that fails is either a
  // torn write of a commit that never finished (the other slot is then
  // current) or tampering (then no current manifest remains).
  std::optional<Manifest> newest;
  std::vector<std::string> rejected;
  for (const std::string& path : {manifest_path(0), manifest_path(1)}) {
    if (!file_exists(path)) continue;
    auto bytes = read_whole_file(path);
    auto inside = bytes ? manifest_in_file(*bytes) : Result<std::span<const std::uint8_t>>(bytes.error());
    auto m = inside ? decode_manifest(*inside, manifest_key_) : Result<Manifest>(inside.error());
    if (!m) {
      rejected.push_back(path + ": " + m.error().message);
      continue;
    }
    if (!newest || m->sequence > newest->sequence) newest = std::move(*m);
  }

  std::string distrust;  // why the manifest cannot be used; empty if it can
  if (!has_manifest) {
    if (!blob_files.empty()) distrust = "the manifest is missing, so no state file can be checked for freshness";
  } else if (!newest) {
    distrust = rejected.empty() ? "no readable manifest" : rejected.front();
  } else if (newest->counter == counter_ || newest->counter == counter_ + 1) {
    if (newest->counter == counter_ + 1) {
      // A commit wrote its manifest but died before the increment.
      auto bumped = root_.increment_counter();
      if (!bumped) return bumped.error();
      counter_ = target_ = *bumped;
      out.notes.push_back("completed an interrupted counter increment (counter now " + std::to_string(counter_) + ")");
    }
    sequence_ = newest->sequence;
    out.manifest = std::move(*newest);
  } else {
    distrust = "the newest manifest is bound to counter value " + std::to_string(newest->counter) +
               " but the root of trust's counter is " + std::to_string(counter_) +
               (newest->counter < counter_ ? ": the state directory was rolled back to an older copy"
                                           : ": the root of trust's counter went backwards");
    sequence_ = newest->sequence;
    out.manifest = std::move(*newest);
    for (auto& [id, entry] : out.manifest.entries) entry.quarantined = true;
  }
  if (!distrust.empty()) {
    for (const auto& why : rejected) {
      if (distrust != why) distrust += "; rejected " + why;
    }
    for (const auto& id : blob_files) out.manifest.entries[id].quarantined = true;
    for (const auto& [id, entry] : out.manifest.entries) out.quarantined.emplace_back(id, distrust);
  } else {
    open_blobs(out, blob_files);
  }
  // Evidence: both slots get rewritten from here on, so keep a manifest
  // that failed aside when it left the store without a trusted one.
  for (const std::string& path : {manifest_path(0), manifest_path(1)}) {
    for (const auto& why : rejected) {
      if (!distrust.empty() && why.starts_with(path + ":") &&
          ::rename(path.c_str(), (path + ".rejected").c_str()) == 0) {
        out.notes.push_back("kept the rejected manifest as " + path + ".rejected");
      }
    }
  }
  // Every start begins a new epoch: copies of the directory taken before
  // it are recognisably old from here on.
  epoch_requested_ = true;
  last_advance_ = std::chrono::steady_clock::now();
  if (Status s = commit(out.manifest, true); !s) return s.error();
  advance_epoch();
  if (Status s = spares_.refill(); !s) out.notes.push_back("cannot create spare state files: " + s.error().message);
  if (target_ != counter_) {
    return make_error(ErrorCode::kUnavailable, "cannot advance the root of trust's counter: " + counter_status().problem);
  }
  return out;
}

Result<InstanceRecord> StateStore::open_instance(const Uuid& id, ManifestEntry& entry, const Bytes* inline_blob,
                                                 std::vector<std::string>& notes) const {
  const SecretKey key = instance_key(id, entry);
  // The next generation first: written before a crash stopped its commit,
  // it is newer than the committed one (and was never acknowledged).
  const std::string next_path = blob_path(id, entry.generation + 1);
  if (file_exists(next_path)) {
    auto bytes = read_whole_file(next_path);
    auto blob = bytes ? sealed_blob_in_file(*bytes) : Result<std::span<const std::uint8_t>>(bytes.error());
    if (blob) {
      auto opened = open_blob(key, *blob, {id, entry.generation + 1, entry.key_epoch});
      if (opened && opened->header.generation == entry.generation + 1) {
        auto record = decode_record(opened->body);
        if (record && record->uuid == id && record->version == opened->header.tpm) {
          notes.push_back(id.to_string() + ": generation " + std::to_string(entry.generation + 1) +
                          " reached the disk before a crash stopped its commit; it is adopted");
          entry.generation += 1;
          entry.blob_digest = sha256(*blob);
          return record;
        }
      }
    }
  }
  // The committed generation: in the manifest itself (a new instance's
  // first write), or in its slot file.
  const std::string path = inline_blob != nullptr ? "the manifest's inline blob of " + id.to_string()
                                                  : blob_path(id, entry.generation);
  auto fail = [&](const std::string& why) -> Result<InstanceRecord> {
    return make_error(ErrorCode::kCorrupt, path + ": " + why);
  };
  Result<Bytes> bytes = Bytes{};
  Result<std::span<const std::uint8_t>> blob = std::span<const std::uint8_t>{};
  if (inline_blob != nullptr) {
    blob = std::span<const std::uint8_t>(*inline_blob);
  } else {
    if (!file_exists(path)) {
      return fail("the state file is missing (the manifest lists generation " + std::to_string(entry.generation) + ")");
    }
    bytes = read_whole_file(path);
    if (!bytes) return fail(bytes.error().message);
    blob = sealed_blob_in_file(*bytes);
    if (!blob) return fail(blob.error().message);
  }
  auto opened = open_blob(key, *blob, {id, entry.generation, entry.key_epoch});
  if (!opened) return fail(opened.error().message);
  if (opened->header.generation != entry.generation) {
    // Generation+1 in the committed generation's slot cannot be ours.
    return fail("generation " + std::to_string(opened->header.generation) + " in the slot of generation " +
                std::to_string(entry.generation));
  }
  if (const Digest digest = sha256(*blob); digest != entry.blob_digest) {
    return fail("generation " + std::to_string(entry.generation) + " but SHA-256 " + to_hex(digest) +
                " differs from the manifest's " + to_hex(entry.blob_digest));
  }
  auto record = decode_record(opened->body);
  if (!record) return fail(record.error().message);
  if (record->uuid != id || record->version != opened->header.tpm) return fail("the record inside does not match its header");
  return record;
}

void StateStore::open_blobs(OpenedState& out, const std::vector<Uuid>& blob_files) {
  for (auto& [id, entry] : out.manifest.entries) {
    if (entry.quarantined) {
      out.quarantined.emplace_back(id, "quarantined at an earlier start (see that start's log); its state files are "
                                       "kept for inspection");
      continue;
    }
    const auto inlined = out.manifest.inline_blobs.find(id);
    const Bytes* inline_blob = inlined != out.manifest.inline_blobs.end() ? inlined->second.get() : nullptr;
    const std::uint64_t generation = entry.generation;
    auto record = open_instance(id, entry, inline_blob, out.notes);
    // A newer generation adopted from its slot file supersedes the inline one.
    if (inline_blob != nullptr && entry.generation != generation) out.manifest.inline_blobs.erase(inlined);
    if (!record) {
      entry.quarantined = true;
      out.quarantined.emplace_back(id, record.error().message);
      continue;
    }
    out.records.push_back(std::move(*record));
  }
  for (const auto& id : blob_files) {
    if (out.manifest.entries.contains(id)) continue;
    // Not in a trusted manifest: an add that crashed before its commit, or
    // a remove that crashed after it. Neither was acknowledged as existing.
    if (Status s = shred(id); !s) out.notes.push_back("cannot discard the files of " + id.to_string() + ": " + s.error().message);
    else out.notes.push_back("discarded the state of " + id.to_string() + ": not in the manifest (an uncommitted add or remove)");
  }
}

Result<StateStore::BlobWritten> StateStore::write_blob(const Uuid& id, std::uint64_t generation,
                                                      std::span<const std::uint8_t> sealed) const {
  const std::string path = blob_path(id, generation);
  const bool renamed = !file_exists(path) && spares_.take(path);
  auto created = write_in_place(path, sealed, [this](const char* step) { crash_.reached(std::string("blob-") + step); });
  if (!created) return created.error();
  return BlobWritten{sha256(sealed), *created || renamed};
}

Status StateStore::commit(Manifest manifest, bool new_files) {
  // A blob's new directory entry must be durable before a manifest names it.
  if (new_files) {
    if (Status s = sync_directory(directory_); !s) return s;
  }
  const auto now = std::chrono::steady_clock::now();
  const auto interval = root_.counter_interval();
  if (target_ == counter_ &&
      (interval.count() == 0 || epoch_requested_.exchange(false) || now - last_advance_ >= interval)) {
    target_ = counter_ + 1;  // this commit starts a new epoch
  }
  manifest.counter = target_;
  manifest.sequence = sequence_ + 1;
  const Bytes bytes = encode_manifest(manifest, manifest_key_);
  auto created = write_in_place(manifest_path(manifest.sequence), bytes, [this](const char* step) {
    crash_.reached(std::string("manifest-") + step);
  });
  if (!created) return created.error();
  if (*created) {
    if (Status s = sync_directory(directory_); !s) return s;
  }
  sequence_ = manifest.sequence;
  return Status::success();
}

void StateStore::advance_epoch() {
  if (target_ != counter_) advance_counter(std::chrono::steady_clock::now());
}

void StateStore::advance_counter(std::chrono::steady_clock::time_point now) {
  if (now < next_counter_attempt_) return;
  auto fail = [&](const std::string& why) {
    const std::lock_guard lock(status_mutex_);
    counter_backoff_ = std::min(std::max(counter_backoff_ * 2, std::chrono::milliseconds(500)),
                                std::chrono::milliseconds(60'000));
    next_counter_attempt_ = now + counter_backoff_;
    ++counter_failures_;
    counter_problem_ = why;
  };
  if (counter_uncertain_) {
    // The last increment failed without telling whether it happened.
    auto value = root_.read_counter();
    if (!value) return fail("reading the counter: " + value.error().message);
    counter_uncertain_ = false;
    counter_ = *value;
    if (counter_ > target_) {
      // Something else advanced our counter: only a newer manifest can
      // follow it. The next commit is bound to the new value.
      fail("the counter is at " + std::to_string(counter_) + ", beyond this daemon's " + std::to_string(target_) +
           " (another writer?)");
      target_ = counter_;
      return;
    }
  }
  if (counter_ < target_) {
    auto bumped = root_.increment_counter();
    if (!bumped) {
      counter_uncertain_ = true;
      return fail("incrementing the counter: " + bumped.error().message);
    }
    counter_ = *bumped;
    crash_.reached("counter-incremented");
  }
  const std::lock_guard lock(status_mutex_);
  if (counter_ == target_) {
    last_advance_ = now;
    counter_backoff_ = std::chrono::milliseconds(0);
    next_counter_attempt_ = {};
    counter_problem_.clear();
  }
  counter_value_ = counter_;
}

StateStore::CounterStatus StateStore::counter_status() const {
  const std::lock_guard lock(status_mutex_);
  return CounterStatus{counter_value_, counter_failures_, counter_problem_};
}

Status StateStore::store_sealed_master_key(std::span<const std::uint8_t> sealed) {
  if (Status s = store_master_key(directory_ + "/" + kMasterKeyName, root_.kind(), master_.epoch, sealed); !s) {
    return s;
  }
  // Copies of the directory holding the old sealed key become old too.
  request_new_epoch();
  return Status::success();
}

Status StateStore::sync_blob_directory() const { return state::sync_directory(directory_); }

Status StateStore::shred(const Uuid& id) const {
  for (std::uint64_t slot : {0, 1}) {
    const std::string path = blob_path(id, slot);
    Fd fd(::open(path.c_str(), O_WRONLY | O_CLOEXEC));
    if (!fd.valid()) {
      if (errno == ENOENT) continue;
      return io_error("open", path);
    }
    struct stat st {};
    if (::fstat(fd.get(), &st) == 0 && st.st_size > 0) {
      // Not key material: the overwrite only has to differ from the original.
      const Bytes zeros(static_cast<std::size_t>(st.st_size), 0);
      if (Status s = write_all(fd.get(), zeros, path); !s) return s;
      if (::fdatasync(fd.get()) != 0) return io_error("fdatasync", path);
    }
    if (Status s = spares_.recycle(path); !s) return s;
  }
  return sync_directory(directory_);
}

}  // namespace vtpm::state
