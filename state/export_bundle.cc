#include "state/export_bundle.h"

#include <cstring>
#include <string>

#include "state/key_hierarchy.h"

namespace vtpm::state {
namespace {

constexpr char kMagic[8] = {'V', 'T', 'P', 'M', 'X', 'P', 'R', 'T'};
constexpr std::uint16_t kFormatVersion = 1;
constexpr std::size_t kSaltSize = 32;
constexpr std::size_t kHeaderSize = 8 + 2 + 2 + kSaltSize + kNonceSize + 4;

Error corrupt(const std::string& what) { return make_error(ErrorCode::kCorrupt, "export bundle: " + what); }

Status check_key(std::span<const std::uint8_t> key) {
  if (key.size() < kMinTransportKey) {
    return make_error(ErrorCode::kInvalidArgument, "transport key must be at least " +
                                                       std::to_string(kMinTransportKey) + " bytes");
  }
  return Status::success();
}

}  // namespace

Result<Bytes> seal_export(const InstanceRecord& record, std::span<const std::uint8_t> transport_key, Drbg& drbg) {
  if (Status s = check_key(transport_key); !s) return s.error();
  std::uint8_t salt[kSaltSize];
  if (Status s = drbg.fill(salt); !s) return s.error();
  auto nonce = drbg.new_nonce();
  if (!nonce) return nonce.error();
  Bytes body = encode_record(record);
  ByteWriter w;
  w.raw(std::span(reinterpret_cast<const std::uint8_t*>(kMagic), sizeof kMagic));
  w.u16(kFormatVersion);
  w.u16(0);
  w.raw(salt);
  w.raw(*nonce);
  w.u32(static_cast<std::uint32_t>(body.size()));
  const Bytes sealed = aes_gcm_seal(derive_transport_key(transport_key, salt), *nonce, w.bytes(), body);
  wipe(body);
  w.raw(sealed);
  return w.take();
}

Result<InstanceRecord> open_export(std::span<const std::uint8_t> bundle, std::span<const std::uint8_t> transport_key) {
  if (Status s = check_key(transport_key); !s) return s.error();
  if (bundle.size() < kHeaderSize + kTagSize) return corrupt("truncated (" + std::to_string(bundle.size()) + " bytes)");
  ByteReader r(bundle);
  if (std::memcmp(r.raw(sizeof kMagic).data(), kMagic, sizeof kMagic) != 0) return corrupt("not a vtpmd export (bad magic)");
  if (const auto v = r.u16(); v != kFormatVersion) return corrupt("unsupported format version " + std::to_string(v));
  r.u16();
  const auto salt = r.raw(kSaltSize);
  Nonce nonce{};
  std::memcpy(nonce.data(), r.raw(kNonceSize).data(), kNonceSize);
  const std::uint32_t length = r.u32();
  if (!r.ok() || bundle.size() != kHeaderSize + length + kTagSize) return corrupt("length does not match its header");
  auto body = aes_gcm_open(derive_transport_key(transport_key, salt), nonce, bundle.first(kHeaderSize),
                           bundle.subspan(kHeaderSize));
  if (!body) return corrupt("wrong transport key, or the bundle was modified");
  return decode_record(*body);
}

}  // namespace vtpm::state
