#include "ai/gate/intent_gate.h"

#include <fasttext/fasttext.h>

#include <chrono>
#include <cmath>
#include <ctime>
#include <fstream>
#include <sstream>
#include <vector>

#include "core/json.h"

namespace persona::ai {

std::string IntentGate::Normalise(std::string_view text) {
  std::string spaced;
  spaced.reserve(text.size() + 8);
  for (char ch : text) {
    if (ch >= 'A' && ch <= 'Z') {
      spaced += static_cast<char>(ch - 'A' + 'a');
    } else if (std::string_view(".,!?;:()\"").find(ch) != std::string_view::npos) {
      spaced += ' ';
      spaced += ch;
      spaced += ' ';
    } else if (ch == '\t' || ch == '\n' || ch == '\r') {
      spaced += ' ';
    } else {
      spaced += ch;
    }
  }
  std::string out;
  out.reserve(spaced.size());
  for (char ch : spaced) {
    if (ch == ' ' && (out.empty() || out.back() == ' ')) continue;
    out += ch;
  }
  while (!out.empty() && out.back() == ' ') out.pop_back();
  return out;
}

StatusOr<std::unique_ptr<IntentGate>> IntentGate::Load(const std::string& model_path,
                                                       double threshold) {
  std::unique_ptr<IntentGate> gate(new IntentGate);
  gate->model_ = std::make_unique<fasttext::FastText>();
  try {
    gate->model_->loadModel(model_path);  // fastText reports errors by throwing
  } catch (const std::exception& e) {
    return absl::InvalidArgumentError("ai.gate.model '" + model_path + "': " + e.what());
  }
  gate->counts_ = gate->model_->getDictionary()->getCounts(fasttext::entry_type::word);
  if (threshold > 0) {
    gate->threshold_ = threshold;
    return gate;
  }
  std::string meta_path = model_path;
  if (meta_path.ends_with(".bin")) meta_path.resize(meta_path.size() - 4);
  meta_path += ".json";
  std::ifstream in(meta_path);
  std::stringstream buf;
  buf << in.rdbuf();
  auto meta = ParseJson(buf.str());
  const json::value* t =
      meta.ok() && meta->is_object() ? meta->get_object().if_contains("threshold") : nullptr;
  if (t == nullptr || !t->is_double())
    return absl::InvalidArgumentError("ai.gate.model: no calibrated threshold in '" + meta_path +
                                      "' (set ai.gate.threshold, or build it with "
                                      "scripts/train_gate.py)");
  gate->threshold_ = t->as_double();
  return gate;
}

IntentGate::~IntentGate() = default;

Intent IntentGate::Top(std::string_view text) const {
  std::istringstream in(Normalise(text.substr(0, 2000)) + "\n");
  std::vector<std::pair<fasttext::real, std::string>> predictions;
  model_->predictLine(in, predictions, 1, 0.0);
  Intent out{"oos", 0};
  if (predictions.empty()) return out;
  out.name = predictions[0].second;
  if (out.name.starts_with("__label__")) out.name.erase(0, 9);
  out.confidence = static_cast<double>(predictions[0].first);
  if (out.confidence > 1) out.confidence = 1;  // fastText adds 1e-5 before the log
  return out;
}

std::vector<float> IntentGate::Embed(std::string_view text) const {
  std::istringstream in(Normalise(text.substr(0, 2000)) + "\n");
  fasttext::Vector v(model_->getDimension());
  model_->getSentenceVector(in, v);
  std::vector<float> out(v.data(), v.data() + v.size());
  double norm = 0;
  for (float x : out) norm += double{x} * x;
  if (norm > 0) {
    const float inv = static_cast<float>(1 / std::sqrt(norm));
    for (float& x : out) x *= inv;
  }
  return out;
}

int IntentGate::dimension() const { return model_->getDimension(); }

int64_t IntentGate::Count(const std::string& word) const {
  const auto& dict = *model_->getDictionary();
  const int32_t id = dict.getId(word);
  if (id < 0 || id >= dict.nwords()) return 0;
  return counts_[static_cast<size_t>(id)];
}

Intent IntentGate::Classify(std::string_view text) const { return Classify(Top(text)); }

Intent IntentGate::Classify(Intent top) const {
  if (top.confidence < threshold_) top.name = "oos";
  return top;
}

bool AnsweredLocally(std::string_view intent) {
  for (std::string_view i :
       {"greeting", "goodbye", "thank_you", "are_you_a_bot", "what_is_your_name", "who_made_you",
        "date", "time", "persona.what_do_you_know", "persona.forget"})
    if (intent == i) return true;
  return false;
}

namespace {

std::string Today(bool korean) {
  const std::time_t now = std::time(nullptr);
  std::tm tm;
  gmtime_r(&now, &tm);
  char buf[64];
  if (korean) {
    std::snprintf(buf, sizeof(buf), "오늘은 %d년 %d월 %d일이에요 (UTC).", tm.tm_year + 1900,
                  tm.tm_mon + 1, tm.tm_mday);
  } else {
    std::strftime(buf, sizeof(buf), "Today is %A, %B %e, %Y (UTC).", &tm);
  }
  return buf;
}

std::string Now(bool korean) {
  const std::time_t now = std::time(nullptr);
  std::tm tm;
  gmtime_r(&now, &tm);
  char buf[64];
  if (korean) {
    std::snprintf(buf, sizeof(buf), "지금은 UTC 기준 %d시 %02d분이에요.", tm.tm_hour, tm.tm_min);
  } else {
    std::strftime(buf, sizeof(buf), "It's %H:%M UTC.", &tm);
  }
  return buf;
}

std::string WhatIKnow(const AiRequest& req, bool korean) {
  std::string list;
  for (const auto& f : req.schema->fields()) {
    auto it = req.profile.find(f.name);
    if (it == req.profile.end() || it->value().is_null()) continue;
    std::string v = it->value().is_string() ? std::string(it->value().get_string())
                                            : json::serialize(it->value());
    list += (list.empty() ? "" : korean ? ", " : "; ") + f.name + ": " + v;
  }
  if (list.empty())
    return korean ? "아직 당신에 대해 아는 것이 없어요." : "I don't know anything about you yet.";
  return (korean ? "제가 아는 내용이에요: " : "Here is what I know about you: ") + list + ".";
}

// The text of a local answer; "" keeps the built-in reply (which also
// carries out "forget my phone" and answers greetings with the next question).
std::string LocalText(const std::string& intent, const AiRequest& req, bool korean) {
  if (intent == "goodbye")
    return korean ? "안녕히 가세요! 또 이야기해요." : "Goodbye! Talk to you soon.";
  if (intent == "thank_you") return korean ? "천만에요!" : "You're welcome!";
  if (intent == "are_you_a_bot")
    return korean ? "네, 저는 AI 어시스턴트 persona예요. 알려 주신 것을 기억해서 도와드려요."
                  : "Yes, I'm persona, an AI assistant. I remember what you tell me so I can "
                    "help you better.";
  if (intent == "what_is_your_name") return korean ? "저는 persona예요." : "I'm persona.";
  if (intent == "who_made_you")
    return korean ? "저는 persona 프로젝트가 만든 자체 호스팅 어시스턴트예요."
                  : "I was made by the persona project: a self-hosted assistant.";
  if (intent == "date") return Today(korean);
  if (intent == "time") return Now(korean);
  if (intent == "persona.what_do_you_know") return WhatIKnow(req, korean);
  return "";
}

// A question mark (ASCII or full-width) or a Korean question ending.
bool AsksSomething(std::string_view text) {
  if (text.find('?') != std::string_view::npos) return true;
  if (text.find("\xEF\xBC\x9F") != std::string_view::npos) return true;  // ？
  for (std::string_view q : {"까", "나요", "니"}) {
    std::string_view t = text;
    while (!t.empty() && (t.back() == ' ' || t.back() == '.' || t.back() == '!'))
      t.remove_suffix(1);
    if (t.size() >= q.size() && t.substr(t.size() - q.size()) == q) return true;
  }
  return false;
}

}  // namespace

GateProvider::GateProvider(const IntentGate* gate, Provider* next, BuiltinProvider* local)
    : gate_(gate), next_(next), local_(local) {
  auto& reg = metrics::Default();
  answered_ = reg.GetCounter("persona_gate_total", "Messages through the intent gate",
                             "outcome=\"answered\"");
  passed_ = reg.GetCounter("persona_gate_total", "Messages through the intent gate",
                           "outcome=\"passed\"");
  seconds_ = reg.GetHistogram("persona_gate_seconds", "Intent classification time");
}

std::shared_ptr<Call> GateProvider::Respond(AiRequest req, Callback done) {
  if (!req.use_gate) return next_->Respond(std::move(req), std::move(done));  // a flag
  const auto t0 = std::chrono::steady_clock::now();
  // The semantic cache above may have classified the message already.
  const Intent top = req.top_intent.empty() ? gate_->Top(req.text)
                                            : Intent{req.top_intent, req.top_intent_confidence};
  const Intent intent = gate_->Classify(top);
  seconds_->Observe(std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
  // Only normal priority is answered here (SPEC §12: low tries the cache and
  // cheap models, high the primary); every priority gets the intent.
  if (req.priority == Priority::kNormal && AnsweredLocally(intent.name)) {
    answered_->Inc();
    auto r = local_->Reply(req);
    if (r.ok()) {
      const std::string text = LocalText(intent.name, req, r->language == "ko");
      if (!text.empty()) {
        r->text = text;
        r->asks.clear();
      }
      r->source = "gate";
      r->intent = intent.name;
      r->intent_confidence = intent.confidence;
    }
    done(std::move(r));
    return nullptr;
  }
  // A statement of facts about oneself ("I'm Maya and I'm 34", "actually I
  // moved to Busan") is answered by the built-in engine when it is more like
  // persona's fact intents than any other (the top label, at any
  // confidence: the classifier has seen few of the ways people introduce
  // themselves), the rules learned at least one field from it, and it asks
  // nothing. The reply is the engine's acknowledgement and its next
  // question. A message that also asks something ("I'm Maya, what should I
  // cook?"), or whose facts the rules cannot read, still goes to a model.
  if (req.priority == Priority::kNormal &&
      (top.name == "persona.tell_fact" || top.name == "persona.correct") &&
      !AsksSomething(req.text)) {
    auto r = local_->Reply(req);
    if (r.ok() && !r->changes.empty()) {
      answered_->Inc();
      r->source = "gate";
      r->intent = intent.name;
      r->intent_confidence = intent.confidence;
      done(std::move(r));
      return nullptr;
    }
  }
  passed_->Inc();
  return next_->Respond(std::move(req), [intent, done = std::move(done)](StatusOr<AiReply> r) {
    if (r.ok()) {
      r->intent = intent.name;
      r->intent_confidence = intent.confidence;
    }
    done(std::move(r));
  });
}

}  // namespace persona::ai
