#include "src/daemon/root_of_trust_control.h"

namespace vtpm {

Json RootOfTrustControl::status() const {
  const auto counter = store_.counter_status();
  Json j = {{"kind", root_.kind()},
            {"description", root_.describe()},
            {"hardware_protected", root_.hardware_protected()},
            {"counter", {{"value", counter.value}, {"failures", counter.failures}, {"in_step", counter.problem.empty()}}}};
  if (!counter.problem.empty()) j["counter"]["problem"] = counter.problem;
  if (const std::string policy = root_.policy_description(); !policy.empty()) j["policy"] = policy;
  if (work_) j["reseal_in_progress"] = true;
  return j;
}

void RootOfTrustControl::reseal(state::SealPolicy policy, Reply reply, StepListener listener) {
  if (work_) return reply(make_error(ErrorCode::kBusy, "a reseal is already in progress"));
  work_ = std::make_unique<Work>();
  work_->owner = this;
  work_->policy = std::move(policy);
  work_->reply = std::move(reply);
  work_->listener = std::move(listener);
  work_->started_ms = uv_now(loop_);
  work_->request.data = work_.get();
  queue(
      [](uv_work_t* req) {
        auto* w = static_cast<Work*>(req->data);
        w->sealed = w->owner->store_.seal_master_key(w->policy);
      },
      [](uv_work_t* req, int) {
        auto* w = static_cast<Work*>(req->data);
        RootOfTrustControl& self = *w->owner;
        if (!w->sealed) return self.finish(w->sealed.error());
        if (w->listener) w->listener("sealed", static_cast<std::int64_t>(uv_now(self.loop_) - w->started_ms));
        self.queue(
            [](uv_work_t* again) {
              auto* v = static_cast<Work*>(again->data);
              v->stored = v->owner->store_.store_sealed_master_key(*v->sealed);
            },
            [](uv_work_t* again, int) {
              auto* v = static_cast<Work*>(again->data);
              RootOfTrustControl& owner = *v->owner;
              if (!v->stored) return owner.finish(v->stored.error());
              if (v->listener) v->listener("written", static_cast<std::int64_t>(uv_now(owner.loop_) - v->started_ms));
              owner.finish(Json{{"policy", owner.root_.policy_description()}});
            });
      });
}

void RootOfTrustControl::queue(void (*step)(uv_work_t*), void (*after)(uv_work_t*, int)) {
  if (const int rc = uv_queue_work(loop_, &work_->request, step, after); rc != 0) {
    finish(make_error(ErrorCode::kIo, std::string("cannot queue the reseal: ") + uv_strerror(rc)));
  }
}

void RootOfTrustControl::finish(Result<Json> outcome) {
  const std::unique_ptr<Work> done = std::move(work_);
  if (!outcome) {
    log_.error("reseal failed: " + outcome.error().message);
  } else {
    log_.info("master key resealed: " + (*outcome)["policy"].get<std::string>());
  }
  done->reply(std::move(outcome));
}

}  // namespace vtpm
