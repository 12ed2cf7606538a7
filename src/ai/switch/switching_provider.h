// SwitchingProvider: sets a request's per-user switches (AiRequest::use_gate,
// use_cache, prefer_provider) before the rest of the AI stack sees it. The
// app builds `decide` from the feature flags (SPEC §13), so the AI layer
// needs no knowledge of flags.
//
// So that a rollout or a model canary can be judged, each reply is also
// counted under every variant that decided it (`decide` names them, e.g.
// {"persona.model", "canary"}): the reply's source or its error, the time
// the AI stack took, and the tokens and cost it spent, as
// persona_variant_replies_total{flag,variant,source},
// persona_variant_ai_seconds{flag,variant},
// persona_variant_tokens_total{flag,variant} and
// persona_variant_cost_microusd_total{flag,variant}.
#pragma once

#include <chrono>
#include <functional>
#include <string>
#include <utility>
#include <vector>

#include "ai/provider.h"
#include "metrics/metrics.h"

namespace persona::ai {

class SwitchingProvider final : public Provider {
 public:
  // The flags and the variants that decided the request.
  using Variants = std::vector<std::pair<std::string, std::string>>;
  using Decide = std::function<Variants(AiRequest&)>;
  // `next` must outlive this.
  SwitchingProvider(Decide decide, Provider* next) : decide_(std::move(decide)), next_(next) {}

  const std::string& name() const override { return next_->name(); }
  std::shared_ptr<Call> Respond(AiRequest req, Callback done) override {
    Variants variants = decide_(req);
    if (variants.empty()) return next_->Respond(std::move(req), std::move(done));
    const auto t0 = std::chrono::steady_clock::now();
    return next_->Respond(std::move(req), [variants = std::move(variants), t0,
                                           done = std::move(done)](StatusOr<AiReply> r) {
      const double seconds =
          std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
      auto& reg = metrics::Default();
      for (const auto& [flag, variant] : variants) {
        const std::string labels = "flag=\"" + flag + "\",variant=\"" + variant + "\"";
        reg.GetCounter("persona_variant_replies_total",
                       "AI replies by the flag variant that decided them, and their source",
                       labels + ",source=\"" + (r.ok() ? r->source : std::string("error")) + "\"")
            ->Inc();
        reg.GetHistogram("persona_variant_ai_seconds",
                         "Time in the AI stack by the flag variant that decided the step", labels)
            ->Observe(seconds);
        if (r.ok() && r->tokens_in + r->tokens_out > 0) {
          reg.GetCounter("persona_variant_tokens_total",
                         "Model tokens (in + out) by the flag variant that decided the step",
                         labels)
              ->Inc(static_cast<uint64_t>(r->tokens_in + r->tokens_out));
          reg.GetCounter("persona_variant_cost_microusd_total",
                         "Model cost in micro-USD by the flag variant that decided the step",
                         labels)
              ->Inc(static_cast<uint64_t>(r->cost_usd * 1e6 + 0.5));
        }
      }
      done(std::move(r));
    });
  }
  double MaxCostUsd(const AiRequest& req) const override { return next_->MaxCostUsd(req); }

 private:
  Decide decide_;
  Provider* next_;
};

}  // namespace persona::ai
