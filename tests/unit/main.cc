// Test runner for the unit tests. Like vtpmd (src/daemon/main.cc), it
// ignores SIGPIPE: the engine tests kill worker processes, and libuv's
// write to a dead worker's socket must fail with EPIPE, not kill us.
#define DOCTEST_CONFIG_IMPLEMENT
#include <doctest/doctest.h>

#include <csignal>

int main(int argc, char** argv) {
  std::signal(SIGPIPE, SIG_IGN);
  return doctest::Context(argc, argv).run();
}
