// BudgetLedger: per-user spending limits without overspend under concurrency.
//
// Before a paid call the chain reserves the call's maximum possible cost
// (every prompt byte as a token at the input price, plus max_tokens at the
// output price); the reservation fails if spent + reserved + this would pass
// the budget, and the step is answered by the next provider (the built-in
// one costs nothing). After the call the reservation is settled to the
// actual cost. Since no call can cost more than it reserved, concurrent
// steps can never spend past the budget together. `spent` starts from the
// durable per-user total (loaded once per user) and grows as calls settle.
// Thread-safe.
#pragma once

#include <functional>
#include <mutex>
#include <string>
#include <unordered_map>

#include "absl/base/thread_annotations.h"
#include "core/status.h"

namespace persona::ai::llm {

class BudgetLedger {
 public:
  // `budget_usd` <= 0 means no limit. `load_spent` returns a user's durable
  // total spend so far.
  BudgetLedger(double budget_usd, std::function<StatusOr<double>(const std::string&)> load_spent);

  bool enabled() const { return budget_usd_ > 0; }
  // True if `max_cost` fits; it is then held until Settle.
  bool Reserve(const std::string& user_id, double max_cost);
  void Settle(const std::string& user_id, double reserved, double actual);
  // Spent (settled) and reserved now, for tests and metrics.
  std::pair<double, double> Get(const std::string& user_id);

 private:
  struct Account {
    double spent = 0;
    double reserved = 0;
  };
  Account& AccountFor(const std::string& user_id) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  const double budget_usd_;
  std::function<StatusOr<double>(const std::string&)> load_spent_;
  std::mutex mu_;
  std::unordered_map<std::string, Account> accounts_ ABSL_GUARDED_BY(mu_);
};

}  // namespace persona::ai::llm
