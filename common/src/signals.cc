#include "outpost/common/signals.h"

#include <csignal>
#include <condition_variable>
#include <mutex>
#include <thread>

#include <spdlog/spdlog.h>

#include "outpost/common/thread_name.h"

namespace outpost::signals {
namespace {

std::atomic<bool> g_stop{false};
std::atomic<bool> g_reload{false};
std::mutex g_mu;
std::condition_variable g_cv;

}  // namespace

void requestStop() {
  {
    std::lock_guard lock(g_mu);
    g_stop.store(true);
  }
  g_cv.notify_all();
}

namespace {
std::atomic<bool> g_failed{false};
}  // namespace

void requestFailureStop() {
  g_failed.store(true);
  requestStop();
}

bool failedStop() { return g_failed.load(); }

void installSignalHandlers() {
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGTERM);
  sigaddset(&set, SIGINT);
  sigaddset(&set, SIGHUP);
  pthread_sigmask(SIG_BLOCK, &set, nullptr);
  std::signal(SIGPIPE, SIG_IGN);
  std::thread([set] {
    setThreadName("op-signals");
    for (;;) {
      int sig = 0;
      if (sigwait(&set, &sig) != 0) continue;
      if (sig == SIGHUP) {
        spdlog::info("SIGHUP received");
        g_reload.store(true);
        g_cv.notify_all();
      } else {
        spdlog::info("{} received: stopping", sig == SIGTERM ? "SIGTERM" : "SIGINT");
        requestStop();
      }
    }
  }).detach();
}

bool stopRequested() { return g_stop.load(); }

bool takeReloadRequest() { return g_reload.exchange(false); }

bool waitForStop(std::chrono::milliseconds d) {
  std::unique_lock lock(g_mu);
  return g_cv.wait_for(lock, d, [] { return g_stop.load(); });
}

}  // namespace outpost::signals
