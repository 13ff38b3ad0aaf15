// What `vtpmctl stats` and the Prometheus endpoint report: one read of the
// daemon's counters (Service, Engine, Persister, channels) rendered as the
// control API's JSON or as the Prometheus text exposition format (0.0.4).
//
// Thread affinity: loop thread (it reads loop-thread state).
#pragma once

#include <cstdint>
#include <functional>
#include <string>

#include "backends/swtpm/swtpm_backend.h"
#include "proto/control_message.h"
#include "src/core/service.h"

namespace vtpm::control {

struct MetricsSources {
  const Service& service;
  const swtpm::SwtpmBackend& swtpm;
  std::int64_t started_unix = 0;
  std::size_t control_connections = 0;
};

// Daemon-wide figures (`stats` without a UUID).
Json global_stats_json(const MetricsSources& sources);
// One instance's figures (`stats UUID`).
Json instance_stats_json(const Instance& instance, const Service& service);
// The exposition text; per-instance series (labelled instance="UUID") only
// when asked, as they grow with the instance count.
std::string prometheus_text(const MetricsSources& sources, bool per_instance);

}  // namespace vtpm::control
