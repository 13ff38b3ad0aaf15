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

void RootOfTrustControl::reseal(state::SealPolicy policy, Reply reply) {
  if (work_) return reply(make_error(ErrorCode::kBusy, "a reseal is already in progress"));
  work_ = std::make_unique<Work>();
  work_->owner = this;
  work_->policy = std::move(policy);
  work_->reply = std::move(reply);
  work_->request.data = work_.get();
  const int rc = uv_queue_work(
      loop_, &work_->request,
      [](uv_work_t* req) {
        auto* w = static_cast<Work*>(req->data);
        w->result = w->owner->store_.reseal(w->policy);
      },
      [](uv_work_t* req, int) {
        auto* w = static_cast<Work*>(req->data);
        RootOfTrustControl& self = *w->owner;
        const std::unique_ptr<Work> done = std::move(self.work_);
        if (!done->result) {
          self.log_.error("reseal failed: " + done->result.error().message);
          return done->reply(done->result.error());
        }
        const std::string policy = self.root_.policy_description();
        self.log_.info("master key resealed: " + policy);
        done->reply(Json{{"policy", policy}});
      });
  if (rc != 0) {
    const std::unique_ptr<Work> failed = std::move(work_);
    failed->reply(make_error(ErrorCode::kIo, std::string("cannot queue the reseal: ") + uv_strerror(rc)));
  }
}

}  // namespace vtpm
