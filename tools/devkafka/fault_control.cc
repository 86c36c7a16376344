#include "fault_control.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <sstream>
#include <stdexcept>
#include <vector>

#include <librdkafka/rdkafka.h>
// rdkafka_mock.h must come after rdkafka.h.
#include <librdkafka/rdkafka_mock.h>
#include <spdlog/spdlog.h>

#include "dev_kafka_broker.h"

namespace outpost::aggregator {

namespace {

constexpr size_t kMaxLine = 4096;
constexpr int kIdleMs = 30000;
constexpr long kMaxErrorCount = 100000;
constexpr long kMaxRttMs = 600000;

std::string upper(std::string s) {
  std::transform(s.begin(), s.end(), s.begin(),
                 [](unsigned char c) { return static_cast<char>(std::toupper(c)); });
  return s;
}

bool parseLong(const std::string& text, long lo, long hi, long& out) {
  if (text.empty() || text.size() > 12) return false;
  size_t i = text[0] == '-' ? 1 : 0;
  if (i == text.size()) return false;
  for (size_t j = i; j < text.size(); ++j) {
    if (text[j] < '0' || text[j] > '9') return false;
  }
  const long v = std::stol(text);
  if (v < lo || v > hi) return false;
  out = v;
  return true;
}

// Kafka protocol request types by name (the ones a producer or consumer sends), or a number.
bool parseApiKey(const std::string& text, int16_t& out) {
  static const std::pair<const char*, int16_t> kKeys[] = {
      {"PRODUCE", 0},          {"FETCH", 1},        {"LISTOFFSETS", 2},     {"METADATA", 3},
      {"OFFSETCOMMIT", 8},     {"OFFSETFETCH", 9},  {"FINDCOORDINATOR", 10}, {"JOINGROUP", 11},
      {"HEARTBEAT", 12},       {"LEAVEGROUP", 13},  {"SYNCGROUP", 14},      {"APIVERSIONS", 18},
      {"INITPRODUCERID", 22},
  };
  const std::string u = upper(text);
  for (const auto& [name, key] : kKeys) {
    if (u == name) {
      out = key;
      return true;
    }
  }
  long v = 0;
  if (!parseLong(text, 0, 100, v)) return false;
  out = static_cast<int16_t>(v);
  return true;
}

// A Kafka error code by librdkafka's name (NOT_LEADER_FOR_PARTITION, _TRANSPORT, ...; with or
// without the RD_KAFKA_RESP_ERR_ prefix; NOT_LEADER_OR_FOLLOWER is Kafka's newer name for 6), or a
// number.
bool parseErrorCode(const std::string& text, rd_kafka_resp_err_t& out) {
  std::string u = upper(text);
  const std::string prefix = "RD_KAFKA_RESP_ERR_";
  if (u.rfind(prefix, 0) == 0) u = u.substr(prefix.size());
  if (u == "NOT_LEADER_OR_FOLLOWER") u = "NOT_LEADER_FOR_PARTITION";
  const rd_kafka_err_desc* descs = nullptr;
  size_t n = 0;
  rd_kafka_get_err_descs(&descs, &n);
  for (size_t i = 0; i < n; ++i) {
    if (descs[i].name != nullptr && u == descs[i].name) {
      out = descs[i].code;
      return true;
    }
  }
  long v = 0;
  if (!parseLong(text, -199, 200, v)) return false;
  out = static_cast<rd_kafka_resp_err_t>(v);
  return true;
}

std::string errorName(rd_kafka_resp_err_t err) { return rd_kafka_err2name(err); }

constexpr const char* kHelp =
    "ok commands: push-errors API ERROR [COUNT] | push-broker-errors BROKER API ERROR [COUNT] "
    "[RTT_MS] | pending-errors BROKER API | clear-errors API | broker-down BROKER|all | "
    "broker-up BROKER|all | rtt BROKER|all MS | leader TOPIC PARTITION BROKER|none | brokers | "
    "help";

}  // namespace

std::string DevKafkaBroker::control(const std::string& line) {
  std::istringstream in(line);
  std::vector<std::string> w;
  for (std::string t; in >> t;) w.push_back(t);
  if (w.empty()) return "error: empty command (try 'help')";
  const std::string cmd = w[0];
  auto usage = [&](const char* u) { return "error: usage: " + std::string(u); };
  auto badBroker = [&](const std::string& t) {
    return "error: broker '" + t + "': allowed are 1.." + std::to_string(brokers_) +
           (cmd == "broker-down" || cmd == "broker-up" || cmd == "rtt" ? " or all" : "");
  };
  // BROKER argument: 1..brokers_, or "all" (-1) where allowed.
  auto broker = [&](const std::string& t, bool allowAll, int32_t& id) {
    if (allowAll && t == "all") {
      id = -1;
      return true;
    }
    long v = 0;
    if (!parseLong(t, 1, brokers_, v)) return false;
    id = static_cast<int32_t>(v);
    return true;
  };
  auto result = [&](rd_kafka_resp_err_t err, const std::string& what) {
    if (err != RD_KAFKA_RESP_ERR_NO_ERROR) return "error: " + what + ": " + rd_kafka_err2str(err);
    spdlog::warn("fault injection: {}", what);
    return "ok " + what;
  };

  if (cmd == "help") return kHelp;
  if (cmd == "brokers") {
    std::string ids = "ok";
    for (int i = 1; i <= brokers_; ++i) ids += " " + std::to_string(i);
    return ids;
  }
  if (cmd == "push-errors") {
    int16_t api = 0;
    rd_kafka_resp_err_t err{};
    long count = 1;
    if (w.size() < 3 || w.size() > 4) return usage("push-errors API ERROR [COUNT]");
    if (!parseApiKey(w[1], api)) return "error: API '" + w[1] + "': a request type name or 0..100";
    if (!parseErrorCode(w[2], err)) {
      return "error: ERROR '" + w[2] + "': a Kafka error name or code";
    }
    if (w.size() == 4 && !parseLong(w[3], 1, kMaxErrorCount, count)) {
      return "error: COUNT '" + w[3] + "': allowed is 1.." + std::to_string(kMaxErrorCount);
    }
    const std::vector<rd_kafka_resp_err_t> errs(static_cast<size_t>(count), err);
    rd_kafka_mock_push_request_errors_array(mcluster_, api, errs.size(), errs.data());
    return result(RD_KAFKA_RESP_ERR_NO_ERROR, "the next " + std::to_string(count) +
                                                  " requests of API " + std::to_string(api) +
                                                  " fail with " + errorName(err));
  }
  if (cmd == "push-broker-errors") {
    int32_t id = 0;
    int16_t api = 0;
    rd_kafka_resp_err_t err{};
    long count = 1;
    long rtt = 0;
    if (w.size() < 4 || w.size() > 6) {
      return usage("push-broker-errors BROKER API ERROR [COUNT] [RTT_MS]");
    }
    if (!broker(w[1], false, id)) return badBroker(w[1]);
    if (!parseApiKey(w[2], api)) return "error: API '" + w[2] + "': a request type name or 0..100";
    if (!parseErrorCode(w[3], err)) {
      return "error: ERROR '" + w[3] + "': a Kafka error name or code";
    }
    if (w.size() >= 5 && !parseLong(w[4], 1, kMaxErrorCount, count)) {
      return "error: COUNT '" + w[4] + "': allowed is 1.." + std::to_string(kMaxErrorCount);
    }
    if (w.size() == 6 && !parseLong(w[5], 0, kMaxRttMs, rtt)) {
      return "error: RTT_MS '" + w[5] + "': allowed is 0.." + std::to_string(kMaxRttMs);
    }
    for (long i = 0; i < count; ++i) {
      const rd_kafka_resp_err_t perr = rd_kafka_mock_broker_push_request_error_rtts(
          mcluster_, id, api, 1, err, static_cast<int>(rtt));
      if (perr != RD_KAFKA_RESP_ERR_NO_ERROR) return result(perr, "push-broker-errors");
    }
    return result(RD_KAFKA_RESP_ERR_NO_ERROR,
                  "broker " + std::to_string(id) + ": the next " + std::to_string(count) +
                      " requests of API " + std::to_string(api) + " fail with " + errorName(err) +
                      " after " + std::to_string(rtt) + " ms");
  }
  if (cmd == "pending-errors") {
    int32_t id = 0;
    int16_t api = 0;
    if (w.size() != 3) return usage("pending-errors BROKER API");
    if (!broker(w[1], false, id)) return badBroker(w[1]);
    if (!parseApiKey(w[2], api)) return "error: API '" + w[2] + "': a request type name or 0..100";
    size_t n = 0;
    const rd_kafka_resp_err_t err = rd_kafka_mock_broker_error_stack_cnt(mcluster_, id, api, &n);
    if (err != RD_KAFKA_RESP_ERR_NO_ERROR) {
      return "error: pending-errors: " + std::string(rd_kafka_err2str(err));
    }
    return "ok " + std::to_string(n);
  }
  if (cmd == "clear-errors") {
    int16_t api = 0;
    if (w.size() != 2) return usage("clear-errors API");
    if (!parseApiKey(w[1], api)) return "error: API '" + w[1] + "': a request type name or 0..100";
    rd_kafka_mock_clear_request_errors(mcluster_, api);
    return result(RD_KAFKA_RESP_ERR_NO_ERROR,
                  "cluster errors of API " + std::to_string(api) + " cleared");
  }
  if (cmd == "broker-down" || cmd == "broker-up") {
    int32_t id = 0;
    if (w.size() != 2) return usage((cmd + " BROKER|all").c_str());
    if (!broker(w[1], true, id)) return badBroker(w[1]);
    const bool down = cmd == "broker-down";
    const rd_kafka_resp_err_t err = down ? rd_kafka_mock_broker_set_down(mcluster_, id)
                                         : rd_kafka_mock_broker_set_up(mcluster_, id);
    return result(err, "broker " + w[1] + (down ? " down" : " up"));
  }
  if (cmd == "rtt") {
    int32_t id = 0;
    long ms = 0;
    if (w.size() != 3) return usage("rtt BROKER|all MS");
    if (!broker(w[1], true, id)) return badBroker(w[1]);
    if (!parseLong(w[2], 0, kMaxRttMs, ms)) {
      return "error: MS '" + w[2] + "': allowed is 0.." + std::to_string(kMaxRttMs);
    }
    return result(rd_kafka_mock_broker_set_rtt(mcluster_, id, static_cast<int>(ms)),
                  "broker " + w[1] + " round-trip time " + std::to_string(ms) + " ms");
  }
  if (cmd == "leader") {
    int32_t id = -1;
    long partition = 0;
    if (w.size() != 4) return usage("leader TOPIC PARTITION BROKER|none");
    if (!parseLong(w[2], 0, kMaxPartitions - 1, partition)) {
      return "error: PARTITION '" + w[2] + "': allowed is 0.." + std::to_string(kMaxPartitions - 1);
    }
    if (w[3] != "none" && !broker(w[3], false, id)) return badBroker(w[3]) + " or none";
    if (topics_.count(w[1]) == 0) {
      return "error: topic '" + w[1] + "' was not pre-created (--topic)";
    }
    if (partition >= partitions_) {
      return "error: PARTITION '" + w[2] + "': " + w[1] + " has partitions 0.." +
             std::to_string(partitions_ - 1);
    }
    return result(rd_kafka_mock_partition_set_leader(mcluster_, w[1].c_str(),
                                                     static_cast<int32_t>(partition), id),
                  w[1] + " partition " + w[2] + " leader " + w[3]);
  }
  return "error: unknown command '" + cmd + "' (try 'help')";
}

ControlServer::ControlServer(const std::string& host, uint16_t port, Handler handler)
    : handler_(std::move(handler)) {
  sockaddr_storage addr{};
  socklen_t len = 0;
  auto* v4 = reinterpret_cast<sockaddr_in*>(&addr);
  auto* v6 = reinterpret_cast<sockaddr_in6*>(&addr);
  const std::string h = host == "localhost" ? "127.0.0.1" : host;
  if (::inet_pton(AF_INET, h.c_str(), &v4->sin_addr) == 1 &&
      (ntohl(v4->sin_addr.s_addr) >> 24) == 127) {
    v4->sin_family = AF_INET;
    v4->sin_port = htons(port);
    len = sizeof(sockaddr_in);
  } else if (::inet_pton(AF_INET6, h.c_str(), &v6->sin6_addr) == 1 &&
             IN6_IS_ADDR_LOOPBACK(&v6->sin6_addr)) {
    v6->sin6_family = AF_INET6;
    v6->sin6_port = htons(port);
    len = sizeof(sockaddr_in6);
  } else {
    throw std::invalid_argument("control address '" + host +
                                "': allowed is a loopback address (127.x.x.x, ::1 or localhost)");
  }
  listenFd_ = ::socket(addr.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (listenFd_ < 0) {
    throw std::runtime_error(std::string("control socket: ") + std::strerror(errno));
  }
  int one = 1;
  ::setsockopt(listenFd_, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
  if (::bind(listenFd_, reinterpret_cast<sockaddr*>(&addr), len) != 0 ||
      ::listen(listenFd_, 8) != 0) {
    const std::string why = std::strerror(errno);
    ::close(listenFd_);
    throw std::runtime_error("cannot listen for control commands on " + host + ":" +
                             std::to_string(port) + ": " + why);
  }
  sockaddr_storage bound{};
  socklen_t boundLen = sizeof(bound);
  ::getsockname(listenFd_, reinterpret_cast<sockaddr*>(&bound), &boundLen);
  boundPort_ = bound.ss_family == AF_INET6
                   ? ntohs(reinterpret_cast<sockaddr_in6*>(&bound)->sin6_port)
                   : ntohs(reinterpret_cast<sockaddr_in*>(&bound)->sin_port);
  wakeFd_ = ::eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
  if (wakeFd_ < 0) {
    ::close(listenFd_);
    throw std::runtime_error(std::string("eventfd: ") + std::strerror(errno));
  }
  thread_ = std::thread([this] { run(); });
}

ControlServer::~ControlServer() { stop(); }

void ControlServer::stop() {
  if (thread_.joinable()) {
    stopping_.store(true);
    const uint64_t one = 1;
    [[maybe_unused]] ssize_t n = ::write(wakeFd_, &one, sizeof(one));
    thread_.join();
  }
  if (listenFd_ >= 0) ::close(listenFd_);
  if (wakeFd_ >= 0) ::close(wakeFd_);
  listenFd_ = wakeFd_ = -1;
}

void ControlServer::run() {
  while (!stopping_.load()) {
    pollfd fds[2] = {{wakeFd_, POLLIN, 0}, {listenFd_, POLLIN, 0}};
    if (::poll(fds, 2, -1) < 0) {
      if (errno == EINTR) continue;
      spdlog::error("devkafka control: poll failed: {}", std::strerror(errno));
      return;
    }
    if (fds[0].revents != 0) return;
    if (fds[1].revents & POLLIN) {
      const int fd = ::accept4(listenFd_, nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
      if (fd < 0) continue;
      serve(fd);
      ::close(fd);
    }
  }
}

void ControlServer::serve(int fd) {
  std::string buf;
  auto idleUntil = std::chrono::steady_clock::now() + std::chrono::milliseconds(kIdleMs);
  while (!stopping_.load()) {
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
                          idleUntil - std::chrono::steady_clock::now())
                          .count();
    if (left <= 0) return;
    pollfd fds[2] = {{wakeFd_, POLLIN, 0}, {fd, POLLIN, 0}};
    if (::poll(fds, 2, static_cast<int>(left)) < 0) {
      if (errno == EINTR) continue;
      return;
    }
    if (fds[0].revents != 0) return;
    if (fds[1].revents == 0) continue;
    char chunk[1024];
    const ssize_t n = ::recv(fd, chunk, sizeof(chunk), 0);
    if (n == 0) return;
    if (n < 0) {
      if (errno == EAGAIN || errno == EINTR) continue;
      return;
    }
    buf.append(chunk, static_cast<size_t>(n));
    idleUntil = std::chrono::steady_clock::now() + std::chrono::milliseconds(kIdleMs);
    for (size_t nl; (nl = buf.find('\n')) != std::string::npos;) {
      std::string line = buf.substr(0, nl);
      buf.erase(0, nl + 1);
      if (!line.empty() && line.back() == '\r') line.pop_back();
      std::string reply = handler_(line) + "\n";
      // Replies are short; a blocked peer gets what fits and is dropped.
      size_t off = 0;
      while (off < reply.size()) {
        const ssize_t s = ::send(fd, reply.data() + off, reply.size() - off, MSG_NOSIGNAL);
        if (s <= 0) return;
        off += static_cast<size_t>(s);
      }
    }
    if (buf.size() > kMaxLine) {
      const char* msg = "error: line longer than 4096 bytes\n";
      [[maybe_unused]] ssize_t s = ::send(fd, msg, std::strlen(msg), MSG_NOSIGNAL);
      return;
    }
  }
}

}  // namespace outpost::aggregator
