#include "src/control/metrics_report.h"

#include <chrono>
#include <cstdio>

#include "src/core/warm_pool.h"

namespace vtpm::control {
namespace {

std::int64_t now_unix() {
  return std::chrono::duration_cast<std::chrono::seconds>(std::chrono::system_clock::now().time_since_epoch()).count();
}

Json histogram_json(const LatencyHistogram& h) {
  return {{"count", h.count()},
          {"sum_us", h.sum_us()},
          {"p50_us", h.quantile_us(0.50)},
          {"p99_us", h.quantile_us(0.99)}};
}

struct InstanceCounts {
  std::size_t running = 0, stopped = 0, failed = 0;
  std::size_t warm_pool = 0;  // pre-manufactured, not handed out yet (not in the others)
};

InstanceCounts count_instances(const Service& service) {
  InstanceCounts n;
  for (const auto& [id, i] : service.registry().all()) {
    if (i.removing) continue;
    if (WarmPool::is_member(i)) ++n.warm_pool;
    else if (i.failed) ++n.failed;
    else if (i.power == PowerState::kOn) ++n.running;
    else ++n.stopped;
  }
  return n;
}

// Prometheus label values: backslash, double quote and newline escaped.
std::string label(std::string_view value) {
  std::string out;
  for (char c : value) {
    if (c == '\\' || c == '"') out += '\\';
    if (c == '\n') {
      out += "\\n";
      continue;
    }
    out += c;
  }
  return out;
}

std::string seconds(std::uint64_t us) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%llu.%06llu", static_cast<unsigned long long>(us / 1000000),
                static_cast<unsigned long long>(us % 1000000));
  return buf;
}

class Exposition {
 public:
  void family(const char* name, const char* type, const char* help) {
    out_ += "# HELP ";
    out_ += name;
    out_ += ' ';
    out_ += help;
    out_ += "\n# TYPE ";
    out_ += name;
    out_ += ' ';
    out_ += type;
    out_ += '\n';
  }
  void sample(std::string_view name, std::string_view labels, std::string_view value) {
    out_ += name;
    if (!labels.empty()) {
      out_ += '{';
      out_ += labels;
      out_ += '}';
    }
    out_ += ' ';
    out_ += value;
    out_ += '\n';
  }
  void sample(std::string_view name, std::string_view labels, std::uint64_t value) {
    sample(name, labels, std::to_string(value));
  }
  // A histogram in seconds from microsecond buckets; `labels` may be empty.
  void histogram(const std::string& name, const std::string& labels, const LatencyHistogram& h) {
    const std::string prefix = labels.empty() ? "" : labels + ",";
    std::uint64_t cumulative = 0;
    for (std::size_t b = 0; b < LatencyHistogram::kBoundsUs.size(); ++b) {
      cumulative += h.bucket(b);
      sample(name + "_bucket", prefix + "le=\"" + seconds(LatencyHistogram::kBoundsUs[b]) + "\"", cumulative);
    }
    sample(name + "_bucket", prefix + "le=\"+Inf\"", h.count());
    sample(name + "_sum", labels, seconds(h.sum_us()));
    sample(name + "_count", labels, h.count());
  }
  std::string take() { return std::move(out_); }

 private:
  std::string out_;
};

}  // namespace

Json global_stats_json(const MetricsSources& sources) {
  const Service& service = sources.service;
  const CommandMetrics& m = service.metrics();
  const InstanceCounts counts = count_instances(service);
  Json by_class = Json::object();
  std::uint64_t commands = 0;
  for (std::size_t c = 0; c < tpm::kCommandClassCount; ++c) {
    const LatencyHistogram& h = m.latency[c];
    commands += h.count();
    if (h.count() != 0) by_class[tpm::command_class_name(static_cast<tpm::CommandClass>(c))] = histogram_json(h);
  }
  Json by_kind = Json::object();
  for (std::size_t e = 0; e < kErrorCodeCount; ++e) {
    if (m.errors.by_code[e] != 0) by_kind[std::string(error_code_name(static_cast<ErrorCode>(e)))] = m.errors.by_code[e];
  }
  if (m.errors.tpm_rc != 0) by_kind["tpm_rc"] = m.errors.tpm_rc;
  std::uint64_t swaps = 0, swap_us = 0, jobs = 0;
  for (const auto& s : service.engine().stats()) {
    swaps += s.swaps;
    swap_us += s.swap_us_total;
    jobs += s.jobs;
  }
  const Persister& p = service.persister();
  return {{"uptime_s", now_unix() - sources.started_unix},
          {"instances",
           {{"total", counts.running + counts.stopped + counts.failed},
            {"running", counts.running},
            {"stopped", counts.stopped},
            {"failed", counts.failed},
            {"warm_pool", counts.warm_pool}}},
          {"commands", {{"total", commands}, {"by_class", by_class}}},
          {"errors", {{"total", m.errors.total()}, {"by_kind", by_kind}}},
          {"queue",
           {{"engine", service.engine().outstanding_total()},
            {"throttled", service.throttled_total()},
            {"throttled_total", m.throttled}}},
          {"engine",
           {{"jobs", jobs}, {"swaps", swaps}, {"swap_us_total", swap_us}, {"isolations", service.engine().isolations()}}},
          {"persistence",
           {{"writes", p.writes()},
            {"commits", p.commits()},
            {"failures", p.failures()},
            {"pending", p.pending()},
            {"inline", p.committed().inline_blobs.size()},
            {"lag", histogram_json(p.lag())}}},
          {"connections", {{"control", sources.control_connections}, {"swtpm", sources.swtpm.connections()}}}};
}

Json instance_stats_json(const Instance& i, const Service& service) {
  const std::uint64_t commands = i.counters.commands;
  return {{"uuid", i.uuid.to_string()},
          {"state", i.state_name()},
          {"engine", service.placement(i.uuid)},
          {"commands", commands},
          {"errors", i.counters.errors},
          {"bytes_in", i.counters.bytes_in},
          {"bytes_out", i.counters.bytes_out},
          {"swaps", i.counters.swaps},
          {"engine_us_total", i.counters.engine_us},
          {"engine_us_avg", commands == 0 ? 0 : i.counters.engine_us / commands},
          {"queue", {{"engine", service.outstanding(i.uuid)}, {"throttled", service.throttled(i.uuid)}}},
          {"throttled_total", i.throttle.delayed},
          {"state_size", Service::state_size(i)}};
}

std::string prometheus_text(const MetricsSources& sources, bool per_instance) {
  const Service& service = sources.service;
  const CommandMetrics& m = service.metrics();
  Exposition x;
  x.family("vtpmd_info", "gauge", "vtpmd's version (always 1).");
  x.sample("vtpmd_info", std::string("version=\"") + label(VTPMD_VERSION) + "\"", 1);
  x.family("vtpmd_uptime_seconds", "gauge", "Seconds since vtpmd started.");
  x.sample("vtpmd_uptime_seconds", "", static_cast<std::uint64_t>(now_unix() - sources.started_unix));

  const InstanceCounts counts = count_instances(service);
  x.family("vtpmd_instances", "gauge", "Instances by state (warm_pool: pre-manufactured, not handed out yet).");
  x.sample("vtpmd_instances", "state=\"running\"", counts.running);
  x.sample("vtpmd_instances", "state=\"stopped\"", counts.stopped);
  x.sample("vtpmd_instances", "state=\"failed\"", counts.failed);
  x.sample("vtpmd_instances", "state=\"warm_pool\"", counts.warm_pool);

  x.family("vtpmd_command_duration_seconds", "histogram",
           "Time from admission to the engine until the answer (including the durable save of a state change), "
           "by command class.");
  for (std::size_t c = 0; c < tpm::kCommandClassCount; ++c) {
    x.histogram("vtpmd_command_duration_seconds",
                std::string("class=\"") + tpm::command_class_name(static_cast<tpm::CommandClass>(c)) + "\"",
                m.latency[c]);
  }
  x.family("vtpmd_errors_total", "counter",
           "Commands without a successful TPM answer: refused or failed by vtpmd (by error code) or answered "
           "with a TPM error (kind=\"tpm_rc\").");
  for (std::size_t e = 0; e < kErrorCodeCount; ++e) {
    x.sample("vtpmd_errors_total", "kind=\"" + std::string(error_code_name(static_cast<ErrorCode>(e))) + "\"",
             m.errors.by_code[e]);
  }
  x.sample("vtpmd_errors_total", "kind=\"tpm_rc\"", m.errors.tpm_rc);

  x.family("vtpmd_queue_depth", "gauge", "Commands queued or running in the engines, or waiting for their rate.");
  x.sample("vtpmd_queue_depth", "queue=\"engine\"", service.engine().outstanding_total());
  x.sample("vtpmd_queue_depth", "queue=\"throttled\"", service.throttled_total());
  x.family("vtpmd_throttled_commands_total", "counter", "Commands that waited for their instance's max_rate.");
  x.sample("vtpmd_throttled_commands_total", "", m.throttled);

  const auto shards = service.engine().stats();
  x.family("vtpmd_engine_jobs_total", "counter", "Jobs run, by engine shard.");
  for (const auto& s : shards) x.sample("vtpmd_engine_jobs_total", "shard=\"" + label(s.name) + "\"", s.jobs);
  x.family("vtpmd_engine_swaps_total", "counter", "Instance swaps (save one TPM, load another), by engine shard.");
  for (const auto& s : shards) x.sample("vtpmd_engine_swaps_total", "shard=\"" + label(s.name) + "\"", s.swaps);
  x.family("vtpmd_engine_swap_seconds_total", "counter", "Time spent swapping, by engine shard.");
  for (const auto& s : shards) {
    x.sample("vtpmd_engine_swap_seconds_total", "shard=\"" + label(s.name) + "\"", seconds(s.swap_us_total));
  }
  x.family("vtpmd_engine_isolations_total", "counter", "Busy TPM 2.0 instances moved to a worker of their own.");
  x.sample("vtpmd_engine_isolations_total", "", service.engine().isolations());

  const Persister& p = service.persister();
  x.family("vtpmd_persistence_writes_total", "counter", "Instance records written (sealed blob + manifest commit).");
  x.sample("vtpmd_persistence_writes_total", "", p.writes());
  x.family("vtpmd_persistence_failures_total", "counter", "Instance records that could not be written.");
  x.sample("vtpmd_persistence_failures_total", "", p.failures());
  x.family("vtpmd_persistence_commits_total", "counter", "Manifest commits (one per group-committed batch).");
  x.sample("vtpmd_persistence_commits_total", "", p.commits());
  x.family("vtpmd_persistence_pending", "gauge", "Instance changes waiting for the next batch.");
  x.sample("vtpmd_persistence_pending", "", p.pending());
  x.family("vtpmd_persistence_inline", "gauge",
           "New instances whose state is still carried in the manifest (moved to their files when writes pause).");
  x.sample("vtpmd_persistence_inline", "", p.committed().inline_blobs.size());
  x.family("vtpmd_persistence_lag_seconds", "histogram", "Time from a change of instance state to durable on disk.");
  x.histogram("vtpmd_persistence_lag_seconds", "", p.lag());

  x.family("vtpmd_connections", "gauge", "Open connections by kind.");
  x.sample("vtpmd_connections", "kind=\"control\"", sources.control_connections);
  x.sample("vtpmd_connections", "kind=\"swtpm\"", sources.swtpm.connections());

  if (per_instance) {
    const auto& all = service.registry().all();
    auto each = [&](const char* name, const char* type, const char* help, auto value) {
      x.family(name, type, help);
      for (const auto& [id, i] : all) {
        if (!i.removing && !WarmPool::is_member(i)) x.sample(name, "instance=\"" + id.to_string() + "\"", value(i));
      }
    };
    each("vtpmd_instance_commands_total", "counter", "Commands answered by the instance's TPM.",
         [](const Instance& i) { return std::to_string(i.counters.commands); });
    each("vtpmd_instance_errors_total", "counter", "The instance's refused or failed commands and TPM errors.",
         [](const Instance& i) { return std::to_string(i.counters.errors); });
    each("vtpmd_instance_received_bytes_total", "counter", "Command bytes accepted for the instance.",
         [](const Instance& i) { return std::to_string(i.counters.bytes_in); });
    each("vtpmd_instance_sent_bytes_total", "counter", "Response bytes the instance's TPM produced.",
         [](const Instance& i) { return std::to_string(i.counters.bytes_out); });
    each("vtpmd_instance_swaps_total", "counter", "Commands that had to swap the instance in first.",
         [](const Instance& i) { return std::to_string(i.counters.swaps); });
    each("vtpmd_instance_engine_seconds_total", "counter", "Time the instance's commands spent in the engine.",
         [](const Instance& i) { return seconds(i.counters.engine_us); });
    each("vtpmd_instance_queue_depth", "gauge", "The instance's commands queued, running or waiting for rate.",
         [&](const Instance& i) { return std::to_string(service.outstanding(i.uuid) + service.throttled(i.uuid)); });
  }
  return x.take();
}

}  // namespace vtpm::control
