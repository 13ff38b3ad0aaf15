#include "tools/vtpmctl/file_digest.h"

#include <mbedtls/md.h>

#include <array>
#include <cerrno>
#include <cstring>
#include <fstream>
#include <memory>
#include <optional>
#include <vector>

#include "proto/hex.h"

namespace vtpm::ctl {
namespace {

// One mbedTLS digest context, freed on every path.
class Hasher {
 public:
  explicit Hasher(mbedtls_md_type_t type) : info_(mbedtls_md_info_from_type(type)) {
    mbedtls_md_init(&ctx_);
    ok_ = info_ != nullptr && mbedtls_md_setup(&ctx_, info_, 0) == 0 && mbedtls_md_starts(&ctx_) == 0;
  }
  ~Hasher() { mbedtls_md_free(&ctx_); }
  Hasher(const Hasher&) = delete;
  Hasher& operator=(const Hasher&) = delete;
  void update(const unsigned char* data, std::size_t n) { ok_ = ok_ && mbedtls_md_update(&ctx_, data, n) == 0; }
  std::optional<Bytes> finish() {
    Bytes out(info_ != nullptr ? mbedtls_md_get_size(info_) : 0);
    if (!ok_ || mbedtls_md_finish(&ctx_, out.data()) != 0) return std::nullopt;
    return out;
  }

 private:
  const mbedtls_md_info_t* info_;
  mbedtls_md_context_t ctx_;
  bool ok_ = false;
};

}  // namespace

Result<control::Json> digest_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    return make_error(ErrorCode::kInvalidArgument, "measure --file: cannot read '" + path + "': " + std::strerror(errno));
  }
  const std::array<std::pair<const char*, mbedtls_md_type_t>, 4> kBanks = {{{"sha1", MBEDTLS_MD_SHA1},
                                                                            {"sha256", MBEDTLS_MD_SHA256},
                                                                            {"sha384", MBEDTLS_MD_SHA384},
                                                                            {"sha512", MBEDTLS_MD_SHA512}}};
  std::vector<std::unique_ptr<Hasher>> hashers;
  for (const auto& [name, type] : kBanks) hashers.push_back(std::make_unique<Hasher>(type));
  std::vector<char> buffer(1 << 16);
  while (in) {
    in.read(buffer.data(), static_cast<std::streamsize>(buffer.size()));
    const auto n = static_cast<std::size_t>(in.gcount());
    for (auto& h : hashers) h->update(reinterpret_cast<const unsigned char*>(buffer.data()), n);
  }
  if (in.bad()) return make_error(ErrorCode::kInvalidArgument, "measure --file: error reading '" + path + "'");
  control::Json out = control::Json::object();
  for (std::size_t i = 0; i < kBanks.size(); ++i) {
    auto digest = hashers[i]->finish();
    if (!digest) return make_error(ErrorCode::kInternal, "measure --file: hashing failed");
    out[kBanks[i].first] = to_hex(*digest);
  }
  return out;
}

}  // namespace vtpm::ctl
