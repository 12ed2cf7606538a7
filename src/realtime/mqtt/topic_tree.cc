#include "realtime/mqtt/topic_tree.h"

#include <algorithm>

#include "realtime/mqtt/utf8.h"

namespace persona::realtime::mqtt {

namespace {

bool IsDollarTopic(std::string_view topic) { return !topic.empty() && topic[0] == '$'; }

// Returns the level starting at `pos` and advances `pos` past the following '/'; sets *last
// when the returned level is the final one.
std::string_view NextLevel(std::string_view s, size_t* pos, bool* last) {
  const size_t slash = s.find('/', *pos);
  std::string_view level;
  if (slash == std::string_view::npos) {
    level = s.substr(*pos);
    *pos = s.size();
    *last = true;
  } else {
    level = s.substr(*pos, slash - *pos);
    *pos = slash + 1;
    *last = false;
  }
  return level;
}

}  // namespace

bool ValidTopicName(std::string_view topic) {
  if (topic.empty() || topic.size() > kMaxMqttStringBytes) return false;
  if (topic.find_first_of("+#") != std::string_view::npos) return false;
  return ValidMqttUtf8(topic);
}

bool ValidTopicFilter(std::string_view filter) {
  if (filter.empty() || filter.size() > kMaxMqttStringBytes) return false;
  size_t pos = 0;
  bool last = false;
  while (!last) {
    const std::string_view level = NextLevel(filter, &pos, &last);
    if (level.size() > 1 && level.find_first_of("+#") != std::string_view::npos) return false;
    if (level == "#" && !last) return false;
  }
  return ValidMqttUtf8(filter);
}

bool TopicMatches(std::string_view filter, std::string_view topic) {
  if (IsDollarTopic(topic) && !filter.empty() && (filter[0] == '+' || filter[0] == '#')) {
    return false;
  }
  size_t fpos = 0, tpos = 0;
  bool flast = false, tlast = false;
  while (true) {
    const std::string_view f = NextLevel(filter, &fpos, &flast);
    if (f == "#") return true;  // Matches this level and everything below, including nothing.
    const std::string_view t = NextLevel(topic, &tpos, &tlast);
    if (f != "+" && f != t) return false;
    if (flast || tlast) {
      if (flast && tlast) return true;
      // Topic exhausted but the filter continues: only a trailing "/#" still matches
      // ("sport/#" matches "sport").
      if (tlast && !flast) {
        const std::string_view rest = filter.substr(fpos);
        return rest == "#";
      }
      return false;
    }
  }
}

struct TopicTree::Node {
  absl::flat_hash_map<std::string, std::unique_ptr<Node>, StringHash, StringEq> children;
  std::unique_ptr<Node> plus;  // The "+" child.
  SubscriberMap subs;          // Filters ending exactly at this node.
  // Filters "<this node's path>/#" (or "#" at the root): few nodes have them,
  // so they are held by pointer (a node is 96 bytes, not 128).
  std::unique_ptr<SubscriberMap> hash_subs;

  bool Unused() const {
    return children.empty() && !plus && subs.empty() && (!hash_subs || hash_subs->empty());
  }
};

TopicTree::TopicTree() : root_(std::make_unique<Node>()) {}

TopicTree::~TopicTree() {
  // Tear down iteratively: a filter may have tens of thousands of levels, and recursive
  // unique_ptr destruction would use stack in proportion.
  std::vector<std::unique_ptr<Node>> pending;
  if (root_) pending.push_back(std::move(root_));
  while (!pending.empty()) {
    std::unique_ptr<Node> node = std::move(pending.back());
    pending.pop_back();
    for (auto& [key, child] : node->children) pending.push_back(std::move(child));
    if (node->plus) pending.push_back(std::move(node->plus));
  }
}

TopicTree::TopicTree(TopicTree&& other) noexcept
    : root_(std::move(other.root_)), size_(other.size_) {
  other.root_ = std::make_unique<Node>();
  other.size_ = 0;
}

TopicTree& TopicTree::operator=(TopicTree&& other) noexcept {
  if (this != &other) {
    TopicTree tmp(std::move(other));
    std::swap(root_, tmp.root_);
    std::swap(size_, tmp.size_);
  }
  return *this;
}

TopicTree::SubscriberMap* TopicTree::Find(std::string_view filter, bool create,
                                          std::vector<Node*>* path) {
  Node* node = root_.get();
  if (path) path->push_back(node);
  size_t pos = 0;
  bool last = false;
  while (!last) {
    const std::string_view level = NextLevel(filter, &pos, &last);
    if (level == "#") {  // Valid filters have '#' only last.
      if (!node->hash_subs && create) node->hash_subs = std::make_unique<SubscriberMap>();
      return node->hash_subs.get();
    }
    Node* next = nullptr;
    if (level == "+") {
      if (!node->plus && create) node->plus = std::make_unique<Node>();
      next = node->plus.get();
    } else {
      auto it = node->children.find(level);
      if (it != node->children.end()) {
        next = it->second.get();
      } else if (create) {
        next = node->children.emplace(std::string(level), std::make_unique<Node>())
                   .first->second.get();
      }
    }
    if (next == nullptr) return nullptr;
    node = next;
    if (path) path->push_back(node);
  }
  return &node->subs;
}

void TopicTree::Prune(std::string_view filter, const std::vector<Node*>& path) {
  // path[k] (k >= 1) is the child of path[k-1] reached through the k-th level of `filter`.
  std::vector<std::string_view> levels;
  size_t pos = 0;
  bool last = false;
  while (!last) levels.push_back(NextLevel(filter, &pos, &last));
  for (size_t k = path.size() - 1; k >= 1; --k) {
    if (!path[k]->Unused()) return;
    Node* parent = path[k - 1];
    const std::string_view level = levels[k - 1];
    if (level == "+") {
      parent->plus.reset();
    } else {
      auto it = parent->children.find(level);
      if (it != parent->children.end()) parent->children.erase(it);
    }
  }
}

bool TopicTree::Add(std::string_view filter, SubscriberId id, uint8_t qos) {
  if (qos > 2 || !ValidTopicFilter(filter)) return false;
  SubscriberMap* subs = Find(filter, /*create=*/true, nullptr);
  auto [it, inserted] = subs->try_emplace(id, qos);
  if (!inserted) {
    it->second = qos;
    return true;
  }
  ++size_;
  return true;
}

bool TopicTree::Remove(std::string_view filter, SubscriberId id) {
  if (!ValidTopicFilter(filter)) return false;
  std::vector<Node*> path;
  SubscriberMap* subs = Find(filter, /*create=*/false, &path);
  if (subs == nullptr || subs->erase(id) == 0) return false;
  --size_;
  Prune(filter, path);
  return true;
}

void TopicTree::Match(std::string_view topic, MatchResult* out) const {
  out->clear();
  struct Frame {
    const Node* node;
    size_t pos;  // Offset of the next unconsumed level in `topic`.
    bool done;   // All levels consumed.
  };
  // The common exact-topic case never holds more than one or two frames; keep them on the
  // stack and spill to the heap only for wildcard-heavy trees.
  constexpr size_t kInline = 16;
  Frame inline_frames[kInline];
  std::vector<Frame> spill;
  size_t depth = 0;
  auto push = [&](const Node* n, size_t p, bool d) {
    if (depth < kInline) {
      inline_frames[depth] = Frame{n, p, d};
    } else {
      spill.push_back(Frame{n, p, d});
    }
    ++depth;
  };
  auto pop = [&]() {
    --depth;
    if (depth < kInline) return inline_frames[depth];
    Frame f = spill.back();
    spill.pop_back();
    return f;
  };

  int contributing_sets = 0;
  auto collect = [&](const SubscriberMap& subs) {
    if (subs.empty()) return;
    ++contributing_sets;
    for (const auto& [id, qos] : subs) out->emplace_back(id, qos);
  };

  const bool dollar = IsDollarTopic(topic);
  push(root_.get(), 0, false);
  while (depth > 0) {
    const Frame f = pop();
    const bool at_root = f.node == root_.get();
    // "x/#" matches "x" itself and everything below it [MQTT-4.7.1-2].
    if (f.node->hash_subs && !(at_root && dollar)) collect(*f.node->hash_subs);
    if (f.done) {
      collect(f.node->subs);
      continue;
    }
    size_t pos = f.pos;
    bool last = false;
    const std::string_view level = NextLevel(topic, &pos, &last);
    if (!f.node->children.empty()) {
      auto it = f.node->children.find(level);
      if (it != f.node->children.end()) push(it->second.get(), pos, last);
    }
    if (f.node->plus && !(at_root && dollar)) push(f.node->plus.get(), pos, last);
  }

  if (contributing_sets > 1) {
    // Several filters matched: keep each subscriber once, with its highest QoS.
    std::sort(out->begin(), out->end(), [](const auto& a, const auto& b) {
      return a.first != b.first ? a.first < b.first : a.second > b.second;
    });
    auto end = std::unique(out->begin(), out->end(),
                           [](const auto& a, const auto& b) { return a.first == b.first; });
    out->erase(end, out->end());
  }
}

}  // namespace persona::realtime::mqtt
