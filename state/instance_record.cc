#include "state/instance_record.h"

#include <mbedtls/sha256.h>
#include <nlohmann/json.hpp>

#include <array>
#include <cstring>
#include <string>

namespace vtpm::state {
namespace {

constexpr char kMagic[8] = {'V', 'T', 'P', 'M', 'R', 'E', 'C', '1'};
constexpr std::size_t kDigestSize = 32;
constexpr std::size_t kMaxBlob = 1024 * 1024;

std::array<std::uint8_t, kDigestSize> sha256(std::span<const std::uint8_t> bytes) {
  std::array<std::uint8_t, kDigestSize> digest{};
  mbedtls_sha256_ret(bytes.data(), bytes.size(), digest.data(), 0);
  return digest;
}

void append_blob(std::vector<std::uint8_t>& out, const std::vector<std::uint8_t>& blob) {
  tpm::append_u32(out, static_cast<std::uint32_t>(blob.size()));
  out.insert(out.end(), blob.begin(), blob.end());
}

Error corrupt(const std::string& what) { return make_error(ErrorCode::kCorrupt, "instance record: " + what); }

}  // namespace

std::vector<std::uint8_t> encode_record(const InstanceRecord& r) {
  const nlohmann::json meta = {{"uuid", r.uuid.to_string()},
                               {"tpm", tpm_version_name(r.version)},
                               {"created", r.created_unix},
                               {"auto_startup", r.auto_startup},
                               {"max_command_size", r.max_command_size},
                               {"powered_on", r.powered_on},
                               {"channels", r.channels},
                               {"max_queued", r.max_queued},
                               {"max_rate", r.max_rate}};
  const std::string text = meta.dump();
  std::vector<std::uint8_t> out(std::begin(kMagic), std::end(kMagic));
  append_blob(out, std::vector<std::uint8_t>(text.begin(), text.end()));
  append_blob(out, r.blobs.permanent);
  append_blob(out, r.blobs.volatile_state);
  append_blob(out, r.blobs.save_state);
  const auto digest = sha256(out);
  out.insert(out.end(), digest.begin(), digest.end());
  return out;
}

Result<InstanceRecord> decode_record(std::span<const std::uint8_t> bytes) {
  if (bytes.size() < sizeof kMagic + kDigestSize) return corrupt("truncated (" + std::to_string(bytes.size()) + " bytes)");
  if (std::memcmp(bytes.data(), kMagic, sizeof kMagic) != 0) return corrupt("bad magic");
  const auto body = bytes.first(bytes.size() - kDigestSize);
  if (sha256(body) != [&] {
        std::array<std::uint8_t, kDigestSize> stored{};
        std::memcpy(stored.data(), bytes.data() + body.size(), kDigestSize);
        return stored;
      }()) {
    return corrupt("checksum mismatch (truncated or modified)");
  }
  std::size_t pos = sizeof kMagic;
  std::array<std::vector<std::uint8_t>, 4> parts;
  for (auto& part : parts) {
    if (body.size() - pos < 4) return corrupt("truncated blob length");
    const std::uint32_t n = tpm::read_u32(body, pos);
    pos += 4;
    if (n > kMaxBlob || body.size() - pos < n) return corrupt("blob length out of range");
    part.assign(body.begin() + static_cast<std::ptrdiff_t>(pos), body.begin() + static_cast<std::ptrdiff_t>(pos + n));
    pos += n;
  }
  if (pos != body.size()) return corrupt("trailing bytes");
  const auto meta = nlohmann::json::parse(parts[0].begin(), parts[0].end(), nullptr, false);
  if (meta.is_discarded() || !meta.is_object()) return corrupt("metadata is not a JSON object");
  InstanceRecord r;
  try {
    auto id = Uuid::parse(meta.at("uuid").get<std::string>());
    if (!id) return corrupt(id.error().message);
    r.uuid = *id;
    const std::string version = meta.at("tpm").get<std::string>();
    if (version != "1.2" && version != "2.0") return corrupt("unknown TPM version '" + version + "'");
    r.version = version == "1.2" ? TpmVersion::k12 : TpmVersion::k20;
    r.created_unix = meta.at("created").get<std::int64_t>();
    r.auto_startup = meta.at("auto_startup").get<bool>();
    r.max_command_size = meta.at("max_command_size").get<std::uint32_t>();
    r.powered_on = meta.at("powered_on").get<bool>();
    r.channels = meta.value("channels", std::string());
    r.max_queued = meta.value("max_queued", std::uint32_t{0});
    r.max_rate = meta.value("max_rate", std::uint32_t{0});
  } catch (const nlohmann::json::exception& e) {
    return corrupt(std::string("metadata field missing or mistyped: ") + e.what());
  }
  r.blobs.permanent = std::move(parts[1]);
  r.blobs.volatile_state = std::move(parts[2]);
  r.blobs.save_state = std::move(parts[3]);
  if (r.blobs.permanent.empty()) return corrupt("no permanent state");
  return r;
}

}  // namespace vtpm::state
