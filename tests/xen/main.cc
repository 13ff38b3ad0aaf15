// Test runner for the Xen backend tests (the simulated platform, the
// xen-tpmfront model and vtpmd's serving stack in one process).
#define DOCTEST_CONFIG_IMPLEMENT
#include <doctest/doctest.h>

#include <csignal>

int main(int argc, char** argv) {
  std::signal(SIGPIPE, SIG_IGN);
  return doctest::Context(argc, argv).run();
}
