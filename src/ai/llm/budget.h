// BudgetLedger: per-user spending limits without overspend under concurrency.
//
// Before a paid call the chain reserves the call's maximum possible cost
// (every prompt byte as a token at the input price, plus max_tokens at the
// output price); the reservation fails if spent + reserved + this would pass
// the budget, and the step is answered by the next provider (the built-in
// one costs nothing). After the call the reservation is settled to the
// actual cost. Since no call can cost more than it reserved, concurrent
// steps can never spend past the budget together.
//
// One process keeps the accounts itself: `spent` starts from the durable
// per-user total (loaded once per user) and grows as calls settle. Several
// processes on one store share the store's ledger instead (SharedLedger):
// each reservation and settlement is one statement there, checked against
// every process's spending and holds, so N nodes spend one budget, not N.
// Thread-safe.
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <mutex>
#include <optional>
#include <string>
#include <unordered_map>

#include "absl/base/thread_annotations.h"
#include "core/status.h"

namespace persona::ai::llm {

// The store's ledger, for processes that share one (EventStore's
// ReserveBudget and SettleBudget).
struct SharedLedger {
  std::function<StatusOr<bool>(const std::string& user_id, const std::string& hold_id,
                               double amount_usd, double limit_usd)>
      reserve;
  std::function<Status(const std::string& hold_id, double actual_usd)> settle;
  // What the user has spent on every node (for the router's downgrade); may
  // be unset, then no user is downgraded.
  std::function<StatusOr<double>(const std::string& user_id)> spent;
  explicit operator bool() const { return reserve && settle; }
};

// The local accounts are bounded: past `max_accounts`, accounts with
// nothing reserved and untouched for `idle_ms` (long after their spending
// was committed to the durable total) are dropped and loaded again when
// needed. `now_ms` is injectable for tests (nullptr: steady clock).
struct BudgetLimits {
  size_t max_accounts = 100000;
  int64_t idle_ms = 60000;
  int64_t (*now_ms)() = nullptr;
};

class BudgetLedger {
 public:
  // A reservation, held until settled.
  struct Hold {
    std::string user_id;
    std::string id;  // the shared ledger's name for it
    double amount = 0;
  };

  // `budget_usd` <= 0 means no limit. `load_spent` returns a user's durable
  // total spend so far (one process). With `shared`, the store keeps the
  // accounts and `load_spent` is not used.
  using Limits = BudgetLimits;
  BudgetLedger(double budget_usd, std::function<StatusOr<double>(const std::string&)> load_spent,
               SharedLedger shared = {}, Limits limits = {});

  bool enabled() const { return budget_usd_ > 0; }
  // A hold of `max_cost` if it fits (a shared ledger that cannot be reached
  // refuses: never overspend), else nullopt.
  std::optional<Hold> Reserve(const std::string& user_id, double max_cost);
  void Settle(const Hold& hold, double actual);
  // Whether the user has spent (and, on this process, reserved) at least
  // `fraction` of the budget: the cost router then sends their steps to
  // cheap models (SPEC §12). False without a budget. With a shared ledger
  // this asks SharedLedger::spent (a round trip).
  bool Near(const std::string& user_id, double fraction);
  // Spent (settled) and reserved now by this process's own accounts, for
  // tests and metrics (0, 0 with a shared ledger).
  std::pair<double, double> Get(const std::string& user_id);
  size_t accounts() const;

 private:
  struct Account {
    double spent = 0;
    double reserved = 0;
    int64_t touched_ms = 0;
  };
  // The user's account, loading the durable total first if there is none:
  // the store is read without holding mu_ (a slow read holds up only this
  // user). Returns with `l` locked.
  Account& AccountFor(const std::string& user_id, std::unique_lock<std::mutex>& l);
  void Trim() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  int64_t Now() const;

  const double budget_usd_;
  std::function<StatusOr<double>(const std::string&)> load_spent_;
  const SharedLedger shared_;
  std::atomic<bool> shared_down_{false};  // logged once per outage
  const Limits limits_;
  mutable std::mutex mu_;
  std::unordered_map<std::string, Account> accounts_ ABSL_GUARDED_BY(mu_);
  size_t trim_at_ ABSL_GUARDED_BY(mu_) = 0;
};

}  // namespace persona::ai::llm
