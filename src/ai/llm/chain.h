// ProviderChain: the configured providers, tried in order, with the
// built-in rules as the last resort.
//
// For one step the chain tries each provider in turn until one answers:
//   - each call gets min(the provider's timeout_ms, what is left of the
//     step's deadline); a call still running then is cancelled;
//   - 429 and 5xx answers and connection failures are retried with jittered
//     exponential backoff (at least the provider's Retry-After), while the
//     deadline allows; other failures move on to the next provider;
//   - a circuit breaker per provider skips it for `breaker_cooldown_ms`
//     after `breaker_failures` failures in a row, then lets one call through;
//   - with a per-user budget, a paid call first reserves its maximum cost and
//     is skipped when that does not fit (see budget.h);
//   - the cost router (SPEC §12): a low-priority message tries only the
//     cheap tier, a high-priority one only the primary tier, a normal one
//     every entry in order; a user who has spent `downgrade_at` of their
//     budget gets only the cheap tier, whatever the priority (when the chain
//     has a cheap tier);
//   - when nothing else answered in time, the built-in provider answers
//     (it needs no network and takes microseconds), so a step always gets a
//     reply within the deadline.
// The reply says which provider answered and why earlier ones did not.
#pragma once

#include <atomic>
#include <chrono>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "ai/builtin/builtin_provider.h"
#include "ai/llm/budget.h"
#include "ai/provider.h"
#include "core/scheduler.h"
#include "metrics/metrics.h"

namespace persona::ai::llm {

struct ChainEntry {
  std::shared_ptr<Provider> provider;
  int timeout_ms = 8000;
  int max_retries = 2;
  Tier tier = Tier::kPrimary;
};

struct ChainOptions {
  int deadline_ms = 10000;  // the whole step's AI budget (ai.deadline_ms)
  int breaker_failures = 5;
  int breaker_cooldown_ms = 10000;
  int retry_base_ms = 100;
  int retry_max_ms = 2000;
  // The share of the per-user budget past which a user's steps go to the
  // cheap tier only (ai.router.downgrade_at).
  double downgrade_at = 0.8;
};

class ProviderChain final : public Provider {
 public:
  // `fallback` answers when no entry did. `budget` may be null.
  ProviderChain(std::vector<ChainEntry> entries, std::shared_ptr<BuiltinProvider> fallback,
                ChainOptions options, Scheduler* scheduler, BudgetLedger* budget);
  ~ProviderChain() override;

  const std::string& name() const override { return name_; }
  std::shared_ptr<Call> Respond(AiRequest req, Callback done) override;

  // True while the provider's breaker is open (for tests and metrics).
  bool BreakerOpen(size_t index) const;

  struct Run;  // one step's walk down the chain (chain.cc)

 private:
  struct Breaker {
    std::mutex mu;
    int failures = 0;
    std::chrono::steady_clock::time_point open_until{};
    bool trial = false;  // half-open: one call let through
  };
  friend struct Run;

  // Whether a call to entry `i` may start now (breaker closed or half-open).
  bool Admit(size_t i);
  // Ends a half-open trial that made no call (a budget refusal): neither a
  // success nor a failure of the provider.
  void Release(size_t i);
  void Record(size_t i, bool ok);

  std::string name_ = "chain";
  std::vector<ChainEntry> entries_;
  std::vector<std::unique_ptr<Breaker>> breakers_;
  std::shared_ptr<BuiltinProvider> fallback_;
  ChainOptions options_;
  Scheduler* scheduler_;
  BudgetLedger* budget_;
  bool has_cheap_ = false;
  std::vector<metrics::Counter*> calls_ok_, calls_failed_, calls_skipped_;
  std::vector<metrics::Histogram*> call_seconds_;
  metrics::Counter* fallback_answers_;
  metrics::Counter* downgrades_;
};

}  // namespace persona::ai::llm
