// vtpmd-engine: a worker process that owns one libtpms for the daemon.
// fd 0 is a socketpair to the daemon: job frames in, completion frames out.
// A reader thread feeds the engine loop; the main thread runs libtpms and
// writes completions. EOF on fd 0 (the daemon went away) ends the worker.
#include <sys/prctl.h>
#include <unistd.h>

#include <cerrno>
#include <csignal>
#include <cstdio>
#include <cstring>
#include <string>
#include <string_view>
#include <thread>

#include "src/engine/engine_loop.h"

namespace {

constexpr int kPipeFd = 0;

bool write_all(int fd, const std::vector<std::uint8_t>& bytes) {
  std::size_t done = 0;
  while (done < bytes.size()) {
    const ssize_t n = ::write(fd, bytes.data() + done, bytes.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return false;
    done += static_cast<std::size_t>(n);
  }
  return true;
}

bool read_all(int fd, std::uint8_t* out, std::size_t length) {
  std::size_t done = 0;
  while (done < length) {
    const ssize_t n = ::read(fd, out + done, length - done);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return false;
    done += static_cast<std::size_t>(n);
  }
  return true;
}

void read_jobs(vtpm::engine::EngineLoop& engine, const std::string& name) {
  std::vector<std::uint8_t> payload;
  for (;;) {
    std::uint8_t length_bytes[4];
    if (!read_all(kPipeFd, length_bytes, sizeof length_bytes)) break;
    const std::uint32_t length = vtpm::tpm::read_u32(length_bytes, 0);
    if (length == 0 || length > vtpm::engine::kMaxFrame) {
      std::fprintf(stderr, "vtpmd-engine[%s]: bad frame length %u, exiting\n", name.c_str(), length);
      break;
    }
    payload.resize(length);
    if (!read_all(kPipeFd, payload.data(), length)) break;
    auto job = vtpm::engine::decode_job(payload);
    if (!job) {
      std::fprintf(stderr, "vtpmd-engine[%s]: %s, exiting\n", name.c_str(), job.error().message.c_str());
      break;
    }
    engine.submit(std::move(*job));
  }
  engine.stop();
}

}  // namespace

int main(int argc, char** argv) {
  vtpm::engine::MultiplexerOptions options;
  std::string name = "worker";
  bool core_dumps = false;
  for (int i = 1; i < argc; ++i) {
    std::string_view arg(argv[i]);
    if (arg.starts_with("--tpm12-slice-us=")) {
      options.tpm12_slice = std::chrono::microseconds(std::stoll(std::string(arg.substr(17))));
    } else if (arg.starts_with("--tpm12-linger-us=")) {
      options.tpm12_linger = std::chrono::microseconds(std::stoll(std::string(arg.substr(18))));
    } else if (arg.starts_with("--tpm12-selftest-key-cache=")) {
      options.tpm12_selftest_key_cache = arg.substr(27) == "1";
    } else if (arg.starts_with("--core-dumps=")) {
      core_dumps = arg.substr(13) == "1";
    } else if (arg.starts_with("--name=")) {
      name = std::string(arg.substr(7));
    } else {
      std::fprintf(stderr, "vtpmd-engine: unknown argument %s\n", argv[i]);
      return 2;
    }
  }
  // Die with the daemon even if it is killed before it can close the pipe.
  prctl(PR_SET_PDEATHSIG, SIGKILL);
  std::signal(SIGPIPE, SIG_IGN);
  std::signal(SIGTERM, SIG_DFL);
  // The worker holds its instances' TPM state (seeds, keys) in libtpms's
  // memory, which cannot be kept out of a core: no cores unless the
  // operator asked for them (vtpmd --allow-core-dumps). exec made us
  // dumpable again, so this is the worker's own decision to make.
  prctl(PR_SET_DUMPABLE, core_dumps ? 1 : 0);

  bool pipe_broken = false;
  vtpm::engine::EngineLoop engine(options, [&](vtpm::engine::Completion&& done) {
    if (!pipe_broken && !write_all(kPipeFd, vtpm::engine::frame(vtpm::engine::encode_completion(done)))) {
      pipe_broken = true;
    }
  });
  std::thread reader([&] { read_jobs(engine, name); });
  engine.run();
  reader.join();
  return 0;
}
