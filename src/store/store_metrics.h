// The metrics every EventStore backend reports, under the same names (the
// load generator and the dashboard read them whichever store runs).
#pragma once

#include "metrics/metrics.h"

namespace persona::store {

struct StoreMetrics {
  metrics::Histogram* commit_seconds;
  metrics::Histogram* batch_size;
  metrics::Counter* fsyncs;  // durable group commits (fsync'd batches, or transactions)
  metrics::Counter* appends;
  metrics::Counter* commit_errors;
  metrics::Gauge* queue_depth;

  static StoreMetrics Register(metrics::Registry& reg = metrics::Default()) {
    return StoreMetrics{
        reg.GetHistogram("persona_store_commit_seconds",
                         "Time to write and fsync one group commit"),
        reg.GetHistogram("persona_store_batch_size", "Appends per group commit", "",
                         metrics::SizeBuckets()),
        reg.GetCounter("persona_store_fsyncs_total", "Group commits written with fsync"),
        reg.GetCounter("persona_store_appends_total", "Appends committed"),
        reg.GetCounter("persona_store_commit_errors_total", "Failed group commits"),
        reg.GetGauge("persona_store_queue_depth", "Appends waiting for a group commit"),
    };
  }
};

}  // namespace persona::store
