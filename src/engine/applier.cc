#include "engine/applier.h"

#include <sys/resource.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>

#include "core/clock.h"
#include "core/logging.h"

namespace persona::engine {
namespace {

// A failure that will not go away by retrying: record it and move on.
bool Permanent(const Status& st) {
  switch (st.code()) {
    case absl::StatusCode::kUnavailable:
    case absl::StatusCode::kResourceExhausted:
    case absl::StatusCode::kAborted:
    case absl::StatusCode::kDeadlineExceeded:
    case absl::StatusCode::kCancelled:
      return false;
    default:
      return true;
  }
}

}  // namespace

Applier::Applier(ApplierOptions options, Engine* engine, store::EventStore* store)
    : options_(options), engine_(engine), store_(store) {
  if (options_.batch_size == 0) options_.batch_size = 1;
  auto& reg = metrics::Default();
  depth_gauge_ =
      reg.GetGauge("persona_intake_depth", "Async requests accepted and not yet applied");
  batch_size_ = reg.GetHistogram("persona_intake_batch_size", "Async requests applied per batch",
                                 "", metrics::SizeBuckets());
  lag_seconds_ = reg.GetHistogram("persona_intake_apply_lag_seconds",
                                  "Time from accepting an async request to applying it");
  applied_ = reg.GetCounter("persona_intake_applied_total", "Async requests applied");
  failed_ = reg.GetCounter("persona_intake_failed_total", "Async requests that failed for good");
  retried_ = reg.GetCounter("persona_intake_retries_total",
                            "Async requests put back after a passing failure");
  claimed_ = reg.GetCounter("persona_intake_claimed_total",
                            "Async requests taken over from a process that stopped or died");
  taken_ = reg.GetCounter("persona_intake_taken_total",
                          "Async requests another process took over before this one applied them");
}

Applier::~Applier() { Stop(); }

Status Applier::Recover() {
  auto last = store_->LastIntakeSeq();
  if (!last.ok()) return last.status();
  next_seq_ = *last + 1;
  size_t n = 0;
  // A store one process owns hands over everything its previous run left
  // (only this Recover reads it); a shared store's claims stay within
  // max_pending, and the loop claims the rest as the queue drains.
  for (;;) {
    const size_t room = store_->Shared() ? Room() : size_t{4096};
    if (room == 0) break;
    auto claimed = Claim(std::min<size_t>(room, 4096));
    if (!claimed.ok()) return claimed.status();
    if (*claimed == 0) break;
    n += *claimed;
  }
  if (n > 0) LogInfo("resuming async requests left in the intake", {{"pending", n}});
  return absl::OkStatus();
}

size_t Applier::Room() const {
  const size_t depth = depth_.load();
  return depth >= options_.max_pending ? 0 : options_.max_pending - depth;
}

StatusOr<size_t> Applier::Claim(size_t limit) {
  auto page = store_->ClaimIntake(limit);
  if (!page.ok()) return page.status();
  std::vector<Item> items;
  items.reserve(page->size());
  for (auto& e : *page) {
    auto v = ParseJson(e.payload);
    if (!v.ok() || !v->is_object())
      return absl::DataLossError("corrupt intake entry " + std::to_string(e.seq));
    items.push_back(Item{e.seq, std::move(v->get_object())});
  }
  if (items.empty()) return size_t{0};
  const size_t n = items.size();
  {
    std::lock_guard<std::mutex> l(mu_);
    for (auto& it : items) {
      AddPending(it.payload);
      queue_.push_back(std::move(it));
    }
  }
  claimed_->Inc(n);
  depth_gauge_->Set(static_cast<int64_t>(depth_.fetch_add(n) + n));
  cv_.notify_one();
  return n;
}

void Applier::Start() {
  if (!worker_.joinable()) worker_ = std::thread([this] { WorkerLoop(); });
  if (!thread_.joinable()) thread_ = std::thread([this] { Loop(); });
}

void Applier::Stop() {
  {
    std::lock_guard<std::mutex> l(mu_);
    stopping_ = true;
  }
  cv_.notify_all();
  if (thread_.joinable()) thread_.join();  // after the batch in flight
  {
    std::lock_guard<std::mutex> l(mu_);
    worker_stopping_ = true;
  }
  tasks_cv_.notify_all();
  if (worker_.joinable()) worker_.join();
}

Executor Applier::Background() {
  return [this](std::function<void()> fn) {
    {
      std::lock_guard<std::mutex> l(mu_);
      tasks_.push_back(std::move(fn));
    }
    tasks_cv_.notify_one();
  };
}

void Applier::WorkerLoop() {
  // Lower than the I/O threads (nice 0): Linux applies nice per thread.
  setpriority(PRIO_PROCESS, static_cast<id_t>(gettid()), 10);
  for (;;) {
    std::function<void()> fn;
    {
      std::unique_lock<std::mutex> l(mu_);
      tasks_cv_.wait(l, [&] { return worker_stopping_ || !tasks_.empty(); });
      if (tasks_.empty()) return;  // stopping and drained
      fn = std::move(tasks_.front());
      tasks_.pop_front();
    }
    fn();
  }
}

void Applier::AddPending(const json::object& p) {
  PendingInfo info;
  info.session_id = std::string(GetString(p, "session_id").value_or(""));
  info.accepted_at_ms = GetInt(p, "accepted_at_ms").value_or(0);
  pending_.emplace(std::string(GetString(p, "request_id").value_or("")), std::move(info));
}

void Applier::Push(uint64_t seq, json::object payload) {
  size_t n;
  {
    std::lock_guard<std::mutex> l(mu_);
    AddPending(payload);
    queue_.push_back(Item{seq, std::move(payload)});
    n = queue_.size();
  }
  depth_gauge_->Set(static_cast<int64_t>(depth_.fetch_add(1) + 1));
  // The loop waits for the queue to become non-empty, then for a full batch
  // (or the delay): only those two moments need a wake-up.
  if (n == 1 || n == options_.batch_size) cv_.notify_one();
}

json::object Applier::PendingRecord(const std::string& request_id, const std::string& session_id,
                                    int64_t accepted_at_ms) {
  json::object o;
  o["request_id"] = request_id;
  o["session_id"] = session_id;
  o["status"] = "pending";
  o["accepted_at"] = FormatRfc3339Millis(accepted_at_ms);
  return o;
}

std::optional<json::object> Applier::Pending(const std::string& request_id) {
  std::lock_guard<std::mutex> l(mu_);
  auto it = pending_.find(request_id);
  if (it == pending_.end()) return std::nullopt;
  return PendingRecord(request_id, it->second.session_id, it->second.accepted_at_ms);
}

void Applier::Apply(Item item, std::function<void(bool)> done) {
  const json::object& p = item.payload;
  Applying ap;
  ap.request_id = std::string(GetString(p, "request_id").value_or(""));
  ap.intake_seq = item.seq;
  ap.accepted_at_ms = GetInt(p, "accepted_at_ms").value_or(0);
  const std::string sid(GetString(p, "session_id").value_or(""));
  const std::string op(GetString(p, "op").value_or(""));
  auto finish = [this, ap, sid, done = std::move(done)](StatusOr<Reply> r) mutable {
    if (r.ok() && !r->replayed) {  // applied: the commit recorded it
      applied_->Inc();
      lag_seconds_->Observe(static_cast<double>(NowMillis() - ap.accepted_at_ms) / 1000.0);
      return done(true);
    }
    if (!r.ok() && store::IsIntakeTaken(r.status())) {
      taken_->Inc();  // the process that claimed it applies it
      return done(true);
    }
    if (!r.ok() && !Permanent(r.status())) {
      retried_->Inc();
      return done(false);
    }
    // Answered from an idempotency record (a request with the same key was
    // applied first), or failed for good: record the outcome.
    if (!r.ok()) failed_->Inc();
    engine_->FinishRequest(ap, sid, std::move(r),
                           [done = std::move(done)](Status st) mutable { done(st.ok()); });
  };
  if (op == "message") {
    MessageRequest req;
    // The caller was authorized when the request was accepted into the intake.
    req.caller = auth::Caller::System();
    req.session_id = sid;
    req.text = std::string(GetString(p, "text").value_or(""));
    req.idempotency_key = std::string(GetString(p, "idempotency_key").value_or(""));
    req.origin = std::string(GetString(p, "origin").value_or("user"));
    if (auto pr = GetString(p, "priority")) ai::ParsePriority(*pr, &req.priority);
    req.applying = ap;
    engine_->PostMessage(std::move(req), std::move(finish));
  } else if (op == "patch") {
    PatchRequest req;
    req.caller = auth::Caller::System();
    req.session_id = sid;
    if (const json::value* f = Find(p, "fields"); f && f->is_object()) req.fields = f->get_object();
    if (auto m = GetInt(p, "if_match")) req.if_match = static_cast<uint64_t>(*m);
    if (auto h = GetString(p, "base_hlc")) {
      Hlc hlc;
      if (ParseHlc(*h, &hlc)) req.base_hlc = hlc;
    }
    req.source = std::string(GetString(p, "source").value_or("user"));
    req.idempotency_key = std::string(GetString(p, "idempotency_key").value_or(""));
    req.applying = ap;
    engine_->PatchProfile(std::move(req), std::move(finish));
  } else {
    finish(absl::InvalidArgumentError("unknown intake operation '" + op + "'"));
  }
}

void Applier::Loop() {
  // On a shared store, entries of processes that stopped or died are
  // claimed every claim_every_ms.
  const bool claims = store_->Shared();
  auto next_claim = std::chrono::steady_clock::now();
  for (;;) {
    if (claims && std::chrono::steady_clock::now() >= next_claim && Room() > 0) {
      if (auto n = Claim(std::min<size_t>(Room(), 4096)); !n.ok())
        LogWarn("claiming intake entries failed", {{"error", std::string(n.status().message())}});
      else if (*n > 0)
        LogInfo("claimed async requests of a process that stopped", {{"requests", *n}});
      next_claim =
          std::chrono::steady_clock::now() + std::chrono::milliseconds(options_.claim_every_ms);
    }
    std::vector<Item> batch;
    {
      std::unique_lock<std::mutex> l(mu_);
      if (claims) {
        cv_.wait_until(l, next_claim, [&] { return stopping_ || !queue_.empty(); });
      } else {
        cv_.wait(l, [&] { return stopping_ || !queue_.empty(); });
      }
      if (stopping_) return;
      if (queue_.empty()) continue;  // time to claim
      // Give a batch up to max_delay_ms to fill.
      if (queue_.size() < options_.batch_size && options_.max_delay_ms > 0) {
        cv_.wait_for(l, std::chrono::milliseconds(options_.max_delay_ms),
                     [&] { return stopping_ || queue_.size() >= options_.batch_size; });
        if (stopping_) return;
      }
      const size_t n = std::min(queue_.size(), options_.batch_size);
      batch.reserve(n);
      for (size_t i = 0; i < n; ++i) {
        batch.push_back(std::move(queue_.front()));
        queue_.pop_front();
      }
    }
    // Submit the whole batch (each session's requests stay in order in its
    // actor), then wait for all of it.
    struct Wait {
      std::mutex mu;
      std::condition_variable cv;
      size_t left = 0;
      std::vector<char> finished;
    };
    auto w = std::make_shared<Wait>();
    w->left = batch.size();
    w->finished.assign(batch.size(), 0);
    auto run = Background();
    for (size_t i = 0; i < batch.size(); ++i) {
      run([this, w, i, item = batch[i]]() mutable {
        Apply(std::move(item), [w, i](bool finished) {
          std::lock_guard<std::mutex> l(w->mu);
          w->finished[i] = finished ? 1 : 0;
          if (--w->left == 0) w->cv.notify_all();
        });
      });
    }
    {
      std::unique_lock<std::mutex> l(w->mu);
      w->cv.wait(l, [&] { return w->left == 0; });
    }
    batch_size_->Observe(static_cast<double>(batch.size()));
    std::vector<Item> retry;
    size_t done = 0;
    {
      std::lock_guard<std::mutex> l(mu_);
      for (size_t i = 0; i < batch.size(); ++i) {
        if (w->finished[i]) {
          ++done;
          pending_.erase(std::string(GetString(batch[i].payload, "request_id").value_or("")));
        } else {
          retry.push_back(std::move(batch[i]));
        }
      }
    }
    depth_gauge_->Set(static_cast<int64_t>(depth_.fetch_sub(done) - done));
    if (!retry.empty()) {
      std::unique_lock<std::mutex> l(mu_);
      for (auto it = retry.rbegin(); it != retry.rend(); ++it) queue_.push_front(std::move(*it));
      cv_.wait_for(l, std::chrono::milliseconds(options_.retry_ms), [&] { return stopping_; });
      if (stopping_) return;
    }
  }
}

}  // namespace persona::engine
