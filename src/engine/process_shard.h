// A vtpmd-engine worker process: its own libtpms, fed over a socketpair by
// the reactor. TPM 1.2 instances live in workers so that each busy one stays
// loaded (a TPM 1.2 swap costs ~200 ms) without holding up anyone else.
#pragma once

#include <uv.h>

#include <chrono>
#include <functional>
#include <string>

#include "proto/result.h"
#include "src/core/read_buffer.h"
#include "src/core/uv_handle.h"
#include "src/engine/multiplexer.h"
#include "src/engine/shard.h"

namespace vtpm::engine {

class ProcessShard final : public Shard {
 public:
  using ExitSink = std::function<void(ProcessShard&, const std::string& why)>;

  ProcessShard(uv_loop_t* loop, std::string name, CompletionSink sink, ExitSink on_exit);
  ~ProcessShard() override;  // closes the pipe; the worker exits on EOF

  // `core_dumps`: the worker stays dumpable (vtpmd --allow-core-dumps).
  Status start(const std::string& worker_path, const MultiplexerOptions& options, bool core_dumps = false);
  void submit(Job job) override;
  const std::string& name() const override { return name_; }
  int pid() const { return pid_; }
  bool alive() const { return alive_; }

 private:
  void on_read(ssize_t nread, const uv_buf_t* buf);
  void fail(const std::string& why);

  uv_loop_t* loop_;
  std::string name_;
  CompletionSink sink_;
  ExitSink on_exit_;
  UvHandle<uv_process_t> process_;
  UvHandle<uv_pipe_t> pipe_;
  ReadBuffer inbound_;
  int pid_ = 0;
  bool alive_ = false;
};

}  // namespace vtpm::engine
