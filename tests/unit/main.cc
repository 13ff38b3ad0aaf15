// Test runner for the unit tests. Like vtpmd (src/daemon/main.cc), it
// ignores SIGPIPE: the engine tests kill worker processes, and libuv's
// write to a dead worker's socket must fail with EPIPE, not kill us.
// tpm2-tss would log every TPM error the TPM-root tests provoke on purpose.
#define DOCTEST_CONFIG_IMPLEMENT
#include <doctest/doctest.h>

#include <csignal>
#include <cstdlib>

int main(int argc, char** argv) {
  std::signal(SIGPIPE, SIG_IGN);
  ::setenv("TSS2_LOG", "all+none", 0);
  return doctest::Context(argc, argv).run();
}
