// SwitchingProvider: sets a request's per-user switches (AiRequest::use_gate,
// use_cache, prefer_provider) before the rest of the AI stack sees it. The
// app builds `decide` from the feature flags (SPEC §13), so the AI layer
// needs no knowledge of flags.
#pragma once

#include <functional>
#include <utility>

#include "ai/provider.h"

namespace persona::ai {

class SwitchingProvider final : public Provider {
 public:
  using Decide = std::function<void(AiRequest&)>;
  // `next` must outlive this.
  SwitchingProvider(Decide decide, Provider* next) : decide_(std::move(decide)), next_(next) {}

  const std::string& name() const override { return next_->name(); }
  std::shared_ptr<Call> Respond(AiRequest req, Callback done) override {
    decide_(req);
    return next_->Respond(std::move(req), std::move(done));
  }
  double MaxCostUsd(const AiRequest& req) const override { return next_->MaxCostUsd(req); }

 private:
  Decide decide_;
  Provider* next_;
};

}  // namespace persona::ai
