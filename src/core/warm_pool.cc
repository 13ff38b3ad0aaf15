#include "src/core/warm_pool.h"

#include <nlohmann/json.hpp>

#include <algorithm>

namespace vtpm {
namespace {

// Marks a member in its provisioning summary; nlohmann::json writes keys
// sorted, and this is the only key, so members are recognised by prefix.
constexpr std::string_view kMarkerPrefix = R"({"warm_pool":)";

template <typename T>
std::vector<T> sorted(std::vector<T> v) {
  std::sort(v.begin(), v.end());
  return v;
}

}  // namespace

WarmPool::WarmPool(uv_loop_t* loop, const Logger& log, Service& service, WarmPoolProfile profile,
                   Manufacture manufacture)
    : log_(log), service_(service), profile_(std::move(profile)), manufacture_(std::move(manufacture)) {
  uv_timer_init(loop, retry_timer_.get());
  retry_timer_.mark_live();
  retry_timer_.get()->data = this;
  uv_unref(retry_timer_.base());  // a pending retry never keeps the daemon alive
}

std::string WarmPool::marker(bool ready) const {
  nlohmann::json profile = {{"pcr_banks", nlohmann::json::array()}, {"ek", nlohmann::json::array()}, {"ready", ready}};
  for (TPM2_ALG_ID alg : sorted(profile_.pcr_banks)) profile["pcr_banks"].push_back(tpm2::bank_name(alg));
  for (tpm2::EkKind kind : sorted(profile_.endorsement_keys)) profile["ek"].push_back(tpm2::ek_name(kind));
  return nlohmann::json{{"warm_pool", profile}}.dump();
}

bool WarmPool::is_member(const Instance& instance) { return instance.provisioning.starts_with(kMarkerPrefix); }

bool WarmPool::matches(const std::vector<TPM2_ALG_ID>& banks, const std::vector<tpm2::EkKind>& eks) const {
  return profile_.size > 0 && !eks.empty() && sorted(banks) == sorted(profile_.pcr_banks) &&
         sorted(eks) == sorted(profile_.endorsement_keys);
}

WarmPoolStats WarmPool::stats() const {
  WarmPoolStats s = stats_;
  s.ready = ready_.size();
  return s;
}

void WarmPool::start() {
  const std::string mine = marker(true);
  const std::string unfinished = marker(false);
  std::vector<Uuid> stale;
  for (const auto& [id, instance] : service_.registry().all()) {
    if (!is_member(instance)) continue;
    const bool usable = instance.provisioning == mine && profile_.size > 0 && !instance.failed &&
                        ready_.size() < profile_.size;
    if (usable) {
      ready_.push_back(id);
    } else {
      stale.push_back(id);
    }
  }
  for (const Uuid& id : stale) {
    const std::string& text = service_.registry().all().at(id).provisioning;
    log_.info(id, std::string("warm pool: removed a member ") +
                      (text == unfinished ? "whose manufacture never finished"
                       : text == mine     ? "beyond the pool's size"
                                          : "of another profile: " + text));
    discard(id);
  }
  if (profile_.size == 0) return;
  log_.info(std::string("warm pool: ") + std::to_string(ready_.size()) + " of " + std::to_string(profile_.size) +
            " members ready at start, profile " + mine);
  fill();
}

void WarmPool::stop() {
  stopped_ = true;
  uv_timer_stop(retry_timer_.get());
}

void WarmPool::discard(const Uuid& member) {
  service_.remove(member, true, [this, alive = std::weak_ptr<int>(alive_), member](Status s) {
    if (alive.expired() || s) return;
    log_.error(member, "warm pool: removing a member failed: " + s.error().message);
  });
}

void WarmPool::retry_later(const std::string& why) {
  ++stats_.failures;
  stats_.last_error = why;
  backoff_ = std::clamp(backoff_ * 2, std::chrono::milliseconds(1000), std::chrono::milliseconds(60'000));
  log_.error("warm pool: " + why + "; retrying in " + std::to_string(backoff_.count()) + " ms");
  uv_timer_start(retry_timer_.get(), [](uv_timer_t* t) {
    if (auto* self = static_cast<WarmPool*>(t->data)) self->fill();
  }, static_cast<std::uint64_t>(backoff_.count()), 0);
}

void WarmPool::fill() {
  if (stopped_ || stats_.filling || ready_.size() >= profile_.size) return;
  stats_.filling = true;
  AddOptions options;
  options.provisioning = marker(false);
  const auto alive = std::weak_ptr<int>(alive_);
  service_.add(options, [this, alive](Result<const Instance*> added) {
    if (alive.expired()) return;
    if (!added) {
      stats_.filling = false;
      return retry_later("adding a member failed: " + added.error().message);
    }
    const Uuid id = (*added)->uuid;
    manufacture_(id, [this, alive, id](Status made) {
      if (alive.expired()) return;
      if (stopped_) return;  // shutting down: a member left not ready is discarded at the next start
      if (!made) {
        stats_.filling = false;
        discard(id);
        return retry_later("manufacturing a member failed: " + made.error().message);
      }
      service_.set_provisioning(id, marker(true), [this, alive, id](Status saved) {
        if (alive.expired()) return;
        stats_.filling = false;
        if (!saved) {
          discard(id);
          return retry_later("saving a member failed: " + saved.error().message);
        }
        backoff_ = std::chrono::milliseconds(0);
        ready_.push_back(id);
        log_.info(id, "warm pool: member ready (" + std::to_string(ready_.size()) + " of " +
                          std::to_string(profile_.size) + ")");
        fill();
      });
    });
  });
}

void WarmPool::adopt(const Uuid& target, const std::vector<TPM2_ALG_ID>& banks, const std::vector<tpm2::EkKind>& eks,
                     std::function<void(Result<bool>)> done) {
  if (!matches(banks, eks)) return done(false);
  if (ready_.empty()) {
    ++stats_.missed;
    fill();
    return done(false);
  }
  const Uuid member = ready_.front();
  ready_.pop_front();
  const auto alive = std::weak_ptr<int>(alive_);
  // The member's state as of now, then the member gone from disk, and only
  // then its state becomes the target's: a crash in between loses a member,
  // never duplicates one.
  service_.export_state(member, [this, alive, member, target, done = std::move(done)](
                                    Result<engine::StateBlobs> blobs) mutable {
    if (alive.expired()) return;
    if (!blobs) {
      ++stats_.failures;
      stats_.last_error = "exporting member " + member.to_string() + ": " + blobs.error().message;
      discard(member);
      fill();
      return done(false);
    }
    service_.remove(member, true, [this, alive, member, target, blobs = std::move(*blobs),
                                   done = std::move(done)](Status removed) mutable {
      if (alive.expired()) return;
      fill();
      if (!removed) {
        // Its state may still be on disk: it must not live twice.
        ++stats_.failures;
        stats_.last_error = "removing member " + member.to_string() + ": " + removed.error().message;
        log_.error(member, "warm pool: " + stats_.last_error);
        return done(false);
      }
      service_.replace_state(target, std::move(blobs), std::nullopt,
                             [this, alive, member, target, done = std::move(done)](Result<const Instance*> r) {
                               if (alive.expired()) return;
                               if (!r) return done(r.error());
                               ++stats_.taken;
                               log_.info(target, "took the manufactured state of warm-pool member " +
                                                     member.to_string());
                               done(true);
                             });
    });
  });
}

}  // namespace vtpm
