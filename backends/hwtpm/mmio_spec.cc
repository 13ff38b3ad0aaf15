#include "backends/hwtpm/mmio_spec.h"

#include <charconv>

#include "backends/hwtpm/crb_transport.h"
#include "backends/hwtpm/devmem_region.h"
#include "backends/hwtpm/tis_transport.h"
#include "backends/hwtpm/transport_tcti.h"

namespace vtpm::hwtpm {

namespace {

constexpr std::size_t kWindowSize = MmioTransport::kWindowSize;
constexpr std::uint64_t kAlignment = 0x1000;

Error bad(std::string_view spec, const std::string& why) {
  return make_error(ErrorCode::kInvalidArgument,
                    "bad MMIO TPM spec '" + std::string(spec) + "': " + why +
                        " (expected tis:0xADDRESS[,locality=N] or crb:0xADDRESS[,locality=N])");
}

}  // namespace

bool is_mmio_spec(std::string_view spec) { return spec.starts_with("tis:") || spec.starts_with("crb:"); }

Result<MmioSpec> parse_mmio_spec(std::string_view spec) {
  MmioSpec out;
  if (spec.starts_with("tis:")) {
    out.interface = MmioInterface::kTis;
  } else if (spec.starts_with("crb:")) {
    out.interface = MmioInterface::kCrb;
  } else {
    return bad(spec, "unknown interface");
  }
  std::string_view rest = spec.substr(4);
  const auto comma = rest.find(',');
  const std::string_view address = rest.substr(0, comma);
  std::string_view options = comma == std::string_view::npos ? std::string_view() : rest.substr(comma + 1);

  if (!address.starts_with("0x") && !address.starts_with("0X")) return bad(spec, "address must be hex with 0x");
  const char* first = address.data() + 2;
  const char* last = address.data() + address.size();
  auto [end, ec] = std::from_chars(first, last, out.address, 16);
  if (first == last || ec != std::errc() || end != last) return bad(spec, "address is not a 64-bit hex number");
  if (out.address == 0 || out.address % kAlignment != 0) return bad(spec, "address must be non-zero and 4 KiB aligned");
  if (out.address > UINT64_MAX - kWindowSize) return bad(spec, "address leaves no room for the 0x5000-byte window");

  bool seen_locality = false;
  while (!options.empty() || comma != std::string_view::npos) {
    const auto next = options.find(',');
    const std::string_view option = options.substr(0, next);
    if (option.starts_with("locality=")) {
      if (seen_locality) return bad(spec, "locality given twice");
      seen_locality = true;
      const std::string_view value = option.substr(9);
      unsigned locality = 0;
      auto [lend, lec] = std::from_chars(value.data(), value.data() + value.size(), locality);
      if (value.empty() || lec != std::errc() || lend != value.data() + value.size() || locality > 4) {
        return bad(spec, "locality must be 0..4");
      }
      out.locality = static_cast<std::uint8_t>(locality);
    } else {
      return bad(spec, "unknown option '" + std::string(option) + "'");
    }
    if (next == std::string_view::npos) break;
    options = options.substr(next + 1);
  }
  return out;
}

Result<std::unique_ptr<TpmTransport>> open_mmio_transport(const MmioSpec& spec, std::shared_ptr<MmioRegion> region,
                                                          const MmioTimeouts& timeouts) {
  if (spec.interface == MmioInterface::kTis) {
    auto tis = TisTransport::create(std::move(region), TisOptions{spec.locality, timeouts});
    if (!tis.ok()) return tis.error();
    return std::unique_ptr<TpmTransport>(std::move(tis.value()));
  }
  auto crb = CrbTransport::create(std::move(region), CrbOptions{spec.locality, timeouts});
  if (!crb.ok()) return crb.error();
  return std::unique_ptr<TpmTransport>(std::move(crb.value()));
}

Result<TctiHandle> open_mmio_tcti(std::string_view text) {
  auto spec = parse_mmio_spec(text);
  if (!spec.ok()) return spec.error();
  auto region = DevmemRegion::open(spec->address, kWindowSize);
  if (!region.ok()) return region.error();
  auto transport = open_mmio_transport(*spec, std::shared_ptr<MmioRegion>(std::move(region.value())));
  if (!transport.ok()) return transport.error();
  return make_transport_tcti(std::move(transport.value()));
}

}  // namespace vtpm::hwtpm
