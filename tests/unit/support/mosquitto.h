#pragma once

// A real Mosquitto broker on a free loopback port for unit tests (started and stopped by pid).
// Shared by the agent and aggregator unit tests.

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <fstream>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include <catch2/catch.hpp>

#include "support/temp_dir.h"

namespace outpost::testing {

using namespace std::chrono_literals;


// Owns a child process: SIGTERM, then SIGKILL if it has not exited after a grace period, on
// destruction. The child also gets SIGTERM if this process dies without unwinding (crash, ctest
// timeout): PR_SET_PDEATHSIG.
class ChildProcess {
 public:
  ChildProcess() = default;
  ~ChildProcess() { stop(); }
  ChildProcess(const ChildProcess&) = delete;
  ChildProcess& operator=(const ChildProcess&) = delete;

  // Starts `exe args...` with stdin from /dev/null and stdout+stderr appended to `log`.
  void spawn(const std::string& exe, const std::vector<std::string>& args, const std::string& log) {
    stop();
    std::vector<std::string> storage;
    storage.push_back(exe);
    storage.insert(storage.end(), args.begin(), args.end());
    std::vector<char*> argv;
    for (auto& a : storage) argv.push_back(a.data());
    argv.push_back(nullptr);
    const int log_fd = ::open(log.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
    if (log_fd < 0) FAIL("open " << log << ": " << std::strerror(errno));
    const int null_fd = ::open("/dev/null", O_RDONLY | O_CLOEXEC);
    if (null_fd < 0) {
      ::close(log_fd);
      FAIL("open /dev/null: " << std::strerror(errno));
    }
    const pid_t parent = ::getpid();
    const pid_t pid = ::fork();
    if (pid == 0) {
      // Child: async-signal-safe calls only.
      ::prctl(PR_SET_PDEATHSIG, SIGTERM);
      if (::getppid() != parent) ::_exit(127);
      sigset_t none;
      sigemptyset(&none);
      ::sigprocmask(SIG_SETMASK, &none, nullptr);
      ::dup2(null_fd, 0);
      ::dup2(log_fd, 1);
      ::dup2(log_fd, 2);
      ::close_range(3, ~0U, 0);  // Paho's sockets must not leak into the broker
      ::execv(argv[0], argv.data());
      ::_exit(127);
    }
    const int fork_errno = errno;
    ::close(log_fd);
    ::close(null_fd);
    if (pid < 0) FAIL("fork: " << std::strerror(fork_errno));
    pid_ = pid;
  }

  // True while the child has not exited (reaps it if it has).
  bool running() {
    if (pid_ <= 0) return false;
    int status = 0;
    const pid_t r = ::waitpid(pid_, &status, WNOHANG);
    if (r == pid_ || (r < 0 && errno == ECHILD)) {
      pid_ = -1;
      return false;
    }
    return true;
  }

  void stop() {
    if (pid_ <= 0) return;
    ::kill(pid_, SIGTERM);
    const auto deadline = std::chrono::steady_clock::now() + 5s;
    while (std::chrono::steady_clock::now() < deadline) {
      if (!running()) return;
      std::this_thread::sleep_for(10ms);
    }
    ::kill(pid_, SIGKILL);
    while (::waitpid(pid_, nullptr, 0) < 0 && errno == EINTR) {
    }
    pid_ = -1;
  }

  pid_t pid() const { return pid_; }

 private:
  pid_t pid_ = -1;
};

inline std::string findMosquitto() {
  if (const char* env = std::getenv("OUTPOST_MOSQUITTO"); env && *env) return env;
  std::string dirs = std::getenv("PATH") ? std::getenv("PATH") : "";
  dirs += ":/usr/sbin:/usr/local/sbin:/sbin";  // Debian installs the broker in sbin
  std::istringstream in(dirs);
  for (std::string dir; std::getline(in, dir, ':');) {
    if (dir.empty()) continue;
    const std::string exe = dir + "/mosquitto";
    if (::access(exe.c_str(), X_OK) == 0) return exe;
  }
  FAIL("mosquitto not found in PATH or /usr/sbin (set OUTPOST_MOSQUITTO)");
  return {};
}

// A loopback port nothing listens on right now (the kernel's choice for an ephemeral bind).
inline int freeLoopbackPort() {
  const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) FAIL("socket: " << std::strerror(errno));
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof a;
  if (::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0 ||
      ::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len) != 0) {
    const int e = errno;
    ::close(fd);
    FAIL("bind 127.0.0.1:0: " << std::strerror(e));
  }
  ::close(fd);
  return ntohs(a.sin_port);
}

inline bool portAccepts(int port) {
  const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return false;
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  a.sin_port = htons(static_cast<uint16_t>(port));
  const bool ok = ::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0;
  ::close(fd);
  return ok;
}

inline std::string readFile(const std::string& path) {
  std::ifstream in(path);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// A real Mosquitto on a free loopback port for the lifetime of the object. Member order matters:
// the process is stopped (destructor of proc_) before its directory is removed.
class MosquittoBroker {
 public:
  MosquittoBroker() {
    const std::string exe = findMosquitto();
    const std::string conf = dir_.file("mosquitto.conf");
    const std::string log = dir_.file("mosquitto.log");
    // The free port can be taken between our probe and the broker's bind: then the broker exits
    // and we try another port.
    for (int attempt = 0; attempt < 5; ++attempt) {
      port_ = freeLoopbackPort();
      {
        std::ofstream out(conf, std::ios::trunc);
        out << "listener " << port_ << " 127.0.0.1\n"
            << "allow_anonymous true\n"
            << "persistence false\n"
            << "max_queued_messages 100000\n"
            << "max_inflight_messages 0\n"
            << "log_dest stderr\n"
            << "log_type error\n"
            << "log_type warning\n";
        // As root, Mosquitto would switch to the `mosquitto` user, which clears the parent-death
        // signal: stay root so a crashed test still takes its broker down.
        if (::geteuid() == 0) out << "user root\n";
        if (!out) FAIL("cannot write " << conf);
      }
      proc_.spawn(exe, {"-c", conf}, log);
      const auto deadline = std::chrono::steady_clock::now() + 15s;
      while (std::chrono::steady_clock::now() < deadline && proc_.running()) {
        if (portAccepts(port_)) {
          if (proc_.running()) return;
          break;
        }
        std::this_thread::sleep_for(20ms);
      }
      if (proc_.running()) {
        FAIL("mosquitto (pid " << proc_.pid() << ") does not accept on 127.0.0.1:" << port_
                               << " after 15 s; log:\n"
                               << readFile(log));
      }
      WARN("mosquitto exited at startup on port " << port_ << "; log:\n" << readFile(log));
    }
    FAIL("mosquitto did not start after 5 attempts");
  }

  std::string uri() const { return "tcp://127.0.0.1:" + std::to_string(port_); }
  void stop() { proc_.stop(); }
  // Starts the broker again on the same port (after stop()); false if it does not accept within
  // 15 s (the port may have been taken meanwhile).
  bool restart() {
    proc_.stop();
    proc_.spawn(findMosquitto(), {"-c", dir_.file("mosquitto.conf")}, dir_.file("mosquitto.log"));
    const auto deadline = std::chrono::steady_clock::now() + 15s;
    while (std::chrono::steady_clock::now() < deadline && proc_.running()) {
      if (portAccepts(port_)) return proc_.running();
      std::this_thread::sleep_for(20ms);
    }
    return false;
  }

 private:
  TempDir dir_{"outpost-mqtt-test"};
  ChildProcess proc_;
  int port_ = 0;
};

// Client ids unique across test cases and concurrent test processes.
inline std::string clientId(const std::string& role) {
  static std::atomic<int> n{0};
  return "outpost-test-" + role + "-" + std::to_string(::getpid()) + "-" + std::to_string(++n);
}

}  // namespace outpost::testing
