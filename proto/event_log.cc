#include "proto/event_log.h"

#include <array>
#include <cstring>
#include <string>

#include "proto/tpm2_commands.h"

namespace vtpm::eventlog {
namespace {

constexpr std::array<std::uint8_t, 16> kSpecIdSignature = {'S', 'p', 'e', 'c', ' ', 'I', 'D', ' ',
                                                           'E', 'v', 'e', 'n', 't', '0', '3', 0};
constexpr std::size_t kMaxEventData = 1 << 20;

void put_u8(Bytes& out, std::uint8_t v) { out.push_back(v); }
void put_u16(Bytes& out, std::uint16_t v) {
  out.push_back(static_cast<std::uint8_t>(v));
  out.push_back(static_cast<std::uint8_t>(v >> 8));
}
void put_u32(Bytes& out, std::uint32_t v) {
  for (int i = 0; i < 4; ++i) out.push_back(static_cast<std::uint8_t>(v >> (8 * i)));
}
void put_bytes(Bytes& out, std::span<const std::uint8_t> b) { out.insert(out.end(), b.begin(), b.end()); }

class Reader {
 public:
  explicit Reader(std::span<const std::uint8_t> bytes) : bytes_(bytes) {}
  bool done() const { return at_ == bytes_.size(); }
  Status need(std::size_t n, const char* what) const {
    if (bytes_.size() - at_ < n) return make_error(ErrorCode::kCorrupt, std::string("event log: truncated ") + what);
    return Status::success();
  }
  std::uint8_t u8() { return bytes_[at_++]; }
  std::uint16_t u16() {
    const std::uint16_t v = static_cast<std::uint16_t>(bytes_[at_] | (bytes_[at_ + 1] << 8));
    at_ += 2;
    return v;
  }
  std::uint32_t u32() {
    std::uint32_t v = 0;
    for (int i = 0; i < 4; ++i) v |= static_cast<std::uint32_t>(bytes_[at_ + i]) << (8 * i);
    at_ += 4;
    return v;
  }
  std::span<const std::uint8_t> take(std::size_t n) {
    auto s = bytes_.subspan(at_, n);
    at_ += n;
    return s;
  }

 private:
  std::span<const std::uint8_t> bytes_;
  std::size_t at_ = 0;
};

Error corrupt(const std::string& what) { return make_error(ErrorCode::kCorrupt, "event log: " + what); }

}  // namespace

Bytes encode_header(std::span<const TPM2_ALG_ID> banks) {
  Bytes spec_id;
  put_bytes(spec_id, kSpecIdSignature);
  put_u32(spec_id, 0);  // platformClass: client
  put_u8(spec_id, 0);   // specVersionMinor
  put_u8(spec_id, 2);   // specVersionMajor
  put_u8(spec_id, 0);   // specErrata
  put_u8(spec_id, 2);   // uintnSize: UINT64
  put_u32(spec_id, static_cast<std::uint32_t>(banks.size()));
  for (TPM2_ALG_ID alg : banks) {
    put_u16(spec_id, alg);
    put_u16(spec_id, static_cast<std::uint16_t>(tpm2::digest_size(alg)));
  }
  put_u8(spec_id, 0);  // vendorInfoSize

  Bytes out;
  put_u32(out, 0);  // PCRIndex
  put_u32(out, kEvNoAction);
  out.insert(out.end(), 20, 0);  // SHA-1 sized digest, zero
  put_u32(out, static_cast<std::uint32_t>(spec_id.size()));
  put_bytes(out, spec_id);
  return out;
}

Bytes encode_event(const Event& event) {
  Bytes out;
  put_u32(out, event.pcr);
  put_u32(out, event.type);
  put_u32(out, static_cast<std::uint32_t>(event.digests.size()));
  for (const Digest& d : event.digests) {
    put_u16(out, d.alg);
    put_bytes(out, d.bytes);
  }
  put_u32(out, static_cast<std::uint32_t>(event.data.size()));
  put_bytes(out, event.data);
  return out;
}

Bytes encode(const Log& log) {
  Bytes out = encode_header(log.banks);
  for (const Event& e : log.events) put_bytes(out, encode_event(e));
  return out;
}

Result<Log> decode(std::span<const std::uint8_t> bytes) {
  Reader r(bytes);
  if (Status s = r.need(32, "header"); !s) return s.error();
  if (r.u32() != 0 || r.u32() != kEvNoAction) return corrupt("the first event is not the Spec ID event");
  r.take(20);
  const std::uint32_t size = r.u32();
  if (Status s = r.need(size, "Spec ID event"); !s) return s.error();
  Reader spec(r.take(size));
  if (Status s = spec.need(29, "Spec ID event"); !s) return s.error();
  auto signature = spec.take(16);
  if (!std::equal(signature.begin(), signature.end(), kSpecIdSignature.begin())) return corrupt("bad Spec ID signature");
  spec.take(4 + 4);  // platform class, versions, errata, uintn size
  const std::uint32_t count = spec.u32();
  if (count == 0 || count > TPM2_NUM_PCR_BANKS) return corrupt("bad number of algorithms");
  Log log;
  for (std::uint32_t i = 0; i < count; ++i) {
    if (Status s = spec.need(4, "algorithm list"); !s) return s.error();
    const TPM2_ALG_ID alg = spec.u16();
    const std::uint16_t digest = spec.u16();
    if (tpm2::digest_size(alg) == 0 || digest != tpm2::digest_size(alg)) {
      return corrupt("unknown algorithm " + std::to_string(alg) + " or wrong digest size");
    }
    log.banks.push_back(alg);
  }
  if (Status s = spec.need(1, "vendor info"); !s) return s.error();
  const std::uint8_t vendor = spec.u8();
  if (Status s = spec.need(vendor, "vendor info"); !s) return s.error();
  spec.take(vendor);
  if (!spec.done()) return corrupt("trailing bytes in the Spec ID event");

  while (!r.done()) {
    Event e;
    if (Status s = r.need(12, "event"); !s) return s.error();
    e.pcr = r.u32();
    e.type = r.u32();
    const std::uint32_t digests = r.u32();
    if (digests != log.banks.size()) return corrupt("an event's digest count differs from the header's banks");
    for (TPM2_ALG_ID expected : log.banks) {
      if (Status s = r.need(2, "digest"); !s) return s.error();
      const TPM2_ALG_ID alg = r.u16();
      if (alg != expected) return corrupt("an event's digests are not in the header's order");
      if (Status s = r.need(tpm2::digest_size(alg), "digest"); !s) return s.error();
      auto d = r.take(tpm2::digest_size(alg));
      e.digests.push_back({alg, Bytes(d.begin(), d.end())});
    }
    if (Status s = r.need(4, "event size"); !s) return s.error();
    const std::uint32_t data_size = r.u32();
    if (data_size > kMaxEventData) return corrupt("event data too large");
    if (Status s = r.need(data_size, "event data"); !s) return s.error();
    auto data = r.take(data_size);
    e.data.assign(data.begin(), data.end());
    log.events.push_back(std::move(e));
  }
  return log;
}

}  // namespace vtpm::eventlog
