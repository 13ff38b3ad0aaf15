#include "tools/vtpmctl/format.h"

#include <array>
#include <cmath>
#include <set>
#include <vector>

#include "tools/vtpmctl/table.h"

namespace vtpm::ctl {
namespace {

using control::Json;

// obj[key], or null when obj is not an object or has no such key.
const Json& member(const Json& obj, std::string_view key) {
  static const Json kNull;
  if (!obj.is_object()) return kNull;
  const auto it = obj.find(std::string(key));
  return it == obj.end() ? kNull : *it;
}

std::string text(const Json& obj, std::string_view key) { return scalar_text(member(obj, key)); }

std::string two_digits(long long n) { return (n < 10 ? "0" : "") + std::to_string(n); }

// Instance fields printed first by `show`, in this order; the rest follow sorted.
constexpr std::array<std::string_view, 8> kInstanceKeyOrder = {
    "uuid", "tpm", "state", "power", "created", "engine", "auto_startup", "max_command_size"};

void flatten(const std::string& prefix, const Json& value, std::string& out) {
  if (value.is_object() && !value.empty()) {
    for (const auto& [key, child] : value.items()) flatten(prefix + "." + key, child, out);
    return;
  }
  out += prefix + ": " + scalar_text(value) + "\n";
}

Result<std::string> required_string(const Json& result, std::string_view key) {
  const Json& value = member(result, key);
  if (!value.is_string()) {
    return make_error(ErrorCode::kCorrupt, "result has no string field '" + std::string(key) + "'");
  }
  return value.get<std::string>();
}

std::string average_swap_us(const Json& shard) {
  const Json& swaps = member(shard, "swaps");
  const Json& total = member(shard, "swap_us_total");
  if (!swaps.is_number() || !total.is_number() || swaps.get<double>() <= 0) return "-";
  return std::to_string(std::llround(total.get<double>() / swaps.get<double>()));
}

std::string format_shards(const Json& shards) {
  Table table({{"NAME"},
               {"PID", Align::kRight},
               {"INSTANCES", Align::kRight},
               {"JOBS", Align::kRight},
               {"SWAPS", Align::kRight},
               {"AVG SWAP us", Align::kRight},
               {"OUTSTANDING", Align::kRight}});
  if (shards.is_array()) {
    for (const Json& shard : shards) {
      table.add_row({text(shard, "name"), text(shard, "pid"), text(shard, "instances"), text(shard, "jobs"),
                     text(shard, "swaps"), average_swap_us(shard), text(shard, "outstanding")});
    }
  }
  return table.render();
}

std::string with_uuid(const Json& result, std::string_view prefix) {
  return std::string(prefix) + text(result, "uuid") + "\n";
}

}  // namespace

std::string scalar_text(const Json& value) {
  if (value.is_null()) return "-";
  if (value.is_string()) return value.get<std::string>();
  return value.dump(-1, ' ', false, Json::error_handler_t::replace);
}

std::string format_duration(long long seconds) {
  if (seconds < 0) return "-";
  const long long days = seconds / 86400, hours = seconds / 3600 % 24, minutes = seconds / 60 % 60, secs = seconds % 60;
  if (days > 0) return std::to_string(days) + "d " + two_digits(hours) + "h " + two_digits(minutes) + "m " + two_digits(secs) + "s";
  if (hours > 0) return std::to_string(hours) + "h " + two_digits(minutes) + "m " + two_digits(secs) + "s";
  if (minutes > 0) return std::to_string(minutes) + "m " + two_digits(secs) + "s";
  return std::to_string(secs) + "s";
}

std::string format_json(const Json& result) {
  return result.dump(2, ' ', false, Json::error_handler_t::replace) + "\n";
}

std::string format_instance_table(const Json& list_result) {
  Table table({{"UUID"},
               {"TPM"},
               {"STATE"},
               {"POWER"},
               {"ENGINE"},
               {"COMMANDS", Align::kRight},
               {"ERRORS", Align::kRight},
               {"LAST COMMAND"},
               {"XEN"}});
  const Json& instances = member(list_result, "instances");
  if (instances.is_array()) {
    for (const Json& inst : instances) {
      const Json& counters = member(inst, "counters");
      const Json& xen = member(inst, "xen");
      // A tpmif binding: dom<domid>/<devid> and the backend's xenbus state.
      std::string binding = xen.is_object() ? "dom" + text(xen, "domid") + "/" + text(xen, "devid") + " " + text(xen, "state")
                                            : "";
      // A vchan channel: vchan:dom<domid> and waiting/connected.
      if (const Json& vchan = member(inst, "vchan"); vchan.is_object() && vchan.contains("domid")) {
        binding += (binding.empty() ? "" : ", ") + std::string("vchan:dom") + text(vchan, "domid") + " " + text(vchan, "state");
      }
      if (binding.empty()) binding = "-";
      table.add_row({text(inst, "uuid"), text(inst, "tpm"), text(inst, "state"), text(inst, "power"),
                     text(inst, "engine"), text(counters, "commands"), text(counters, "errors"),
                     text(counters, "last_command"), binding});
    }
  }
  return table.render();
}

std::string format_instance_details(const Json& instance) {
  if (!instance.is_object()) return scalar_text(instance) + "\n";
  std::string out;
  std::set<std::string, std::less<>> done;
  for (std::string_view key : kInstanceKeyOrder) {
    if (!instance.contains(std::string(key))) continue;
    flatten(std::string(key), instance.at(std::string(key)), out);
    done.emplace(key);
  }
  for (const auto& [key, value] : instance.items()) {
    if (!done.contains(key)) flatten(key, value, out);
  }
  return out;
}

std::string format_status(const Json& status) {
  const Json& instances = member(status, "instances");
  const Json& uptime = member(status, "uptime_s");
  const Json& engine = member(status, "engine");
  std::string out;
  out += "daemon:      vtpmd " + text(status, "version") + " (pid " + text(status, "pid") + ")\n";
  out += "uptime:      " + (uptime.is_number() ? format_duration(uptime.get<long long>()) : "-") + "\n";
  out += "state dir:   " + text(status, "state_dir") + "\n";
  out += "instances:   " + text(instances, "total") + " (TPM 2.0: " + text(instances, "tpm20") +
         ", TPM 1.2: " + text(instances, "tpm12") + "; running: " + text(instances, "running") +
         ", stopped: " + text(instances, "stopped") + ", failed: " + text(instances, "failed") + ")\n";
  out += "outstanding: " + text(engine, "outstanding") + "\n";
  out += "connections: " + text(member(status, "control"), "connections") + "\n";
  if (const Json& root = member(status, "root_of_trust"); root.is_object() && root.contains("kind")) {
    out += "root:        " + text(root, "description") + "\n";
    if (root.contains("policy")) out += "sealed to:   " + text(root, "policy") + "\n";
    const Json& counter = member(root, "counter");
    out += "counter:     " + text(counter, "value") +
           (counter.value("in_step", true) ? "" : " (behind: " + text(counter, "problem") + ")") + "\n";
  }
  out += "\n" + format_shards(member(engine, "shards"));
  return out;
}

std::string format_global_stats(const Json& stats) {
  const Json& instances = member(stats, "instances");
  const Json& commands = member(stats, "commands");
  const Json& errors = member(stats, "errors");
  const Json& queue = member(stats, "queue");
  const Json& engine = member(stats, "engine");
  const Json& persistence = member(stats, "persistence");
  const Json& lag = member(persistence, "lag");
  std::string out;
  out += "instances:    " + text(instances, "total") + " (running " + text(instances, "running") + ", stopped " +
         text(instances, "stopped") + ", failed " + text(instances, "failed") + ")\n";
  out += "commands:     " + text(commands, "total") + "\n";
  out += "errors:       " + text(errors, "total");
  if (const Json& kinds = member(errors, "by_kind"); kinds.is_object() && !kinds.empty()) {
    std::string list;
    for (const auto& [kind, n] : kinds.items()) list += (list.empty() ? "" : ", ") + kind + " " + scalar_text(n);
    out += " (" + list + ")";
  }
  out += "\n";
  out += "queued:       " + text(queue, "engine") + " in engines, " + text(queue, "throttled") + " waiting for rate (" +
         text(queue, "throttled_total") + " ever)\n";
  out += "engine:       " + text(engine, "jobs") + " jobs, " + text(engine, "swaps") + " swaps (avg " +
         average_swap_us(engine) + " us), " + text(engine, "isolations") + " isolations\n";
  out += "persistence:  " + text(persistence, "writes") + " writes in " + text(persistence, "commits") + " commits, " +
         text(persistence, "failures") + " failed, " + text(persistence, "pending") + " pending; lag p50 " +
         text(lag, "p50_us") + " us, p99 " + text(lag, "p99_us") + " us\n\n";
  Table table({{"CLASS"}, {"COUNT", Align::kRight}, {"AVG us", Align::kRight}, {"p50 us <=", Align::kRight},
               {"p99 us <=", Align::kRight}});
  if (const Json& classes = member(commands, "by_class"); classes.is_object()) {
    for (const auto& [name, h] : classes.items()) {
      const Json& count = member(h, "count");
      const Json& sum = member(h, "sum_us");
      const std::string avg = count.is_number() && sum.is_number() && count.get<double>() > 0
                                  ? std::to_string(std::llround(sum.get<double>() / count.get<double>()))
                                  : "-";
      table.add_row({name, text(h, "count"), avg, text(h, "p50_us"), text(h, "p99_us")});
    }
  }
  return out + table.render();
}

Result<std::string> format_human(std::string_view method, const Json& result) {
  if (method == "stats") {
    if (!result.contains("uuid")) return format_global_stats(result);
    std::string out;
    for (const auto& [key, value] : result.items()) flatten(key, value, out);
    return out;
  }
  if (method == "metrics") {
    auto body = required_string(result, "text");
    if (!body) return body.error();
    return *body;
  }
  if (method == "hello") {
    return text(result, "daemon") + " " + text(result, "version") + " (protocol " + text(result, "protocol") + ")\n";
  }
  if (method == "status") return format_status(result);
  if (method == "list") return format_instance_table(result);
  if (method == "show" || method == "set") return format_instance_details(result);
  if (method == "add" && result.contains("added")) {
    std::string out;
    for (const Json& id : member(result, "added")) out += scalar_text(id) + "\n";
    return out;
  }
  if (method == "add" || method == "exec") {
    auto value = required_string(result, method == "add" ? "uuid" : "response");
    if (!value) return value.error();
    return *value + "\n";
  }
  if (method == "remove") return with_uuid(result, "removed ");
  if (method == "export") {
    return "exported " + text(result, "uuid") + " (TPM " + text(result, "tpm") + ", " +
           std::to_string(text(result, "bundle").size() / 2) + " bytes)\n";
  }
  if (method == "import") return with_uuid(result, "imported ");
  if (method == "reseal") return "resealed: " + text(result, "policy") + "\n";
  if (method == "cancel") return with_uuid(result, "cancel requested for ");
  if (method == "ca-cert") {
    auto pem = required_string(result, "pem");
    if (!pem) return pem.error();
    return *pem;
  }
  if (method == "measure") {
    std::string out = "PCR " + text(result, "pcr") + " of " + text(result, "uuid") + " extended (event " +
                      text(result, "events") + "):\n";
    const Json& digests = member(result, "digests");
    if (digests.is_object()) {
      for (const auto& [bank, digest] : digests.items()) {
        out += "  " + bank + ": " + (digest.is_string() ? digest.get<std::string>() : std::string("-")) + "\n";
      }
    }
    return out;
  }
  if (method == "reset") {
    return text(result, "uuid") + ": TPM reset (power-on), state " + text(result, "state") + "\n";
  }
  if (method == "power") {
    return text(result, "uuid") + ": power " + text(result, "power") + ", state " + text(result, "state") + "\n";
  }
  return format_json(result);
}

}  // namespace vtpm::ctl
