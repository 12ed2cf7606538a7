#include "ai/llm/chain.h"

#include <algorithm>
#include <random>

#include "core/logging.h"

namespace persona::ai::llm {
namespace {

using Clock = std::chrono::steady_clock;

// Time kept back for the built-in answer after the last provider gives up.
constexpr auto kFallbackReserve = std::chrono::milliseconds(2);

bool Retryable(const Status& st) {
  return absl::IsResourceExhausted(st) || absl::IsUnavailable(st);
}

double Jitter() {
  thread_local std::mt19937 rng(std::random_device{}());
  return std::uniform_real_distribution<double>(0.5, 1.5)(rng);
}

std::string Reason(const Status& st) {
  if (absl::IsDeadlineExceeded(st)) return "timeout";
  if (absl::IsResourceExhausted(st)) return "rate limited";
  std::string m(st.message());
  if (m.size() > 120) m.resize(120);
  return m.empty() ? std::string(absl::StatusCodeToString(st.code())) : m;
}

}  // namespace

// One step's walk down the chain.
struct ProviderChain::Run : std::enable_shared_from_this<Run> {
  ProviderChain* chain;
  AiRequest req;
  Callback done;
  Clock::time_point deadline;

  std::mutex mu;
  bool finished = false;
  size_t index = 0;           // position in `order`
  std::vector<size_t> order;  // entry indexes, in the order they are tried
  int retries = 0;
  uint64_t attempt = 0;  // increments per call; stale answers are ignored
  std::shared_ptr<Call> call;
  Scheduler::TaskId timer = 0;
  std::optional<BudgetLedger::Hold> hold;  // a paid call's budget reservation
  Clock::time_point started;
  std::vector<std::string> fallbacks;
  // The tiers the router allows for this step.
  bool allow_primary = true, allow_cheap = true;
  bool downgraded = false;  // near the budget: cheap only

  // Starts the next call (or answers with the fallback). Never called with mu held.
  void Next() {
    for (;;) {
      std::unique_lock<std::mutex> l(mu);
      if (finished) return;
      if (index >= chain->entries_.size()) {
        finished = true;
        l.unlock();
        return Fallback();
      }
      const size_t i = order[index];
      const ChainEntry& e = chain->entries_[i];
      const std::string& pname = e.provider->name();
      if (!(e.tier == Tier::kCheap ? allow_cheap : allow_primary)) {
        if (downgraded) fallbacks.push_back(pname + ": near the budget");
        ++index;
        retries = 0;
        continue;
      }
      const auto now = Clock::now();
      if (deadline - now <= kFallbackReserve) {
        fallbacks.push_back(pname + ": no time left");
        index = chain->entries_.size();
        continue;
      }
      if (!chain->Admit(i)) {
        chain->calls_skipped_[i]->Inc();
        fallbacks.push_back(pname + ": circuit open");
        ++index;
        retries = 0;
        continue;
      }
      hold.reset();
      if (chain->budget_ && chain->budget_->enabled()) {
        const double max_cost = e.provider->MaxCostUsd(req);
        if (max_cost > 0) {
          hold = chain->budget_->Reserve(req.user_id, max_cost);
          if (!hold) {
            chain->Release(i);  // not the provider's fault, nor a success: no call was made
            chain->calls_skipped_[i]->Inc();
            fallbacks.push_back(pname + ": budget exhausted");
            ++index;
            retries = 0;
            continue;
          }
        }
      }
      AiRequest call_req = req;
      call_req.deadline =
          std::min(now + std::chrono::milliseconds(e.timeout_ms), deadline - kFallbackReserve);
      const uint64_t my = ++attempt;
      started = now;
      auto self = shared_from_this();
      // Belt and braces: if the provider does not give up by itself at the
      // call's deadline, the timer cancels it.
      timer = chain->scheduler_->At(call_req.deadline + std::chrono::milliseconds(5), [self, my] {
        self->OnAnswer(my, absl::DeadlineExceededError("no answer before the deadline"));
      });
      l.unlock();
      auto c = e.provider->Respond(std::move(call_req), [self, my](StatusOr<AiReply> r) {
        self->OnAnswer(my, std::move(r));
      });
      l.lock();
      if (attempt == my && !finished) call = std::move(c);
      return;
    }
  }

  void OnAnswer(uint64_t my, StatusOr<AiReply> r) {
    std::unique_lock<std::mutex> l(mu);
    if (finished || my != attempt) return;
    ++attempt;  // later answers to this call are stale
    chain->scheduler_->Cancel(timer);
    std::shared_ptr<Call> c = std::move(call);
    const size_t i = order[index];
    const ChainEntry& e = chain->entries_[i];
    const double secs = std::chrono::duration<double>(Clock::now() - started).count();
    chain->call_seconds_[i]->Observe(secs);
    if (hold) {
      // A call that timed out or was cancelled may have been billed: keep
      // the whole reservation as spent. Refused calls cost nothing.
      double actual = 0;
      if (r.ok()) {
        actual = r->cost_usd;
      } else if (absl::IsDeadlineExceeded(r.status()) || absl::IsCancelled(r.status())) {
        actual = hold->amount;
      }
      chain->budget_->Settle(*hold, actual);
      hold.reset();
    }
    if (r.ok()) {
      finished = true;
      chain->Record(i, true);
      chain->calls_ok_[i]->Inc();
      r->fallbacks = std::move(fallbacks);
      r->latency_ms = static_cast<int64_t>(secs * 1000);
      r->tier = e.tier;
      l.unlock();
      done(std::move(r));
      return;
    }
    if (c && absl::IsDeadlineExceeded(r.status())) c->Cancel();
    chain->Record(i, false);
    chain->calls_failed_[i]->Inc();
    const Status st = r.status();
    if (Retryable(st) && retries < e.max_retries) {
      const int64_t exp = std::min<int64_t>(chain->options_.retry_max_ms,
                                            int64_t{chain->options_.retry_base_ms} << retries);
      const auto backoff = std::chrono::milliseconds(
          std::max<int64_t>(RetryAfterMs(st), static_cast<int64_t>(exp * Jitter())));
      if (Clock::now() + backoff + kFallbackReserve < deadline) {
        ++retries;
        auto self = shared_from_this();
        timer = chain->scheduler_->After(backoff, [self] { self->Next(); });
        return;
      }
    }
    fallbacks.push_back(e.provider->name() + ": " + Reason(st));
    ++index;
    retries = 0;
    l.unlock();
    Next();
  }

  void Fallback() {
    auto r = chain->fallback_->Reply(req);
    if (r.ok()) {
      r->fallbacks = std::move(fallbacks);
      if (!chain->entries_.empty()) chain->fallback_answers_->Inc();
    }
    done(std::move(r));
  }

  void Cancel() {
    std::shared_ptr<Call> c;
    {
      std::lock_guard<std::mutex> l(mu);
      if (finished) return;
      finished = true;
      ++attempt;
      chain->scheduler_->Cancel(timer);
      c = std::move(call);
      if (hold) {
        chain->budget_->Settle(*hold, hold->amount);
        hold.reset();
      }
    }
    if (c) c->Cancel();
    done(absl::CancelledError("the step was cancelled"));
  }
};

namespace {
class RunHandle final : public Call {
 public:
  explicit RunHandle(std::weak_ptr<ProviderChain::Run> run) : run_(std::move(run)) {}
  void Cancel() override {
    if (auto r = run_.lock()) r->Cancel();
  }

 private:
  std::weak_ptr<ProviderChain::Run> run_;
};
}  // namespace

ProviderChain::ProviderChain(std::vector<ChainEntry> entries,
                             std::shared_ptr<BuiltinProvider> fallback, ChainOptions options,
                             Scheduler* scheduler, BudgetLedger* budget)
    : entries_(std::move(entries)),
      fallback_(std::move(fallback)),
      options_(options),
      scheduler_(scheduler),
      budget_(budget) {
  auto& reg = metrics::Default();
  for (const auto& e : entries_) {
    if (e.tier == Tier::kCheap) has_cheap_ = true;
    breakers_.push_back(std::make_unique<Breaker>());
    const std::string l = "provider=\"" + e.provider->name() + "\"";
    calls_ok_.push_back(reg.GetCounter("persona_ai_provider_calls_total",
                                       "AI provider calls by outcome", l + ",outcome=\"ok\""));
    calls_failed_.push_back(reg.GetCounter("persona_ai_provider_calls_total",
                                           "AI provider calls by outcome",
                                           l + ",outcome=\"failed\""));
    calls_skipped_.push_back(reg.GetCounter("persona_ai_provider_calls_total",
                                            "AI provider calls by outcome",
                                            l + ",outcome=\"skipped\""));
    call_seconds_.push_back(
        reg.GetHistogram("persona_ai_call_seconds", "AI provider call latency", l));
  }
  downgrades_ = reg.GetCounter("persona_ai_router_downgrades_total",
                               "Steps the cost router sent to the cheap tier because the user was "
                               "near their budget");
  fallback_answers_ = reg.GetCounter("persona_ai_fallback_answers_total",
                                     "Steps answered by the built-in rules after every configured "
                                     "provider failed or was skipped");
}

ProviderChain::~ProviderChain() = default;

bool ProviderChain::Admit(size_t i) {
  Breaker& b = *breakers_[i];
  std::lock_guard<std::mutex> l(b.mu);
  if (b.failures < options_.breaker_failures) return true;
  if (Clock::now() < b.open_until || b.trial) return false;
  b.trial = true;  // half-open: one call decides
  return true;
}

void ProviderChain::Record(size_t i, bool ok) {
  Breaker& b = *breakers_[i];
  std::lock_guard<std::mutex> l(b.mu);
  b.trial = false;
  if (ok) {
    b.failures = 0;
    return;
  }
  if (++b.failures >= options_.breaker_failures) {
    if (b.failures == options_.breaker_failures || Clock::now() >= b.open_until) {
      LogWarn("AI provider circuit open", {{"provider", entries_[i].provider->name()},
                                           {"failures", b.failures},
                                           {"cooldown_ms", options_.breaker_cooldown_ms}});
    }
    b.open_until = Clock::now() + std::chrono::milliseconds(options_.breaker_cooldown_ms);
  }
}

void ProviderChain::Release(size_t i) {
  Breaker& b = *breakers_[i];
  std::lock_guard<std::mutex> l(b.mu);
  b.trial = false;
}

bool ProviderChain::BreakerOpen(size_t i) const {
  Breaker& b = *breakers_[i];
  std::lock_guard<std::mutex> l(b.mu);
  return b.failures >= options_.breaker_failures && Clock::now() < b.open_until;
}

std::shared_ptr<Call> ProviderChain::Respond(AiRequest req, Callback done) {
  auto run = std::make_shared<Run>();
  run->chain = this;
  run->deadline =
      std::min(req.deadline, Clock::now() + std::chrono::milliseconds(options_.deadline_ms));
  if (req.priority == Priority::kLow) run->allow_primary = false;
  if (req.priority == Priority::kHigh) run->allow_cheap = false;
  // Only to a cheap tier that exists: without one the user keeps the
  // primary until the budget itself refuses.
  if (has_cheap_ && budget_ && budget_->enabled() &&
      budget_->Near(req.user_id, options_.downgrade_at)) {
    run->allow_primary = false;
    run->allow_cheap = true;
    run->downgraded = true;
    downgrades_->Inc();
  }
  // A canary (a flag's prefer_provider): that entry first, the rest in order.
  for (size_t i = 0; i < entries_.size() && !req.prefer_provider.empty(); ++i) {
    if (entries_[i].provider->name() == req.prefer_provider) {
      run->order.push_back(i);
      break;  // the first of that name (names need not be unique)
    }
  }
  for (size_t i = 0; i < entries_.size(); ++i)
    if (std::find(run->order.begin(), run->order.end(), i) == run->order.end())
      run->order.push_back(i);
  run->req = std::move(req);
  run->done = std::move(done);
  auto handle = std::make_shared<RunHandle>(run);
  run->Next();
  return handle;
}

}  // namespace persona::ai::llm
