#include "ai/llm/budget.h"

#include <algorithm>
#include <chrono>

#include "core/ids.h"
#include "core/logging.h"

namespace persona::ai::llm {

BudgetLedger::BudgetLedger(double budget_usd,
                           std::function<StatusOr<double>(const std::string&)> load_spent,
                           SharedLedger shared, Limits limits)
    : budget_usd_(budget_usd),
      load_spent_(std::move(load_spent)),
      shared_(std::move(shared)),
      limits_(limits) {}

int64_t BudgetLedger::Now() const {
  if (limits_.now_ms) return limits_.now_ms();
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

BudgetLedger::Account& BudgetLedger::AccountFor(const std::string& user_id,
                                                std::unique_lock<std::mutex>& l) {
  auto it = accounts_.find(user_id);
  if (it == accounts_.end()) {
    double spent = 0;
    if (load_spent_) {
      l.unlock();
      // An unreadable total counts as the whole budget spent: never overspend.
      auto loaded = load_spent_(user_id);
      spent = loaded.ok() ? *loaded : budget_usd_;
      l.lock();
    }
    // Another thread may have loaded it meanwhile: its account (with what
    // it reserved since) wins.
    it = accounts_.emplace(user_id, Account{spent, 0, Now()}).first;
    if (accounts_.size() > std::max(limits_.max_accounts, trim_at_)) Trim();
  }
  it->second.touched_ms = Now();
  return it->second;
}

void BudgetLedger::Trim() {
  const int64_t cutoff = Now() - limits_.idle_ms;
  for (auto it = accounts_.begin(); it != accounts_.end();) {
    if (it->second.reserved <= 0 && it->second.touched_ms < cutoff) {
      it = accounts_.erase(it);
    } else {
      ++it;
    }
  }
  // If most accounts are busy, the next sweep waits for 10 % more of them
  // (a sweep per new user would be quadratic).
  trim_at_ = accounts_.size() + accounts_.size() / 10;
}

size_t BudgetLedger::accounts() const {
  std::lock_guard<std::mutex> l(mu_);
  return accounts_.size();
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
  std::unique_lock<std::mutex> l(mu_);
  Account& a = AccountFor(user_id, l);
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
  std::unique_lock<std::mutex> l(mu_);
  Account& a = AccountFor(hold.user_id, l);
  a.reserved -= hold.amount;
  if (a.reserved < 0) a.reserved = 0;
  a.spent += actual;
}

bool BudgetLedger::Near(const std::string& user_id, double fraction) {
  if (!enabled()) return false;
  const double line = budget_usd_ * fraction;
  if (shared_) {
    if (!shared_.spent) return false;
    auto spent = shared_.spent(user_id);
    return !spent.ok() || *spent >= line;  // unreadable: assume the worst, as Reserve does
  }
  std::unique_lock<std::mutex> l(mu_);
  Account& a = AccountFor(user_id, l);
  return a.spent + a.reserved >= line;
}

std::pair<double, double> BudgetLedger::Get(const std::string& user_id) {
  if (shared_) return {0, 0};
  std::unique_lock<std::mutex> l(mu_);
  Account& a = AccountFor(user_id, l);
  return {a.spent, a.reserved};
}

}  // namespace persona::ai::llm
