// MQTT 3.1.1 topic names, topic filters and the subscription tree (spec §4.7).
//
// Topic names are what PUBLISH carries; topic filters are what SUBSCRIBE carries and may
// contain the wildcards `+` (exactly one level) and `#` (this level and all below; only as the
// last level). Levels are separated by `/`; empty levels are legal ("/finance" has two levels,
// "" and "finance"). Topics starting with `$` (e.g. "$SYS/...") are never matched by a filter
// whose first level is a wildcard [MQTT-4.7.2-1].
//
// The free functions are pure and thread-safe.

#ifndef PERSONA_REALTIME_MQTT_TOPIC_TREE_H_
#define PERSONA_REALTIME_MQTT_TOPIC_TREE_H_

#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "absl/container/flat_hash_map.h"

namespace persona::realtime::mqtt {

// Longest string an MQTT UTF-8 string field can carry.
inline constexpr size_t kMaxMqttStringBytes = 65535;

// True when `topic` is a valid topic name: 1..65535 bytes, well-formed MQTT UTF-8 (no U+0000,
// no surrogates) and no `+` or `#` [MQTT-4.7.3-1, MQTT-4.7.1-1].
bool ValidTopicName(std::string_view topic);

// True when `filter` is a valid topic filter: 1..65535 bytes, MQTT UTF-8, `#` only as a whole
// last level [MQTT-4.7.1-2], `+` only as a whole level [MQTT-4.7.1-3].
bool ValidTopicFilter(std::string_view filter);

// True when `topic` (a topic name) matches `filter` (a topic filter), including the `$` rule.
// Both arguments are assumed valid; invalid input gives an unspecified (but safe) answer.
bool TopicMatches(std::string_view filter, std::string_view topic);

// A subscription index: topic filter -> {subscriber id -> granted QoS}, organised as a trie of
// topic levels. Exact levels are looked up through a hash map per node, so matching a topic
// against a tree with no wildcard subscriptions costs about one hash lookup per level.
//
// NOT thread-safe: the owner (the broker) must serialise all calls, including const ones
// against concurrent mutation. Memory is proportional to the stored filters; nothing is
// allocated in proportion to a topic passed to Match beyond its level count.
class TopicTree {
 public:
  using SubscriberId = uint64_t;
  // (subscriber id, QoS) as produced by Match.
  using MatchResult = std::vector<std::pair<SubscriberId, uint8_t>>;

  TopicTree();
  ~TopicTree();
  TopicTree(TopicTree&&) noexcept;
  TopicTree& operator=(TopicTree&&) noexcept;
  TopicTree(const TopicTree&) = delete;
  TopicTree& operator=(const TopicTree&) = delete;

  // Subscribes `id` to `filter` with `qos` (0..2). If `id` already holds exactly this filter,
  // its QoS is replaced [MQTT-3.8.4-3]. Returns false, changing nothing, when `filter` is not
  // a valid topic filter or qos > 2.
  bool Add(std::string_view filter, SubscriberId id, uint8_t qos);

  // Removes the subscription of `id` to exactly `filter` (string equality, not matching).
  // Returns true if one existed. The tree keeps no index by subscriber: the owner knows its
  // subscribers' filters (the broker's sessions do) and removes each.
  bool Remove(std::string_view filter, SubscriberId id);

  // Clears *out, then fills it with every subscriber having at least one filter that matches
  // `topic`, each exactly once, with the maximum QoS over its matching filters
  // [MQTT-3.3.5-1]. Order is unspecified. `topic` is assumed to be a valid topic name.
  void Match(std::string_view topic, MatchResult* out) const;

  // Number of (filter, subscriber) subscriptions stored.
  size_t size() const { return size_; }
  bool empty() const { return size_ == 0; }

 private:
  struct Node;
  // Open-addressing maps (absl): an empty one allocates nothing and a small
  // one is a single allocation, where std::unordered_map allocates a bucket
  // array and a node per entry. Most nodes hold one subscriber or one child,
  // and the tree dominates the memory of an idle subscribed connection.
  using SubscriberMap = absl::flat_hash_map<SubscriberId, uint8_t>;
  // Lookups by std::string_view (Debian's absl::string_view is its own type).
  struct StringHash {
    using is_transparent = void;
    size_t operator()(std::string_view s) const { return std::hash<std::string_view>{}(s); }
  };
  struct StringEq {
    using is_transparent = void;
    bool operator()(std::string_view a, std::string_view b) const { return a == b; }
  };

  // Returns the subscriber map for `filter`, creating nodes when `create`; nullptr if absent.
  // `path`, when non-null, receives the nodes walked from the root (for pruning).
  SubscriberMap* Find(std::string_view filter, bool create, std::vector<Node*>* path);
  void Prune(std::string_view filter, const std::vector<Node*>& path);

  std::unique_ptr<Node> root_;
  size_t size_ = 0;
};

}  // namespace persona::realtime::mqtt

#endif  // PERSONA_REALTIME_MQTT_TOPIC_TREE_H_
