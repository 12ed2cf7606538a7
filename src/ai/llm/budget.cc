#include "ai/llm/budget.h"

namespace persona::ai::llm {

BudgetLedger::BudgetLedger(double budget_usd,
                           std::function<StatusOr<double>(const std::string&)> load_spent)
    : budget_usd_(budget_usd), load_spent_(std::move(load_spent)) {}

BudgetLedger::Account& BudgetLedger::AccountFor(const std::string& user_id) {
  auto it = accounts_.find(user_id);
  if (it != accounts_.end()) return it->second;
  Account a;
  if (load_spent_) {
    // An unreadable total counts as the whole budget spent: never overspend.
    auto spent = load_spent_(user_id);
    a.spent = spent.ok() ? *spent : budget_usd_;
  }
  return accounts_.emplace(user_id, a).first->second;
}

bool BudgetLedger::Reserve(const std::string& user_id, double max_cost) {
  if (!enabled()) return true;
  std::lock_guard<std::mutex> l(mu_);
  Account& a = AccountFor(user_id);
  if (a.spent + a.reserved + max_cost > budget_usd_) return false;
  a.reserved += max_cost;
  return true;
}

void BudgetLedger::Settle(const std::string& user_id, double reserved, double actual) {
  if (!enabled()) return;
  std::lock_guard<std::mutex> l(mu_);
  Account& a = AccountFor(user_id);
  a.reserved -= reserved;
  if (a.reserved < 0) a.reserved = 0;
  a.spent += actual;
}

std::pair<double, double> BudgetLedger::Get(const std::string& user_id) {
  std::lock_guard<std::mutex> l(mu_);
  Account& a = AccountFor(user_id);
  return {a.spent, a.reserved};
}

}  // namespace persona::ai::llm
