#include "backends/xen/vchan_backend.h"

namespace vtpm::xen {

VchanBackend::VchanBackend(uv_loop_t* loop, const Logger& log, Service& service, std::unique_ptr<Vchans> vchans, DomId self)
    : loop_(loop), log_(log), service_(service), vchans_(std::move(vchans)), self_(self) {}

VchanBackend::~VchanBackend() { close_all(); }

std::string VchanBackend::default_path(const Uuid& id) const {
  return "/local/domain/" + std::to_string(self_) + "/data/vtpmd/" + id.to_string();
}

Status VchanBackend::set(const Uuid& id, std::optional<DomId> client) {
  if (!client) {
    if (auto instance = service_.show(id); !instance) return instance.error();
    channels_.erase(id);
    return service_.set_vchan_config(id, {});
  }
  VchanSpec spec;
  spec.client = *client;
  spec.xs_path = default_path(id);
  return set_spec(id, std::move(spec));
}

Status VchanBackend::set_spec(const Uuid& id, VchanSpec spec) {
  auto instance = service_.show(id);
  if (!instance) return instance.error();
  if (spec.client == self_) {
    return make_error(ErrorCode::kInvalidArgument, "vchan client domain " + std::to_string(spec.client) +
                                                       " is vtpmd's own domain; name the domain that connects");
  }
  // The old server goes first: the new one publishes at the same path.
  auto previous = channels_.find(id);
  std::optional<VchanSpec> old_spec;
  if (previous != channels_.end()) {
    old_spec = previous->second->status().spec;
    channels_.erase(previous);
  }
  auto channel = std::make_shared<VchanChannel>(loop_, log_, service_, *vchans_, id, spec);
  if (Status s = channel->open(); !s) {
    if (old_spec) {  // put the previous one back: a failed change changes nothing
      auto restored = std::make_shared<VchanChannel>(loop_, log_, service_, *vchans_, id, *old_spec);
      if (restored->open()) channels_[id] = std::move(restored);
    }
    return s;
  }
  channels_[id] = std::move(channel);
  log_.info(id, "vchan: serving domain " + std::to_string(spec.client) + " at " + spec.xs_path);
  return service_.set_vchan_config(id, spec.to_json());
}

void VchanBackend::restore() {
  for (const auto& [id, instance] : service_.registry().all()) {
    if (instance.vchan_config.empty()) continue;
    auto spec = VchanSpec::from_json(instance.vchan_config);
    if (!spec) {
      log_.error(id, "cannot reopen the vchan channel: " + spec.error().message);
      continue;
    }
    auto channel = std::make_shared<VchanChannel>(loop_, log_, service_, *vchans_, id, *spec);
    if (Status s = channel->open(); !s) {
      log_.error(id, "cannot reopen the vchan channel: " + s.error().message);
      continue;
    }
    channels_[id] = std::move(channel);
  }
  if (!channels_.empty()) log_.info("vchan: reopened " + std::to_string(channels_.size()) + " channel(s)");
}

void VchanBackend::instance_removed(const Uuid& id) { channels_.erase(id); }

std::optional<VchanStatus> VchanBackend::status_of(const Uuid& id) const {
  auto it = channels_.find(id);
  if (it == channels_.end()) return std::nullopt;
  return it->second->status();
}

void VchanBackend::close_all() { channels_.clear(); }

}  // namespace vtpm::xen
