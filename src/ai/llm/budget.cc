#include "ai/llm/budget.h"

#include "core/ids.h"
#include "core/logging.h"

namespace persona::ai::llm {

BudgetLedger::BudgetLedger(double budget_usd,
                           std::function<StatusOr<double>(const std::string&)> load_spent,
                           SharedLedger shared)
    : budget_usd_(budget_usd), load_spent_(std::move(load_spent)), shared_(std::move(shared)) {}

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

std::optional<BudgetLedger::Hold> BudgetLedger::Reserve(const std::string& user_id,
                                                        double max_cost) {
  if (!enabled()) return Hold{user_id, "", 0};
  if (shared_) {
    Hold h{user_id, NewId(), max_cost};
    auto ok = shared_.reserve(user_id, h.id, max_cost, budget_usd_);
    if (!ok.ok()) {
      if (!shared_down_.exchange(true))
        LogWarn("the shared budget ledger cannot be reached: paid calls are refused until it can",
                {{"error", std::string(ok.status().message())}});
      return std::nullopt;
    }
    if (shared_down_.exchange(false)) LogInfo("the shared budget ledger is reachable again");
    if (!*ok) return std::nullopt;
    return h;
  }
  std::lock_guard<std::mutex> l(mu_);
  Account& a = AccountFor(user_id);
  if (a.spent + a.reserved + max_cost > budget_usd_) return std::nullopt;
  a.reserved += max_cost;
  return Hold{user_id, "", max_cost};
}

void BudgetLedger::Settle(const Hold& hold, double actual) {
  if (!enabled()) return;
  if (shared_) {
    // A settlement that fails leaves the hold counted until this process
    // stops; then another node counts it as spent. Never an overspend.
    if (Status st = shared_.settle(hold.id, actual); !st.ok())
      LogWarn("a budget hold could not be settled; it stays counted as reserved",
              {{"error", std::string(st.message())}});
    return;
  }
  std::lock_guard<std::mutex> l(mu_);
  Account& a = AccountFor(hold.user_id);
  a.reserved -= hold.amount;
  if (a.reserved < 0) a.reserved = 0;
  a.spent += actual;
}

std::pair<double, double> BudgetLedger::Get(const std::string& user_id) {
  if (shared_) return {0, 0};
  std::lock_guard<std::mutex> l(mu_);
  Account& a = AccountFor(user_id);
  return {a.spent, a.reserved};
}

}  // namespace persona::ai::llm
