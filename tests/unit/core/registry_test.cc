#include "src/core/instance.h"

#include <doctest/doctest.h>

#include <string>
#include <vector>

namespace vtpm {
namespace {

Uuid uuid_of(std::uint8_t first, std::uint8_t last = 1) {
  Uuid::Bytes b{};
  b[0] = first;
  b[15] = last;
  return Uuid(b);
}

Instance instance_of(const Uuid& id, std::uint32_t max_command_size = 4096) {
  Instance instance;
  instance.uuid = id;
  instance.max_command_size = max_command_size;
  return instance;
}

}  // namespace

TEST_CASE("registry: starts empty") {
  Registry registry;
  CHECK(registry.size() == 0);
  CHECK(registry.all().empty());
  CHECK(registry.find(uuid_of(1)) == nullptr);
}

TEST_CASE("registry: add returns the stored instance and find locates it") {
  Registry registry;
  auto added = registry.add(instance_of(uuid_of(1), 8192));
  REQUIRE(added.ok());
  Instance* stored = *added;
  REQUIRE(stored != nullptr);
  CHECK(stored->uuid == uuid_of(1));
  CHECK(stored->max_command_size == 8192);
  CHECK(registry.find(uuid_of(1)) == stored);
  CHECK(registry.size() == 1);
}

TEST_CASE("registry: the returned pointer stays valid as other instances are added") {
  Registry registry;
  Instance* first = registry.add(instance_of(uuid_of(50))).value();
  for (std::uint8_t i = 1; i < 40; ++i) REQUIRE(registry.add(instance_of(uuid_of(i))).ok());
  CHECK(registry.find(uuid_of(50)) == first);
  CHECK(first->uuid == uuid_of(50));
}

TEST_CASE("registry: get returns the instance") {
  Registry registry;
  REQUIRE(registry.add(instance_of(uuid_of(2))).ok());
  auto got = registry.get(uuid_of(2));
  REQUIRE(got.ok());
  CHECK((*got)->uuid == uuid_of(2));
}

TEST_CASE("registry: get of an unknown UUID is not_found and names the UUID") {
  Registry registry;
  REQUIRE(registry.add(instance_of(uuid_of(2))).ok());
  const Uuid missing = uuid_of(3, 0xcd);
  auto got = registry.get(missing);
  REQUIRE_FALSE(got.ok());
  CHECK(got.error().code == ErrorCode::kNotFound);
  CHECK(got.error().message.find(missing.to_string()) != std::string::npos);
}

TEST_CASE("registry: adding a UUID twice is already_exists and keeps the original") {
  Registry registry;
  REQUIRE(registry.add(instance_of(uuid_of(4), 1024)).ok());
  auto again = registry.add(instance_of(uuid_of(4), 2048));
  REQUIRE_FALSE(again.ok());
  CHECK(again.error().code == ErrorCode::kAlreadyExists);
  CHECK(again.error().message.find(uuid_of(4).to_string()) != std::string::npos);
  CHECK(registry.size() == 1);
  CHECK(registry.find(uuid_of(4))->max_command_size == 1024);
}

TEST_CASE("registry: erase removes only that instance and tolerates unknown UUIDs") {
  Registry registry;
  REQUIRE(registry.add(instance_of(uuid_of(5))).ok());
  REQUIRE(registry.add(instance_of(uuid_of(6))).ok());
  registry.erase(uuid_of(5));
  CHECK(registry.find(uuid_of(5)) == nullptr);
  CHECK(registry.find(uuid_of(6)) != nullptr);
  CHECK(registry.size() == 1);
  registry.erase(uuid_of(5));
  registry.erase(uuid_of(99));
  CHECK(registry.size() == 1);
  CHECK_FALSE(registry.get(uuid_of(5)).ok());
}

TEST_CASE("registry: an erased UUID can be added again") {
  Registry registry;
  REQUIRE(registry.add(instance_of(uuid_of(7))).ok());
  registry.erase(uuid_of(7));
  CHECK(registry.add(instance_of(uuid_of(7))).ok());
}

TEST_CASE("registry: all() is ordered by UUID, not by insertion") {
  Registry registry;
  const std::vector<Uuid> inserted = {uuid_of(0x90), uuid_of(0x10), uuid_of(0xff), uuid_of(0x10, 0), uuid_of(0x50)};
  for (const Uuid& id : inserted) REQUIRE(registry.add(instance_of(id)).ok());
  std::vector<std::string> listed;
  for (const auto& [id, instance] : registry.all()) {
    CHECK(id == instance.uuid);
    listed.push_back(id.to_string());
  }
  REQUIRE(listed.size() == inserted.size());
  CHECK(listed == std::vector<std::string>{uuid_of(0x10, 0).to_string(), uuid_of(0x10).to_string(),
                                           uuid_of(0x50).to_string(), uuid_of(0x90).to_string(),
                                           uuid_of(0xff).to_string()});
  // Byte order and canonical text order agree, so list output is sorted.
  CHECK(std::is_sorted(listed.begin(), listed.end()));
}

TEST_CASE("registry: Instance::record copies settings and keeps volatile only on request") {
  Instance instance = instance_of(uuid_of(8), 2048);
  instance.version = TpmVersion::k12;
  instance.created_unix = 123;
  instance.auto_startup = true;
  instance.power = PowerState::kOff;
  instance.saved.permanent = {1};
  instance.saved.volatile_state = {2};
  instance.saved.save_state = {3};

  const state::InstanceRecord without = instance.record(false);
  CHECK(without.uuid == uuid_of(8));
  CHECK(without.version == TpmVersion::k12);
  CHECK(without.created_unix == 123);
  CHECK(without.auto_startup);
  CHECK(without.max_command_size == 2048);
  CHECK_FALSE(without.powered_on);
  CHECK(without.blobs.permanent == std::vector<std::uint8_t>{1});
  CHECK(without.blobs.volatile_state.empty());
  CHECK(without.blobs.save_state == std::vector<std::uint8_t>{3});

  CHECK(instance.record(true).blobs.volatile_state == std::vector<std::uint8_t>{2});
}

TEST_CASE("registry: Instance state_name and params") {
  Instance instance = instance_of(uuid_of(9), 3000);
  CHECK(std::string(instance.state_name()) == "running");
  instance.power = PowerState::kOff;
  CHECK(std::string(instance.state_name()) == "stopped");
  instance.failed = true;
  CHECK(std::string(instance.state_name()) == "failed");
  const engine::InstanceParams p = instance.params();
  CHECK(p.max_command_size == 3000);
  CHECK(p.version == TpmVersion::k20);
  CHECK_FALSE(p.auto_startup);
}

}  // namespace vtpm

namespace vtpm {

TEST_CASE("instance: saved_record_size is the encoded size of its record, without copying it") {
  Instance i = instance_of(uuid_of(9));
  i.saved.permanent.assign(12345, 0x5a);
  i.saved.save_state.assign(77, 1);
  i.saved.volatile_state.assign(999, 2);  // not part of a saved record
  i.provisioning = R"({"ek":[{"type":"rsa"}]})";
  i.channel_config = R"({"swtpm":{"path":"/run/x"}})";
  i.event_log.assign(50, 3);
  CHECK(i.saved_record_size() == state::encoded_record_size(i.record(false)));
  CHECK(i.saved_record_size() == state::encode_record(i.record(false)).size());
  CHECK(i.record(true).blobs.volatile_state.size() == 999);
  CHECK(i.record(true).event_log.size() == 50);
  CHECK(i.record(false).event_log.empty());
}

}  // namespace vtpm
