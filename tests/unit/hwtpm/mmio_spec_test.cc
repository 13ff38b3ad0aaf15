#include "backends/hwtpm/mmio_spec.h"

#include <doctest/doctest.h>
#include <unistd.h>

#include <cstdio>
#include <filesystem>
#include <fstream>

#include "backends/hwtpm/devmem_region.h"
#include "backends/hwtpm/transport_tcti.h"
#include "tests/support/hwtpm/crb_model.h"
#include "tests/unit/hwtpm/hwtpm_fixture.h"

namespace vtpm::testing {
namespace {

using namespace hwtpm;

TEST_CASE("mmio spec: interface, address and locality") {
  auto tis = parse_mmio_spec("tis:0xFED40000");
  REQUIRE(tis.ok());
  CHECK(tis->interface == MmioInterface::kTis);
  CHECK(tis->address == 0xFED40000u);
  CHECK(tis->locality == 2);  // default: not dom0's 0
  auto crb = parse_mmio_spec("crb:0xfed40000,locality=0");
  REQUIRE(crb.ok());
  CHECK(crb->interface == MmioInterface::kCrb);
  CHECK(crb->locality == 0);
  CHECK(parse_mmio_spec("tis:0x100000000000,locality=4")->address == 0x100000000000u);
  CHECK(is_mmio_spec("tis:0x1000"));
  CHECK(is_mmio_spec("crb:"));
  CHECK_FALSE(is_mmio_spec("device:/dev/tpmrm0"));
  CHECK_FALSE(is_mmio_spec("swtpm:path=/run/x"));
}

TEST_CASE("mmio spec: bad specs are refused with the reason") {
  const std::pair<const char*, const char*> bad[] = {
      {"mmio:0xFED40000", "unknown interface"},
      {"tis:", "address must be hex with 0x"},
      {"tis:FED40000", "address must be hex with 0x"},
      {"tis:0x", "not a 64-bit hex number"},
      {"tis:0xFED4000G", "not a 64-bit hex number"},
      {"tis:0x1FFFFFFFFFFFFFFFF", "not a 64-bit hex number"},
      {"tis:0xFED40800", "4 KiB aligned"},
      {"tis:0x0", "non-zero"},
      {"tis:0xFFFFFFFFFFFFF000", "no room for the 0x5000-byte window"},
      {"tis:0xFED40000,locality=5", "locality must be 0..4"},
      {"tis:0xFED40000,locality=", "locality must be 0..4"},
      {"tis:0xFED40000,locality=-1", "locality must be 0..4"},
      {"tis:0xFED40000,locality=1,locality=2", "locality given twice"},
      {"tis:0xFED40000,speed=9", "unknown option 'speed=9'"},
      {"tis:0xFED40000,", "unknown option ''"},
  };
  for (const auto& [spec, reason] : bad) {
    CAPTURE(spec);
    auto parsed = parse_mmio_spec(spec);
    REQUIRE_FALSE(parsed.ok());
    CHECK(parsed.error().code == ErrorCode::kInvalidArgument);
    CHECK_MESSAGE(parsed.error().message.find(reason) != std::string::npos, parsed.error().message);
    CHECK(parsed.error().message.find("expected tis:0xADDRESS[,locality=N]") != std::string::npos);
    // The factory entry point gives the same error before touching /dev/mem.
    auto opened = open_mmio_tcti(spec);
    REQUIRE_FALSE(opened.ok());
    CHECK(opened.error().message == parsed.error().message);
  }
}

TEST_CASE("mmio spec: the parsed spec picks the driver and the locality") {
  Swtpm swtpm;
  auto tis_model = std::make_shared<TisModel>(swtpm.executor());
  auto tis = open_mmio_transport(*parse_mmio_spec("tis:0xFED40000,locality=1"), tis_model, test_timeouts());
  REQUIRE(tis.ok());
  CHECK((*tis)->describe().find("TIS 0xfed40000 locality 1") == 0);
  auto crb_model = std::make_shared<CrbModel>(swtpm.executor());
  auto crb = open_mmio_transport(*parse_mmio_spec("crb:0xFED40000"), crb_model, test_timeouts());
  REQUIRE(crb.ok());
  CHECK((*crb)->describe().find("CRB 0xfed40000 locality 2") == 0);
  auto response = (*crb)->transact(tpm2_get_random(4));
  REQUIRE(response.ok());
  CHECK(rc_of(*response) == 0);
  // The wrong driver for the hardware says which one to use.
  auto wrong = open_mmio_transport(*parse_mmio_spec("tis:0xFED40000"), crb_model, test_timeouts());
  REQUIRE_FALSE(wrong.ok());
  CHECK(wrong.error().message.find("use crb:ADDRESS") != std::string::npos);
}

TEST_CASE("DevmemRegion: maps a window at an unaligned offset, reads back what was written, unmaps") {
  const auto path = std::filesystem::temp_directory_path() / ("vtpm-devmem-" + std::to_string(::getpid()));
  {
    std::ofstream file(path, std::ios::binary);
    std::vector<char> zeros(0x3000, 0);
    zeros[0x1010] = 0x5A;
    file.write(zeros.data(), static_cast<std::streamsize>(zeros.size()));
  }
  {
    auto region = DevmemRegion::open(0x1010, 0x100, path.string());
    REQUIRE_MESSAGE(region.ok(), (region.ok() ? "" : region.error().message));
    auto& r = **region;
    CHECK(r.physical_base() == 0x1010);
    CHECK(r.size() == 0x100);
    CHECK(r.describe() == path.string() + "@0x1010");
    CHECK(*r.read8(0) == 0x5A);
    REQUIRE(r.write32(0x20, 0x11223344).ok());
    CHECK(*r.read8(0x20) == 0x44);  // little-endian
    CHECK(*r.read32(0x20) == 0x11223344u);
    CHECK_FALSE(r.read8(0x100).ok());
    CHECK_FALSE(r.write32(0xFE, 0).ok());
  }
  // The writes went to the file, at physical offset 0x1030.
  std::ifstream file(path, std::ios::binary);
  file.seekg(0x1030);
  char bytes[4] = {};
  file.read(bytes, 4);
  CHECK(static_cast<unsigned char>(bytes[0]) == 0x44);
  CHECK(static_cast<unsigned char>(bytes[3]) == 0x11);
  std::filesystem::remove(path);
}

TEST_CASE("DevmemRegion: a missing device or an empty window is a clear error with a hint") {
  auto missing = DevmemRegion::open(0xFED40000, 0x5000, "/nonexistent/mem");
  REQUIRE_FALSE(missing.ok());
  CHECK(missing.error().code == ErrorCode::kUnavailable);
  CHECK(missing.error().message ==
        "cannot open /nonexistent/mem: No such file or directory (no /nonexistent/mem: the kernel lacks "
        "CONFIG_DEVMEM, or /dev is not populated)");
  CHECK(DevmemRegion::open(0xFED40000, 0, "/nonexistent/mem").error().message == "MMIO window of 0 bytes");
}

}  // namespace
}  // namespace vtpm::testing
