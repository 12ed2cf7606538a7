// IntentGate: persona's local intent classifier (SPEC §12, issue 12).
//
// A fastText model trained at build time by scripts/train_gate.py on
// CLINC150's train split plus persona's own intents (English and Korean),
// with its threshold calibrated on the val split (intent.json beside the
// model). Classify() names the most likely intent and its probability
// (one-vs-all: each label's own sigmoid, so a question the model has not
// seen can score low on all of them); below the threshold the intent is
// reported as "oos". Thread-safe; about 10 µs per message.
//
// GateProvider puts the gate in front of the provider chain: a message whose
// intent persona can answer by itself (greetings, thanks, goodbye, "what do
// you know about me", "forget my phone", the bot's name, the date and time,
// …) is answered locally with source "gate"; anything else goes on to the
// chain. Every reply carries the intent either way.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "ai/builtin/builtin_provider.h"
#include "ai/provider.h"
#include "core/status.h"
#include "metrics/metrics.h"

namespace fasttext {
class FastText;
}

namespace persona::ai {

struct Intent {
  std::string name;  // a CLINC150 label, persona.*, or "oos"
  double confidence = 0;
};

class IntentGate {
 public:
  // Loads `model_path` (a fastText .bin) and, if `threshold` is 0, the
  // calibrated threshold from the .json beside it. InvalidArgument naming
  // the file if either cannot be read.
  static StatusOr<std::unique_ptr<IntentGate>> Load(const std::string& model_path,
                                                    double threshold);
  ~IntentGate();

  // The most likely intent; "oos" (with the top label's confidence) when
  // that is below the threshold.
  Intent Classify(std::string_view text) const;
  // The same for a top label already computed (Top()).
  Intent Classify(Intent top) const;
  // The most likely label and its confidence, whatever the threshold.
  Intent Top(std::string_view text) const;
  double threshold() const { return threshold_; }

  // The message's sentence vector (fastText's: the mean of its words' and
  // word bigrams' input vectors), of unit length; zero for a message with no
  // known word. The semantic response cache compares these.
  std::vector<float> Embed(std::string_view text) const;
  int dimension() const;
  // How often `word` (normalised) occurred in the training text; 0 if never.
  int64_t Count(const std::string& word) const;

  // Lower-case, sentence punctuation split off, whitespace collapsed: as
  // scripts/train_gate.py prepared the training text.
  static std::string Normalise(std::string_view text);

 private:
  IntentGate() = default;
  std::unique_ptr<fasttext::FastText> model_;
  std::vector<int64_t> counts_;  // of each word in the model's dictionary
  double threshold_ = 0.9;
};

// True for the intents GateProvider answers without a model.
bool AnsweredLocally(std::string_view intent);

class GateProvider final : public Provider {
 public:
  // `gate`, `next` and `local` must outlive this.
  GateProvider(const IntentGate* gate, Provider* next, BuiltinProvider* local);

  const std::string& name() const override { return next_->name(); }
  std::shared_ptr<Call> Respond(AiRequest req, Callback done) override;

 private:
  const IntentGate* gate_;
  Provider* next_;
  BuiltinProvider* local_;
  metrics::Counter* answered_;
  metrics::Counter* passed_;
  metrics::Histogram* seconds_;
};

}  // namespace persona::ai
