// Prompting, parsing of untrusted model output, reply streaming, the
// provider chain (order, retries, breaker, deadline) and budgets.
#include <gtest/gtest.h>

#include <atomic>
#include <future>
#include <map>
#include <mutex>
#include <thread>

#include "ai/llm/budget.h"
#include "ai/llm/chain.h"
#include "ai/llm/prompt.h"
#include "model/schema.h"

namespace persona::ai::llm {
namespace {

std::shared_ptr<const model::Schema> DefaultSchema() {
  static auto s = *model::Schema::FromYaml(model::BuiltinDefaultSchemaYaml());
  return s;
}

TEST(LlmPromptTest, SystemPromptNamesEveryFieldAndTheContract) {
  AiRequest req;
  req.schema = DefaultSchema();
  req.profile["name"] = "Ada";
  req.asked_field = "age";
  const std::string p = SystemPrompt(req);
  for (const auto& f : req.schema->fields())
    EXPECT_NE(p.find("- " + f.name + " ("), std::string::npos) << f.name;
  EXPECT_NE(p.find("one of email, phone, sms, none"), std::string::npos);
  EXPECT_NE(p.find("{\"name\":\"Ada\"}"), std::string::npos);
  EXPECT_NE(p.find("asked for: age"), std::string::npos);
  req.history = {{"user", "hi"}, {"assistant", "hello"}};
  req.text = "I'm 30";
  auto msgs = ChatMessages(req);
  ASSERT_EQ(msgs.size(), 4u);
  EXPECT_EQ(msgs[0].first, "system");
  EXPECT_EQ(msgs[3], (std::pair<std::string, std::string>{"user", "I'm 30"}));
}

TEST(LlmPromptTest, ParsesTheContractAndDropsWhatIsNotAField) {
  auto out = ParseModelOutput(
      R"({"reply":"Hi","changes":[{"field":"name","value":"Ada"},{"field":"is_admin","value":true},
          {"field":"age"},{"value":3},"junk"],"asks":"city","session_id":"x"})",
      *DefaultSchema());
  ASSERT_TRUE(out.ok()) << out.status();
  EXPECT_EQ(out->reply, "Hi");
  ASSERT_EQ(out->changes.size(), 1u);
  EXPECT_EQ(out->changes[0].field, "name");
  EXPECT_EQ(out->asks, "city");
  EXPECT_FALSE(out->repaired);
  // The map form, and an "asks" that is not a field.
  out = ParseModelOutput(R"({"reply":"ok","changes":{"age":30,"password":"x"},"asks":"password"})",
                         *DefaultSchema());
  ASSERT_TRUE(out.ok());
  ASSERT_EQ(out->changes.size(), 1u);
  EXPECT_EQ(out->changes[0].field, "age");
  EXPECT_EQ(out->asks, "");
}

TEST(LlmPromptTest, RepairsOnceOrRefuses) {
  auto out = ParseModelOutput(
      "Sure!\n```json\n{\"reply\": \"a {b} \\\"c\\\"\", \"changes\": [],}\n```", *DefaultSchema());
  ASSERT_TRUE(out.ok()) << out.status();
  EXPECT_TRUE(out->repaired);
  EXPECT_EQ(out->reply, "a {b} \"c\"");
  for (const char* bad : {"", "plain prose", "{\"reply\": 4}", "{\"changes\": []}", "[1]", "{",
                          "{\"reply\": \"\"}", "null"}) {
    EXPECT_FALSE(ParseModelOutput(bad, *DefaultSchema()).ok()) << bad;
  }
  // Replies are bounded, on a UTF-8 boundary.
  std::string big = "{\"reply\": \"";
  for (int i = 0; i < 3000; ++i) big += "가";
  big += "\"}";
  out = ParseModelOutput(big, *DefaultSchema());
  ASSERT_TRUE(out.ok());
  EXPECT_LE(out->reply.size(), kMaxReplyBytes);
  EXPECT_EQ(out->reply.size() % 3, 0u);
}

TEST(LlmPromptTest, ReplyStreamerDecodesAcrossEveryChunkBoundary) {
  const std::string json =
      R"({"changes":[{"field":"reply","value":"x"}], "reply" : "Hi \"Ann\"\n\u00e9\ud83d\ude00 done", "asks":""})";
  const std::string want = "Hi \"Ann\"\n\xc3\xa9\xf0\x9f\x98\x80 done";
  for (size_t cut = 0; cut <= json.size(); ++cut) {
    ReplyStreamer s;
    std::string got = s.Feed(json.substr(0, cut));
    got += s.Feed(json.substr(cut));
    EXPECT_EQ(got, want) << cut;
  }
  ReplyStreamer one;
  std::string got;
  for (char c : json) got += one.Feed(std::string_view(&c, 1));
  EXPECT_EQ(got, want);
}

// Found by fuzzing: a lone surrogate escape streamed invalid UTF-8, and a
// "reply" key inside a nested object was streamed instead of the real reply.
TEST(LlmPromptTest, ReplyStreamerStaysUtf8AndTakesOnlyTheTopLevelReply) {
  ReplyStreamer a;
  EXPECT_EQ(a.Feed(R"({"reply":"x\udc00y\ud83dz"})"), "x\xEF\xBF\xBDy\xEF\xBF\xBDz");
  ReplyStreamer b;
  EXPECT_EQ(b.Feed(R"({"asks":"","meta":{"reply":"ignore previous"},"reply":"Hello!"})"), "Hello!");
  ReplyStreamer c;
  EXPECT_EQ(c.Feed(R"({"changes":[{"field":"reply","value":"no"}],"reply":"yes"})"), "yes");
  ReplyStreamer d;  // a malformed \u escape ends the stream (before a UTF-8 sequence is split)
  EXPECT_EQ(d.Feed("{\"reply\": \"ok \\u\"y\xdc\x8b more\"}"), "ok ");
}

// A provider scripted per call: answers, fails or hangs.
class ScriptedProvider final : public Provider {
 public:
  struct Step {
    Status status;  // OK: answer
    int delay_ms = 0;
    bool hang = false;
  };
  explicit ScriptedProvider(std::string name) : name_(std::move(name)) {}
  const std::string& name() const override { return name_; }
  std::vector<Step> script;
  Step fallback_step;
  std::atomic<int> calls{0};
  double max_cost = 0;
  double cost = 0;
  double MaxCostUsd(const AiRequest&) const override { return max_cost; }
  std::shared_ptr<Call> Respond(AiRequest req, Callback done) override {
    const int n = calls++;
    Step st = n < static_cast<int>(script.size()) ? script[n] : fallback_step;
    if (st.hang) {
      hung_.push_back(std::move(done));  // never answered (until destroyed)
      return nullptr;
    }
    std::thread([st, done = std::move(done), this] {
      if (st.delay_ms) std::this_thread::sleep_for(std::chrono::milliseconds(st.delay_ms));
      if (!st.status.ok()) return done(st.status);
      AiReply r;
      r.text = "from " + name_;
      r.provider = name_;
      r.source = "llm";
      r.cost_usd = cost;
      done(r);
    }).detach();
    return nullptr;
  }

 private:
  std::string name_;
  std::vector<Callback> hung_;
};

AiRequest Req(int deadline_ms = 2000) {
  AiRequest r;
  r.schema = DefaultSchema();
  r.text = "I'm Bo";
  r.user_id = "u";
  r.deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(deadline_ms);
  return r;
}

StatusOr<AiReply> Ask(Provider& p, AiRequest req) {
  std::promise<StatusOr<AiReply>> pr;
  p.Respond(std::move(req), [&pr](StatusOr<AiReply> r) { pr.set_value(std::move(r)); });
  return pr.get_future().get();
}

TEST(LlmChainTest, FallsThroughInOrderWithReasons) {
  Scheduler sched;
  auto a = std::make_shared<ScriptedProvider>("a");
  auto b = std::make_shared<ScriptedProvider>("b");
  a->fallback_step.status = absl::InvalidArgumentError("bad request");
  ProviderChain chain({{a, 500, 2}, {b, 500, 2}}, std::make_shared<BuiltinProvider>("rules"), {},
                      &sched, nullptr);
  auto r = Ask(chain, Req());
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->text, "from b");
  EXPECT_EQ(a->calls.load(), 1);  // not retryable: no retries
  ASSERT_EQ(r->fallbacks.size(), 1u);
  EXPECT_EQ(r->fallbacks[0], "a: bad request");
}

TEST(LlmChainTest, RetriesRateLimitsThenOpensTheBreaker) {
  Scheduler sched;
  auto a = std::make_shared<ScriptedProvider>("a");
  a->fallback_step.status = WithRetryAfter(absl::ResourceExhaustedError("429"), 0);
  ChainOptions o;
  o.breaker_failures = 3;
  o.breaker_cooldown_ms = 200;
  o.retry_base_ms = 1;
  ProviderChain chain({{a, 500, 2}}, std::make_shared<BuiltinProvider>("rules"), o, &sched,
                      nullptr);
  auto r = Ask(chain, Req());
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->source, "builtin");
  EXPECT_EQ(a->calls.load(), 3);
  EXPECT_TRUE(chain.BreakerOpen(0));
  r = Ask(chain, Req());
  EXPECT_EQ(a->calls.load(), 3);  // skipped while open
  EXPECT_EQ(r->fallbacks.back(), "a: circuit open");
  std::this_thread::sleep_for(std::chrono::milliseconds(250));
  a->fallback_step.status = absl::OkStatus();  // half-open: one call decides
  r = Ask(chain, Req());
  EXPECT_EQ(r->text, "from a");
  EXPECT_FALSE(chain.BreakerOpen(0));
}

TEST(LlmChainTest, AHangingProviderNeverHoldsAStepPastItsDeadline) {
  Scheduler sched;
  auto a = std::make_shared<ScriptedProvider>("a");
  a->fallback_step.hang = true;
  ChainOptions o;
  o.deadline_ms = 150;
  ProviderChain chain({{a, 10000, 0}}, std::make_shared<BuiltinProvider>("rules"), o, &sched,
                      nullptr);
  const auto t = std::chrono::steady_clock::now();
  auto r = Ask(chain, Req(10000));
  const auto took = std::chrono::steady_clock::now() - t;
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->source, "builtin");
  EXPECT_LT(took, std::chrono::milliseconds(300));
  EXPECT_EQ(r->fallbacks[0], "a: timeout");
}

TEST(LlmChainTest, ConcurrentStepsNeverOverspendTheBudget) {
  Scheduler sched;
  auto a = std::make_shared<ScriptedProvider>("a");
  a->max_cost = 0.01;  // reserved per call
  a->cost = 0.007;     // actually spent
  a->fallback_step.delay_ms = 5;
  BudgetLedger budget(0.1, [](const std::string&) -> StatusOr<double> { return 0.0; });
  ProviderChain chain({{a, 1000, 0}}, std::make_shared<BuiltinProvider>("rules"), {}, &sched,
                      &budget);
  std::atomic<int> paid{0};
  std::vector<std::thread> threads;
  for (int i = 0; i < 100; ++i) {
    threads.emplace_back([&] {
      auto r = Ask(chain, Req());
      if (r.ok() && r->source == "llm") ++paid;
    });
  }
  for (auto& t : threads) t.join();
  auto [spent, reserved] = budget.Get("u");
  EXPECT_LE(spent, 0.1 + 1e-12);
  EXPECT_DOUBLE_EQ(reserved, 0);
  EXPECT_NEAR(spent, paid.load() * 0.007, 1e-9);
  EXPECT_GE(paid.load(), 10);  // 0.1 / 0.01 reservations fit at once
  EXPECT_LE(paid.load(), 14);  // 0.1 / 0.007
}

TEST(LlmChainTest, TheRouterPicksTiersByPriority) {
  Scheduler sched;
  auto primary = std::make_shared<ScriptedProvider>("big");
  auto cheap = std::make_shared<ScriptedProvider>("small");
  ProviderChain chain({{primary, 500, 0, Tier::kPrimary}, {cheap, 500, 0, Tier::kCheap}},
                      std::make_shared<BuiltinProvider>("rules"), {}, &sched, nullptr);
  AiRequest req = Req();
  auto r = Ask(chain, req);  // normal: the chain in order
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->text, "from big");
  EXPECT_EQ(r->tier, Tier::kPrimary);
  req.priority = Priority::kLow;  // cheap only
  r = Ask(chain, req);
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->text, "from small");
  EXPECT_EQ(r->tier, Tier::kCheap);
  EXPECT_TRUE(r->fallbacks.empty());
  // High: the primary only, even when it fails (then the built-in rules).
  primary->fallback_step.status = absl::InvalidArgumentError("bad request");
  req.priority = Priority::kHigh;
  r = Ask(chain, req);
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->source, "builtin");
  EXPECT_EQ(cheap->calls.load(), 1);
  // Normal falls through to the cheap one.
  req.priority = Priority::kNormal;
  r = Ask(chain, req);
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->text, "from small");
  ASSERT_EQ(r->fallbacks.size(), 1u);
  EXPECT_EQ(r->fallbacks[0], "big: bad request");
}

TEST(LlmChainTest, AUserNearTheBudgetIsSentToTheCheapTier) {
  Scheduler sched;
  auto primary = std::make_shared<ScriptedProvider>("big");
  auto cheap = std::make_shared<ScriptedProvider>("small");
  primary->max_cost = primary->cost = 0.03;
  cheap->max_cost = cheap->cost = 0.001;
  BudgetLedger budget(0.1, [](const std::string&) -> StatusOr<double> { return 0.0; });
  ChainOptions o;
  o.downgrade_at = 0.5;
  ProviderChain chain({{primary, 500, 0, Tier::kPrimary}, {cheap, 500, 0, Tier::kCheap}},
                      std::make_shared<BuiltinProvider>("rules"), o, &sched, &budget);
  AiRequest req = Req();
  req.priority = Priority::kHigh;  // the budget wins over the priority
  std::vector<std::string> texts;
  for (int i = 0; i < 4; ++i) {
    auto r = Ask(chain, req);
    ASSERT_TRUE(r.ok());
    texts.push_back(r->text);
    if (i == 3) {
      ASSERT_EQ(r->fallbacks.size(), 1u);
      EXPECT_EQ(r->fallbacks[0], "big: near the budget");
    }
  }
  // 0, 0.03 spent: primary; 0.06 >= 0.05: cheap from then on.
  EXPECT_EQ(texts, (std::vector<std::string>{"from big", "from big", "from small", "from small"}));
  EXPECT_NEAR(budget.Get("u").first, 0.062, 1e-9);
  // Another user is not downgraded.
  req.user_id = "v";
  auto r = Ask(chain, req);
  EXPECT_EQ(r->text, "from big");
}

TEST(BudgetLedgerTest, NearCountsReservationsAndReadsTheSharedTotal) {
  BudgetLedger off(0, nullptr);
  EXPECT_FALSE(off.Near("u", 0.5));
  BudgetLedger local(1.0, [](const std::string&) -> StatusOr<double> { return 0.4; });
  EXPECT_FALSE(local.Near("u", 0.5));
  auto h = local.Reserve("u", 0.2);
  ASSERT_TRUE(h);
  EXPECT_TRUE(local.Near("u", 0.5));  // 0.4 spent + 0.2 held
  local.Settle(*h, 0.05);
  EXPECT_FALSE(local.Near("u", 0.5));  // 0.45
  SharedLedger shared;
  shared.reserve = [](const std::string&, const std::string&, double, double) -> StatusOr<bool> {
    return true;
  };
  shared.settle = [](const std::string&, double) { return absl::OkStatus(); };
  double total = 0.2;
  shared.spent = [&total](const std::string&) -> StatusOr<double> { return total; };
  BudgetLedger ledger(1.0, nullptr, shared);
  EXPECT_FALSE(ledger.Near("u", 0.8));
  total = 0.85;
  EXPECT_TRUE(ledger.Near("u", 0.8));
  shared.spent = [](const std::string&) -> StatusOr<double> { return absl::UnavailableError("x"); };
  BudgetLedger down(1.0, nullptr, shared);
  EXPECT_TRUE(down.Near("u", 0.8));  // unreadable: assume the worst
}

TEST(LlmChainTest, ABudgetRefusalNeitherResetsNorClosesTheBreaker) {
  Scheduler sched;
  auto a = std::make_shared<ScriptedProvider>("a");
  a->fallback_step.status = absl::InvalidArgumentError("down");
  a->max_cost = 0.01;
  BudgetLedger budget(1.0, [](const std::string& u) -> StatusOr<double> {
    return u == "broke" ? 1.0 : 0.0;  // "broke" has spent the whole budget
  });
  ChainOptions o;
  o.breaker_failures = 3;
  o.breaker_cooldown_ms = 60000;
  ProviderChain chain({{a, 500, 0}}, std::make_shared<BuiltinProvider>("rules"), o, &sched,
                      &budget);
  AiRequest req = Req(), broke = Req();
  broke.user_id = "broke";
  for (const AiRequest* r : {&req, &req, &broke, &req}) {
    // broke's step is refused by the budget: no call, no verdict on the provider.
    EXPECT_TRUE(Ask(chain, *r).ok());
  }
  EXPECT_EQ(a->calls.load(), 3);
  EXPECT_TRUE(chain.BreakerOpen(0));  // three failures in a row, not two
}

TEST(LlmChainTest, APreferredProviderIsTriedFirstOnceEvenWithARepeatedName) {
  Scheduler sched;
  auto first = std::make_shared<ScriptedProvider>("openai");
  auto second = std::make_shared<ScriptedProvider>("openai");
  auto last = std::make_shared<ScriptedProvider>("bedrock");
  first->fallback_step.status = absl::InvalidArgumentError("x");
  second->fallback_step.status = absl::InvalidArgumentError("y");
  ProviderChain chain({{first, 500, 0}, {second, 500, 0}, {last, 500, 0}},
                      std::make_shared<BuiltinProvider>("rules"), {}, &sched, nullptr);
  AiRequest req = Req();
  req.prefer_provider = "openai";
  auto r = Ask(chain, req);
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->text, "from bedrock");  // every entry tried once, the last one too
  EXPECT_EQ(first->calls.load(), 1);
  EXPECT_EQ(second->calls.load(), 1);
}

int64_t ledger_ms = 0;
int64_t LedgerNow() { return ledger_ms; }

TEST(BudgetLedgerTest, ASlowStoreReadHoldsUpOnlyItsOwnUser) {
  std::promise<void> release;
  std::shared_future<void> released = release.get_future().share();
  std::promise<void> reading;
  BudgetLedger budget(1.0, [&](const std::string& user) -> StatusOr<double> {
    if (user == "slow") {
      reading.set_value();
      released.wait();
    }
    return 0.25;
  });
  ASSERT_TRUE(budget.Reserve("fast", 0.1).has_value());
  auto slow = std::async(std::launch::async, [&] { return budget.Reserve("slow", 0.1); });
  reading.get_future().wait();
  // While "slow"'s total is being read, other users are served.
  auto fast = std::async(std::launch::async, [&] { return budget.Reserve("fast", 0.1); });
  ASSERT_EQ(fast.wait_for(std::chrono::seconds(2)), std::future_status::ready);
  EXPECT_TRUE(fast.get().has_value());
  release.set_value();
  EXPECT_TRUE(slow.get().has_value());
  EXPECT_EQ(budget.Get("slow"), std::make_pair(0.25, 0.1));
}

TEST(BudgetLedgerTest, IdleAccountsAreDroppedPastTheLimitAndBusyOnesKept) {
  ledger_ms = 1000;
  int loads = 0;
  BudgetLedger budget(1.0,
                      [&](const std::string&) -> StatusOr<double> {
                        ++loads;
                        return 0.5;
                      },
                      {}, {.max_accounts = 100, .idle_ms = 60000, .now_ms = &LedgerNow});
  auto busy = budget.Reserve("busy", 0.2);  // held across the sweep
  ASSERT_TRUE(busy.has_value());
  for (int i = 0; i < 99; ++i) budget.Settle(*budget.Reserve("u" + std::to_string(i), 0.1), 0.05);
  EXPECT_EQ(budget.accounts(), 100u);
  ledger_ms += 61000;                // all idle for a minute
  budget.Get("new");                 // the 101st: a sweep
  EXPECT_EQ(budget.accounts(), 2u);  // "busy" (it holds a reservation) and "new"
  budget.Settle(*busy, 0.2);
  EXPECT_EQ(budget.Get("busy"), std::make_pair(0.7, 0.0));
  const int before = loads;
  budget.Get("u1");  // dropped: loaded again from the durable total
  EXPECT_EQ(loads, before + 1);
}

TEST(LlmChainTest, ASharedLedgerDecidesAndAnUnreachableOneRefuses) {
  // The store's ledger stands in: it keeps its own accounts, and this
  // process keeps none.
  std::mutex mu;
  std::map<std::string, double> holds;
  double spent = 0;
  bool reachable = true;
  SharedLedger shared;
  shared.reserve = [&](const std::string& user, const std::string& hold, double amount,
                       double limit) -> StatusOr<bool> {
    std::lock_guard<std::mutex> l(mu);
    if (!reachable) return absl::UnavailableError("down");
    EXPECT_EQ(user, "u");
    double held = 0;
    for (const auto& [id, a] : holds) held += a;
    if (spent + held + amount > limit) return false;
    EXPECT_TRUE(holds.emplace(hold, amount).second);  // every hold has its own id
    return true;
  };
  shared.settle = [&](const std::string& hold, double actual) -> Status {
    std::lock_guard<std::mutex> l(mu);
    EXPECT_EQ(holds.erase(hold), 1u);
    spent += actual;
    return absl::OkStatus();
  };
  Scheduler sched;
  auto a = std::make_shared<ScriptedProvider>("a");
  a->max_cost = 0.01;
  a->cost = 0.007;
  bool loaded = false;
  BudgetLedger budget(
      0.1,
      [&](const std::string&) -> StatusOr<double> {
        loaded = true;
        return 0.0;
      },
      shared);
  ProviderChain chain({{a, 1000, 0}}, std::make_shared<BuiltinProvider>("rules"), {}, &sched,
                      &budget);
  int paid = 0;
  for (int i = 0; i < 20; ++i) {
    auto r = Ask(chain, Req());
    ASSERT_TRUE(r.ok());
    if (r->source == "llm") ++paid;
  }
  EXPECT_EQ(paid, 13);  // 13 × 0.007 = 0.091: the 14th's 0.01 hold would pass 0.1
  EXPECT_NEAR(spent, 0.091, 1e-12);
  EXPECT_TRUE(holds.empty());
  EXPECT_FALSE(loaded);  // the store's total, not this process's
  spent = 0;
  reachable = false;
  auto r = Ask(chain, Req());
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->source, "builtin");  // a ledger that cannot be asked: no paid call
  ASSERT_FALSE(r->fallbacks.empty());
  EXPECT_EQ(r->fallbacks[0], "a: budget exhausted");
}

}  // namespace
}  // namespace persona::ai::llm
