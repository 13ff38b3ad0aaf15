// Test helper: edits a stopped vtpmd's state directory the way only a
// holder of the root key could, to reach checks that sit behind the
// sealing (e.g. libtpms refusing its own, authentic but garbled, state).
//
//   state_editor STATE_DIR garble-permanent UUID
//   state_editor STATE_DIR set-vchan UUID JSON
//                                       the instance's saved vchan setting, as
//                                       a daemon with the Xen backend saves it
//   state_editor STATE_DIR print-keys   every key vtpmd derives, hex, one
//                                       "NAME HEX" a line (to look for them
//                                       in a core dump)
//
// Not installed; used by tests/integration.
#include <cstdio>
#include <string>

#include "proto/hex.h"
#include "state/file_root.h"
#include "state/sealed_blob.h"
#include "state/state_store.h"

using namespace vtpm;
using namespace vtpm::state;

namespace {

int fail(const std::string& why) {
  std::fprintf(stderr, "state_editor: %s\n", why.c_str());
  return 1;
}

}  // namespace

int print_keys(const std::string& dir) {
  Drbg drbg;
  auto root = FileRootOfTrust::open(dir + "/root.key", drbg);
  if (!root) return fail(root.error().message);
  StateStore store(dir, **root);
  auto opened = store.open(drbg);
  if (!opened) return fail(opened.error().message);
  std::printf("master %s\n", to_hex(store.master().key.bytes()).c_str());
  std::printf("manifest %s\n", to_hex(derive_manifest_key(store.master()).bytes()).c_str());
  for (const auto& [id, entry] : opened->manifest.entries) {
    std::printf("instance:%s %s\n", id.to_string().c_str(), to_hex(store.instance_key(id, entry).bytes()).c_str());
  }
  return 0;
}

int main(int argc, char** argv) {
  if (argc == 3 && std::string(argv[2]) == "print-keys") return print_keys(argv[1]);
  const std::string verb = argc >= 3 ? argv[2] : "";
  if (!((argc == 4 && verb == "garble-permanent") || (argc == 5 && verb == "set-vchan"))) {
    return fail("usage: state_editor STATE_DIR garble-permanent UUID | STATE_DIR set-vchan UUID JSON | STATE_DIR print-keys");
  }
  const std::string dir = argv[1];
  auto id = Uuid::parse(argv[3]);
  if (!id) return fail(id.error().message);
  Drbg drbg;
  auto root = FileRootOfTrust::open(dir + "/root.key", drbg);
  if (!root) return fail(root.error().message);
  StateStore store(dir, **root);
  auto opened = store.open(drbg);
  if (!opened) return fail(opened.error().message);
  for (auto& record : opened->records) {
    if (record.uuid != *id) continue;
    if (verb == "set-vchan") {
      record.vchan = argv[4];
    } else {
      for (std::size_t i = 0; i < 64 && i < record.blobs.permanent.size(); ++i) record.blobs.permanent[i] ^= 0xa5;
      record.blobs.volatile_state.clear();
    }
    ManifestEntry entry = opened->manifest.entries.at(*id);
    ++entry.generation;
    SealedHeader header;
    header.tpm = record.version;
    header.uuid = *id;
    header.generation = entry.generation;
    header.key_epoch = entry.key_epoch;
    header.nonce = drbg.new_nonce().value();
    auto written = store.write_blob(*id, entry.generation,
                                    seal_blob(store.instance_key(*id, entry), header, encode_record(record)));
    if (!written) return fail(written.error().message);
    entry.blob_digest = written->digest;
    opened->manifest.entries[*id] = entry;
    if (Status s = store.commit(opened->manifest, written->created); !s) return fail(s.error().message);
    store.advance_epoch();
    return 0;
  }
  return fail("no loadable instance " + id->to_string());
}
