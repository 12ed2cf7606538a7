// The broker's persistent-session mirror: Describe, cursors, and Restore's
// merge of replayed and live messages.
#include "realtime/broker.h"

#include <gtest/gtest.h>

#include <set>

#include "core/json.h"

namespace persona::realtime {
namespace {

class FakeLink final : public Link {
 public:
  bool Send(std::string head, std::shared_ptr<const std::string> payload) override {
    if (payload) payloads.push_back(*payload);
    return true;
  }
  size_t queued_bytes() const override { return 0; }
  void Kick(const char*) override { kicked = true; }
  std::vector<std::string> payloads;
  bool kicked = false;
};

class FakeSink final : public MirrorSink {
 public:
  void Changed(const std::string& key) override { keys.insert(key); }
  std::set<std::string> keys;
};

Message Event(const std::string& topic, uint64_t seq) {
  Message m;
  m.topic = topic;
  m.payload = std::make_shared<const std::string>(std::to_string(seq));
  m.qos = 1;
  m.seq = seq;
  return m;
}

TEST(BrokerMirrorTest, DescribesPersistentSessionsWithTheirAcknowledgedCursors) {
  Broker broker({});
  FakeSink sink;
  broker.SetMirror(&sink);
  auto link = std::make_shared<FakeLink>();
  auto s = broker.Connect("dev", /*clean_session=*/false, link)->session;
  broker.InitCursor(s, "session/a/events", 4);
  EXPECT_EQ(broker.Subscribe(s, "session/a/events", 1), 1);
  EXPECT_EQ(sink.keys, std::set<std::string>{"dev"});
  broker.Publish(Event("session/a/events", 5));
  broker.Publish(Event("session/a/events", 6));
  EXPECT_EQ(link->payloads, (std::vector<std::string>{"5", "6"}));
  broker.Acked(s, 1);  // seq 5
  auto d = ParseJson(*broker.Describe("dev"));
  ASSERT_TRUE(d.ok());
  EXPECT_EQ(json::serialize(*d),
            R"({"subs":[["session/a/events",1]],"cursors":{"session/a/events":5}})");
  // A clean session is not mirrored.
  auto c = broker.Connect("clean", true, std::make_shared<FakeLink>())->session;
  broker.Subscribe(c, "session/a/events", 1);
  EXPECT_FALSE(broker.Describe("clean").has_value());
  EXPECT_EQ(sink.keys.count("clean"), 0u);
  // Taken over by a clean connection: the record is to be deleted.
  sink.keys.clear();
  broker.Connect("dev", true, std::make_shared<FakeLink>());
  EXPECT_EQ(sink.keys, std::set<std::string>{"dev"});
  EXPECT_FALSE(broker.Describe("dev").has_value());
  broker.SetMirror(nullptr);
}

TEST(BrokerMirrorTest, ARestoreReplaysAheadOfLiveMessagesAndDropsWhatItCovered) {
  Broker broker({});
  auto link = std::make_shared<FakeLink>();
  auto s = broker.Connect("dev", false, link)->session;
  const std::string record =
      R"({"subs":[["session/a/events",1],["session/b/events",1],["plain/x",0]],)"
      R"("cursors":{"session/a/events":5,"session/b/events":2}})";
  int replays = 0;
  ASSERT_TRUE(broker
                  .Restore(
                      s, record,
                      [](const std::string& filter) { return filter != "session/b/events"; },
                      [&](const std::string& topic, uint64_t after) {
                        ++replays;
                        EXPECT_EQ(topic, "session/a/events");
                        EXPECT_EQ(after, 5u);
                        // Live messages arrive while the log is read: one
                        // the read also returns, and one after it.
                        broker.Publish(Event("session/a/events", 7));
                        broker.Publish(Event("session/a/events", 8));
                        return std::vector<Message>{Event("session/a/events", 6),
                                                    Event("session/a/events", 7)};
                      })
                  .ok());
  EXPECT_EQ(replays, 1);                // the refused filter is neither restored nor replayed
  EXPECT_TRUE(link->payloads.empty());  // nothing before the CONNACK
  broker.Resume(s);
  EXPECT_EQ(link->payloads, (std::vector<std::string>{"6", "7", "8"}));
  // A late duplicate of a replayed event (another node's bus) is dropped.
  broker.Publish(Event("session/a/events", 7));
  broker.Publish(Event("session/a/events", 9));
  EXPECT_EQ(link->payloads, (std::vector<std::string>{"6", "7", "8", "9"}));
  EXPECT_FALSE(broker.HasSubscribers("session/b/events"));
  EXPECT_TRUE(broker.HasSubscribers("plain/x"));
  EXPECT_FALSE(broker
                   .Restore(
                       s, "not json", [](const std::string&) { return true; },
                       [](const std::string&, uint64_t) { return std::vector<Message>{}; })
                   .ok());
}

}  // namespace
}  // namespace persona::realtime
