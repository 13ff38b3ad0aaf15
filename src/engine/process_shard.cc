#include "src/engine/process_shard.h"

#include <string>
#include <vector>

namespace vtpm::engine {

ProcessShard::ProcessShard(uv_loop_t* loop, std::string name, CompletionSink sink, ExitSink on_exit)
    : loop_(loop), name_(std::move(name)), sink_(std::move(sink)), on_exit_(std::move(on_exit)) {}

ProcessShard::~ProcessShard() {
  alive_ = false;
  if (pid_ > 0 && process_.live()) uv_process_kill(process_.get(), SIGTERM);
}

Status ProcessShard::start(const std::string& worker_path, const MultiplexerOptions& mux, bool core_dumps) {
  uv_pipe_init(loop_, pipe_.get(), 0);
  pipe_.mark_live();
  pipe_.get()->data = this;

  std::string slice_arg = "--tpm12-slice-us=" + std::to_string(mux.tpm12_slice.count());
  std::string linger_arg = "--tpm12-linger-us=" + std::to_string(mux.tpm12_linger.count());
  std::string cache_arg = std::string("--tpm12-selftest-key-cache=") + (mux.tpm12_selftest_key_cache ? "1" : "0");
  std::string name_arg = "--name=" + name_;
  std::string dumps_arg = std::string("--core-dumps=") + (core_dumps ? "1" : "0");
  std::vector<char*> args = {const_cast<char*>(worker_path.c_str()), slice_arg.data(), linger_arg.data(),
                             cache_arg.data(), name_arg.data(), dumps_arg.data(), nullptr};

  // fd 0 is the job pipe (a socketpair); stderr is shared so that worker
  // log lines reach the daemon's log.
  uv_stdio_container_t stdio[3];
  stdio[0].flags = static_cast<uv_stdio_flags>(UV_CREATE_PIPE | UV_READABLE_PIPE | UV_WRITABLE_PIPE);
  stdio[0].data.stream = pipe_.stream();
  stdio[1].flags = UV_IGNORE;
  stdio[2].flags = UV_INHERIT_FD;
  stdio[2].data.fd = 2;

  uv_process_options_t options{};
  options.file = worker_path.c_str();
  options.args = args.data();
  options.stdio = stdio;
  options.stdio_count = 3;
  options.exit_cb = [](uv_process_t* p, int64_t status, int signal) {
    auto* self = static_cast<ProcessShard*>(p->data);
    if (self == nullptr) return;
    self->fail("worker exited (status " + std::to_string(status) + ", signal " + std::to_string(signal) + ")");
  };
  const int rc = uv_spawn(loop_, process_.get(), &options);
  if (rc != 0) {
    return make_error(ErrorCode::kUnavailable,
                      "cannot start engine worker '" + worker_path + "': " + uv_strerror(rc));
  }
  process_.mark_live();
  process_.get()->data = this;
  pid_ = process_.get()->pid;
  alive_ = true;

  uv_read_start(
      pipe_.stream(),
      [](uv_handle_t* h, size_t suggested, uv_buf_t* buf) {
        auto* self = static_cast<ProcessShard*>(h->data);
        const std::size_t used = self->inbound_.size();
        self->inbound_.resize(used + suggested);
        *buf = uv_buf_init(reinterpret_cast<char*>(self->inbound_.data() + used), static_cast<unsigned>(suggested));
      },
      [](uv_stream_t* s, ssize_t nread, const uv_buf_t* buf) {
        static_cast<ProcessShard*>(s->data)->on_read(nread, buf);
      });
  return Status::success();
}

void ProcessShard::submit(Job job) {
  if (!alive_) {
    Completion done;
    done.id = job.id;
    done.instance = job.instance;
    done.kind = job.kind;
    done.error = ErrorCode::kUnavailable;
    done.message = "engine worker " + name_ + " is not running";
    sink_(std::move(done));
    return;
  }
  if (int rc = write_owned(pipe_.stream(), frame(encode_job(job))); rc != 0) {
    fail(std::string("write to worker failed: ") + uv_strerror(rc));
  }
}

void ProcessShard::on_read(ssize_t nread, const uv_buf_t* buf) {
  // The alloc callback grew inbound_ by the buffer size; keep what was read.
  const std::size_t unused = buf->len - (nread > 0 ? static_cast<std::size_t>(nread) : 0);
  inbound_.resize(inbound_.size() - unused);
  if (nread < 0) {
    fail(std::string("worker pipe closed: ") + uv_strerror(static_cast<int>(nread)));
    return;
  }
  std::size_t consumed = 0;
  for (;;) {
    auto view = std::span<const std::uint8_t>(inbound_).subspan(consumed);
    auto length = complete_frame_length(view);
    if (!length) {
      fail("bad frame from worker: " + length.error().message);
      return;
    }
    if (*length == 0) break;
    auto completion = decode_completion(view.subspan(4, *length));
    consumed += 4 + *length;
    if (!completion) {
      fail("bad completion from worker: " + completion.error().message);
      return;
    }
    sink_(std::move(*completion));
    if (!alive_) return;
  }
  inbound_.erase(inbound_.begin(), inbound_.begin() + static_cast<std::ptrdiff_t>(consumed));
}

void ProcessShard::fail(const std::string& why) {
  if (!alive_) return;
  alive_ = false;
  if (pipe_.live()) uv_read_stop(pipe_.stream());
  if (pid_ > 0) uv_process_kill(process_.get(), SIGKILL);
  on_exit_(*this, why);
}

}  // namespace vtpm::engine
