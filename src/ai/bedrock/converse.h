// The JSON of the Bedrock Converse and ConverseStream APIs, as pure functions.
//
// Request: POST {base}/model/{modelId}/converse (or /converse-stream) with
//   {"system":[{"text":…}],
//    "messages":[{"role":"user","content":[{"text":…}]},…],
//    "inferenceConfig":{"maxTokens":…,"temperature":…}}
// Bedrock rejects a conversation that does not start with a user turn, that does not
// alternate, or that has a blank text block, so BuildConverseBody repairs the history instead
// of sending something that fails: it drops blank turns and roles other than user/assistant,
// drops assistant turns before the first user turn, and merges consecutive turns of one role
// (joined by a blank line).
//
// Response (converse): {"output":{"message":{"role":"assistant","content":[{"text":…},…]}},
//   "stopReason":"end_turn","usage":{"inputTokens":…,"outputTokens":…,"totalTokens":…},
//   "metrics":{"latencyMs":…}}. Text blocks are concatenated; other blocks (toolUse,
//   reasoningContent, …) are skipped.
//
// Stream (converse-stream): event stream messages (event_stream.h) whose ":event-type" header
// names the event and whose payload is that event's JSON: messageStart {"role"},
// contentBlockStart, contentBlockDelta {"contentBlockIndex","delta":{"text"}},
// contentBlockStop, messageStop {"stopReason"}, metadata {"usage":{…},"metrics":{…}}.
// ":message-type" "exception" carries ":exception-type" (throttlingException, …) and
// {"message"}; "error" carries ":error-code"/":error-message".
//
// Error classes, for HTTP error answers and stream exceptions alike:
//   throttling, too many requests, service quota  → ResourceExhausted (retry after a pause)
//   service unavailable, internal server, model stream error, model not ready, model error
//                                                 → Unavailable
//   model timeout                                 → DeadlineExceeded
//   validation                                    → InvalidArgument
//   access denied                                 → PermissionDenied
//   bad/expired/missing signature or token        → Unauthenticated
//   resource not found                            → NotFound
// Unknown types fall back on the HTTP status (429, 5xx, 400, 401/403, 404, 408), else Internal.
// Malformed bodies and events are DataLoss. Nothing here throws.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "ai/bedrock/event_stream.h"
#include "core/status.h"

namespace persona::ai::bedrock {

// `messages`: (role "user" | "assistant", text), oldest first. `max_tokens` <= 0 and
// `temperature` < 0 leave those settings to the model's defaults; an empty system prompt is
// omitted. If no user turn remains, "messages" is empty (Bedrock will refuse the request).
std::string BuildConverseBody(const std::string& system_prompt,
                              const std::vector<std::pair<std::string, std::string>>& messages,
                              int max_tokens, double temperature);

struct ConverseResult {
  std::string text;
  std::string stop_reason;  // "end_turn", "max_tokens", "stop_sequence", "content_filtered", …
  int64_t input_tokens = 0;
  int64_t output_tokens = 0;
  int64_t latency_ms = -1;  // Bedrock's own measure, -1 when absent
};

StatusOr<ConverseResult> ParseConverseResponse(std::string_view body);

struct StreamEvent {
  enum class Type {
    kMessageStart,
    kContentBlockStart,
    kContentBlockDelta,
    kContentBlockStop,
    kMessageStop,
    kMetadata,
    kOther,  // an event type this code does not know: skip it
  };
  Type type = Type::kOther;
  std::string event_type;     // the ":event-type" header
  std::string text;           // kContentBlockDelta: delta.text ("" for non-text deltas)
  std::string stop_reason;    // kMessageStop
  int64_t input_tokens = 0;   // kMetadata
  int64_t output_tokens = 0;  // kMetadata
  int64_t latency_ms = -1;    // kMetadata
};

// An event, or the error an exception/error message carries, or DataLoss.
StatusOr<StreamEvent> ParseStreamEvent(const EventMessage& m);

// The status for an error answer: `error_type` is the x-amzn-ErrorType header (its part before
// ':' is used; "" when absent), `body` the JSON body ({"message": …}).
Status ConverseErrorStatus(int http_status, std::string_view error_type, std::string_view body);

struct ConverseEndpoint {
  std::string url;          // scheme://authority/path
  bool tls = true;          // https
  std::string host;         // host name or address, without port
  std::string port;         // "443", "80" or the explicit one
  std::string host_header;  // what to send (and sign) as Host: host[:port as written]
  std::string path;         // wire path (percent-encoded), what to sign
};

// "https://bedrock-runtime.{region}.amazonaws.com/model/{model id}/converse[-stream]", or with
// `endpoint_override` (e.g. "http://127.0.0.1:8123", "https://vpce-….amazonaws.com", optionally
// with a base path) that base instead. The model id is one path segment, percent-encoded
// (':' → %3A, '/' of an ARN → %2F). InvalidArgument for a bad region, override or empty id.
StatusOr<ConverseEndpoint> ResolveConverseEndpoint(const std::string& region,
                                                   const std::string& endpoint_override,
                                                   const std::string& model_id, bool stream);

// ResolveConverseEndpoint(...)->url, or "" when the arguments are invalid.
std::string ConverseUrl(const std::string& region, const std::string& endpoint_override,
                        const std::string& model_id, bool stream);

}  // namespace persona::ai::bedrock
