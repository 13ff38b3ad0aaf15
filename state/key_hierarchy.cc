#include "state/key_hierarchy.h"

#include <cstring>

#include "state/bytes.h"
#include "state/file_io.h"

namespace vtpm::state {
namespace {

constexpr char kMagic[8] = {'V', 'T', 'P', 'M', 'M', 'K', 'E', 'Y'};
constexpr std::uint16_t kFormatVersion = 1;

Error corrupt(const std::string& path, const std::string& what) {
  return make_error(ErrorCode::kCorrupt, "master key file " + path + ": " + what);
}

}  // namespace

SecretKey derive_instance_key(const MasterKey& master, const Uuid& id, std::uint32_t epoch, const KeySalt& salt) {
  ByteWriter info;
  info.raw(as_bytes("vtpmd instance state key v1"));
  info.raw(id.bytes());
  info.u32(epoch);
  return hkdf_sha256(master.key, salt, info.bytes());
}

SecretKey derive_manifest_key(const MasterKey& master) {
  ByteWriter info;
  info.raw(as_bytes("vtpmd manifest mac key v1"));
  info.u32(master.epoch);
  return hkdf_sha256(master.key, {}, info.bytes());
}

SecretKey derive_ca_wrapping_key(const MasterKey& master) {
  ByteWriter info;
  info.raw(as_bytes("vtpmd local ca wrapping key v1"));
  info.u32(master.epoch);
  return hkdf_sha256(master.key, {}, info.bytes());
}

SecretKey derive_transport_key(std::span<const std::uint8_t> operator_key, std::span<const std::uint8_t> salt) {
  // The operator's key may have any length; SecretKey holds 32 bytes.
  Digest digest = sha256(operator_key);
  const SecretKey ikm(digest);
  wipe(digest);
  return hkdf_sha256(ikm, salt, as_bytes("vtpmd export transport key v1"));
}

namespace {

struct MasterKeyFile {
  std::uint32_t epoch = 0;
  std::string kind;
  Bytes sealed;
};

Result<MasterKeyFile> read_master_key_file(const std::string& path) {
  auto bytes = read_whole_file(path);
  if (!bytes) return bytes.error();
  ByteReader r(*bytes);
  const auto magic = r.raw(sizeof kMagic);
  if (magic.empty() || std::memcmp(magic.data(), kMagic, sizeof kMagic) != 0) return corrupt(path, "bad magic");
  if (r.u16() != kFormatVersion) return corrupt(path, "unsupported format version");
  r.u16();
  MasterKeyFile file;
  file.epoch = r.u32();
  const auto kind_bytes = r.raw(r.u16());
  file.kind.assign(kind_bytes.begin(), kind_bytes.end());
  const auto sealed = r.raw(r.u32());
  if (!r.ok() || r.remaining() != 0) return corrupt(path, "truncated or malformed");
  file.sealed.assign(sealed.begin(), sealed.end());
  return file;
}

}  // namespace

Result<std::string> master_key_root_kind(const std::string& path) {
  if (!file_exists(path)) return std::string();
  auto file = read_master_key_file(path);
  if (!file) return file.error();
  return file->kind;
}

Result<MasterKey> load_master_key(const std::string& path, RootOfTrust& root) {
  auto file = read_master_key_file(path);
  if (!file) return file.error();
  MasterKey master;
  master.epoch = file->epoch;
  const std::string& kind = file->kind;
  const Bytes& sealed = file->sealed;
  if (kind != root.kind()) {
    return make_error(ErrorCode::kInvalidArgument, "master key file " + path + " is sealed by the '" + kind +
                                                       "' root of trust, but vtpmd is configured with '" +
                                                       root.kind() + "'");
  }
  auto key = root.unseal(sealed);
  if (!key) return key.error();
  master.key = *key;
  return master;
}

Result<MasterKey> create_master_key(const std::string& path, RootOfTrust& root, Drbg& drbg) {
  auto key = drbg.new_key();
  if (!key) return key.error();
  auto sealed = root.seal(*key);
  if (!sealed) return sealed.error();
  MasterKey master{*key, 1};
  if (Status s = store_master_key(path, root.kind(), master.epoch, *sealed); !s) return s.error();
  return master;
}

Status store_master_key(const std::string& path, const std::string& root_kind, std::uint32_t epoch,
                        std::span<const std::uint8_t> sealed) {
  ByteWriter w;
  w.raw(std::span(reinterpret_cast<const std::uint8_t*>(kMagic), sizeof kMagic));
  w.u16(kFormatVersion);
  w.u16(0);
  w.u32(epoch);
  w.u16(static_cast<std::uint16_t>(root_kind.size()));
  w.raw(as_bytes(root_kind));
  w.u32(static_cast<std::uint32_t>(sealed.size()));
  w.raw(sealed);
  if (Status s = replace_file(path, w.bytes()); !s) return s;
  const auto slash = path.rfind('/');
  return sync_directory(slash == std::string::npos ? "." : path.substr(0, slash));
}

}  // namespace vtpm::state
