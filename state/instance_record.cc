#include "state/instance_record.h"

#include "proto/hex.h"

#include <mbedtls/sha256.h>
#include <nlohmann/json.hpp>

#include <array>
#include <cstring>
#include <optional>
#include <string>
#include <utility>

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

// An integer metadata field within T's range. nlohmann's get<T>() converts a float or an
// out-of-range number with a plain cast: undefined behaviour for "created": 1e30 (found by
// tests/fuzz/fuzz_state) and a silent wrap of "max_command_size": -1 to 4294967295.
template <typename T>
std::optional<T> integer_field(const nlohmann::json& meta, const char* name) {
  const auto it = meta.find(name);
  if (it == meta.end() || !it->is_number_integer()) return std::nullopt;
  if (it->is_number_unsigned()) {
    const auto v = it->get<std::uint64_t>();
    return std::in_range<T>(v) ? std::optional<T>(static_cast<T>(v)) : std::nullopt;
  }
  const auto v = it->get<std::int64_t>();
  return std::in_range<T>(v) ? std::optional<T>(static_cast<T>(v)) : std::nullopt;
}

std::string metadata_text(const InstanceRecord& r) {
  nlohmann::json meta = {{"uuid", r.uuid.to_string()},
                               {"tpm", tpm_version_name(r.version)},
                               {"created", r.created_unix},
                               {"auto_startup", r.auto_startup},
                               {"max_command_size", r.max_command_size},
                               {"powered_on", r.powered_on},
                               {"channels", r.channels},
                               {"max_queued", r.max_queued},
                               {"max_rate", r.max_rate},
                               {"max_state_size", r.max_state_size},
                               {"max_connections", r.max_connections}};
  // Optional fields, absent from records written before provisioning.
  if (!r.provisioning.empty()) meta["provisioning"] = r.provisioning;
  if (!r.vchan.empty()) meta["vchan"] = r.vchan;
  if (!r.event_log.empty()) meta["event_log"] = to_hex(r.event_log);
  if (r.guest_started) meta["guest_started"] = true;
  return meta.dump();
}

}  // namespace

std::size_t encoded_record_size(const InstanceRecord& r) {
  constexpr std::size_t kLengthField = 4;
  return sizeof kMagic + 4 * kLengthField + metadata_text(r).size() + r.blobs.permanent.size() +
         r.blobs.volatile_state.size() + r.blobs.save_state.size() + kDigestSize;
}

std::vector<std::uint8_t> encode_record(const InstanceRecord& r) {
  const std::string text = metadata_text(r);
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
    const auto created = integer_field<std::int64_t>(meta, "created");
    if (!created) return corrupt("metadata field missing or mistyped: 'created' must be a 64-bit integer");
    r.created_unix = *created;
    r.auto_startup = meta.at("auto_startup").get<bool>();
    const auto max_command_size = integer_field<std::uint32_t>(meta, "max_command_size");
    if (!max_command_size) {
      return corrupt("metadata field missing or mistyped: 'max_command_size' must be a 32-bit unsigned integer");
    }
    r.max_command_size = *max_command_size;
    r.powered_on = meta.at("powered_on").get<bool>();
    r.channels = meta.value("channels", std::string());
    if (meta.contains("vchan") && !meta["vchan"].is_string()) return corrupt("metadata field 'vchan' must be a string");
    r.vchan = meta.value("vchan", std::string());
    for (auto [name, field] : {std::pair{"max_queued", &r.max_queued}, std::pair{"max_rate", &r.max_rate},
                               std::pair{"max_state_size", &r.max_state_size},
                               std::pair{"max_connections", &r.max_connections}}) {
      if (!meta.contains(name)) continue;  // written before per-instance limits: the default, 0
      const auto v = integer_field<std::uint32_t>(meta, name);
      if (!v) {
        return corrupt(std::string("metadata field missing or mistyped: '") + name +
                       "' must be a 32-bit unsigned integer");
      }
      *field = *v;
    }
    r.provisioning = meta.value("provisioning", std::string());
    if (meta.contains("guest_started")) r.guest_started = meta.at("guest_started").get<bool>();
    if (meta.contains("event_log")) {
      auto log = from_hex(meta.at("event_log").get<std::string>());
      if (!log) return corrupt("event_log: " + log.error().message);
      r.event_log = std::move(*log);
    }
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
