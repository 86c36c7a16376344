#include "dev_kafka_broker.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <list>
#include <set>
#include <stdexcept>
#include <thread>
#include <utility>

#include <librdkafka/rdkafka.h>
// rdkafka_mock.h must come after rdkafka.h.
#include <librdkafka/rdkafka_mock.h>
#include <spdlog/spdlog.h>

#include "fault_control.h"

namespace outpost::aggregator {

namespace {

std::string errnoText(int err) { return std::strerror(err); }

std::string formatHostPort(const std::string& host, uint16_t port) {
  if (host.find(':') != std::string::npos) return "[" + host + "]:" + std::to_string(port);
  return host + ":" + std::to_string(port);
}

// Kafka's rule for topic names: 1..249 characters of [a-zA-Z0-9._-], not "." or "..".
bool validTopicName(const std::string& name) {
  if (name.empty() || name.size() > 249 || name == "." || name == "..") return false;
  return std::all_of(name.begin(), name.end(), [](char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' ||
           c == '_' || c == '-';
  });
}

// Routes librdkafka's own log lines (mock cluster included) into spdlog. Called from librdkafka
// threads; spdlog's default logger is thread-safe.
void rdkafkaLog(const rd_kafka_t* /*rk*/, int level, const char* fac, const char* buf) {
  if (level <= 3) {
    spdlog::error("librdkafka {}: {}", fac, buf);
  } else if (level == 4) {
    spdlog::warn("librdkafka {}: {}", fac, buf);
  } else {
    spdlog::debug("librdkafka {}: {}", fac, buf);
  }
}

// Owns an fd; closes it on destruction.
class Fd {
 public:
  Fd() = default;
  explicit Fd(int fd) : fd_(fd) {}
  Fd(Fd&& other) noexcept : fd_(std::exchange(other.fd_, -1)) {}
  Fd& operator=(Fd&& other) noexcept {
    if (this != &other) {
      reset();
      fd_ = std::exchange(other.fd_, -1);
    }
    return *this;
  }
  Fd(const Fd&) = delete;
  Fd& operator=(const Fd&) = delete;
  ~Fd() { reset(); }
  int get() const { return fd_; }
  void reset() {
    if (fd_ >= 0) ::close(fd_);
    fd_ = -1;
  }

 private:
  int fd_ = -1;
};

}  // namespace

bool parseHostPort(const std::string& text, std::string& host, uint16_t& port) {
  std::string portText;
  if (!text.empty() && text.front() == '[') {
    const auto close = text.find(']');
    if (close == std::string::npos || close + 1 >= text.size() || text[close + 1] != ':') {
      return false;
    }
    host = text.substr(1, close - 1);
    portText = text.substr(close + 2);
  } else {
    const auto colon = text.rfind(':');
    if (colon == std::string::npos) return false;
    host = text.substr(0, colon);
    portText = text.substr(colon + 1);
    if (host.find(':') != std::string::npos) return false;  // bare IPv6 needs brackets
  }
  if (host.empty() || portText.empty() || portText.size() > 5) return false;
  if (!std::all_of(portText.begin(), portText.end(), [](char c) { return c >= '0' && c <= '9'; })) {
    return false;
  }
  const unsigned long value = std::stoul(portText);
  if (value > 65535) return false;
  port = static_cast<uint16_t>(value);
  return true;
}

// Accepts TCP connections on a fixed address and relays bytes both ways to one upstream address
// (the mock cluster's first broker). One thread, poll()-based, non-blocking sockets, bounded
// buffers (a side is not read while its outbound buffer is full). A connection's two fds are closed
// as soon as either side errors, or sends FIN and what it sent before was delivered (the Kafka
// protocol has no half-close), so nothing leaks when clients or brokers go away.
// Thread-safety: constructor, start(), stop() and the destructor from the owning thread only;
// boundPort() and healthy() from any thread.
class TcpForwarder {
 public:
  static constexpr size_t kBufferBytes = 64 * 1024;
  static constexpr size_t kMaxConnections = 512;

  // Binds and listens (connections wait in the backlog until start()). Throws std::runtime_error
  // on failure.
  TcpForwarder(const std::string& host, uint16_t port) {
    addrinfo hints{};
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
    addrinfo* res = nullptr;
    const std::string service = std::to_string(port);
    if (int rc = ::getaddrinfo(host.c_str(), service.c_str(), &hints, &res); rc != 0) {
      throw std::runtime_error("cannot resolve listen host '" + host + "': " + gai_strerror(rc));
    }
    std::string lastError = "no address";
    for (addrinfo* ai = res; ai != nullptr; ai = ai->ai_next) {
      Fd fd(
          ::socket(ai->ai_family, ai->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC, ai->ai_protocol));
      if (fd.get() < 0) {
        lastError = errnoText(errno);
        continue;
      }
      int one = 1;
      ::setsockopt(fd.get(), SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
      if (::bind(fd.get(), ai->ai_addr, ai->ai_addrlen) != 0 || ::listen(fd.get(), 128) != 0) {
        lastError = errnoText(errno);
        continue;
      }
      sockaddr_storage bound{};
      socklen_t boundLen = sizeof(bound);
      ::getsockname(fd.get(), reinterpret_cast<sockaddr*>(&bound), &boundLen);
      boundPort_ = bound.ss_family == AF_INET6
                       ? ntohs(reinterpret_cast<sockaddr_in6*>(&bound)->sin6_port)
                       : ntohs(reinterpret_cast<sockaddr_in*>(&bound)->sin_port);
      listenFd_ = std::move(fd);
      break;
    }
    ::freeaddrinfo(res);
    if (listenFd_.get() < 0) {
      throw std::runtime_error("cannot listen on " + formatHostPort(host, port) + ": " + lastError);
    }
    wakeFd_ = Fd(::eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC));
    if (wakeFd_.get() < 0) throw std::runtime_error("eventfd: " + errnoText(errno));
  }

  TcpForwarder(const TcpForwarder&) = delete;
  TcpForwarder& operator=(const TcpForwarder&) = delete;
  ~TcpForwarder() { stop(); }

  // Starts relaying accepted connections to `upstream`. Call once.
  void start(const sockaddr_storage& upstream, socklen_t upstreamLen) {
    upstream_ = upstream;
    upstreamLen_ = upstreamLen;
    thread_ = std::thread([this] { run(); });
  }

  // Wakes the thread, joins it; every connection and the listener are closed on return.
  void stop() {
    if (thread_.joinable()) {
      const uint64_t one = 1;
      [[maybe_unused]] ssize_t n = ::write(wakeFd_.get(), &one, sizeof(one));
      thread_.join();
    }
    conns_.clear();
    listenFd_.reset();
  }

  uint16_t boundPort() const { return boundPort_; }
  bool healthy() const { return healthy_.load(); }

 private:
  // Bytes read from one socket waiting to be written to the other.
  struct Pipe {
    std::unique_ptr<char[]> data = std::make_unique<char[]>(kBufferBytes);
    size_t begin = 0;
    size_t end = 0;
    bool eof = false;  // the source side sent FIN
    size_t pending() const { return end - begin; }
    bool full() const { return end == kBufferBytes && begin == 0; }
  };

  struct Conn {
    Fd client;
    Fd upstream;
    bool connecting = true;
    bool dead = false;
    Pipe toUpstream;
    Pipe toClient;
    size_t clientSlot = 0;  // indexes into the pollfd vector of the current round
    size_t upstreamSlot = 0;
  };

  // Reads once from `fd` into `pipe`. Returns false on a hard error.
  static bool fill(int fd, Pipe& pipe) {
    if (pipe.end == kBufferBytes && pipe.begin > 0) {
      std::memmove(pipe.data.get(), pipe.data.get() + pipe.begin, pipe.pending());
      pipe.end -= pipe.begin;
      pipe.begin = 0;
    }
    if (pipe.end == kBufferBytes) return true;
    const ssize_t n = ::recv(fd, pipe.data.get() + pipe.end, kBufferBytes - pipe.end, 0);
    if (n > 0) {
      pipe.end += static_cast<size_t>(n);
    } else if (n == 0) {
      pipe.eof = true;
    } else if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) {
      return false;
    }
    return true;
  }

  // Writes as much of `pipe` to `fd` as the socket takes. Returns false on a hard error.
  static bool drain(int fd, Pipe& pipe) {
    while (pipe.pending() > 0) {
      const ssize_t n = ::send(fd, pipe.data.get() + pipe.begin, pipe.pending(), MSG_NOSIGNAL);
      if (n > 0) {
        pipe.begin += static_cast<size_t>(n);
      } else if (n < 0 && errno == EINTR) {
        continue;
      } else if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
        break;
      } else {
        return false;
      }
    }
    if (pipe.pending() == 0) pipe.begin = pipe.end = 0;
    return true;
  }

  void acceptAll() {
    while (conns_.size() < kMaxConnections) {
      Fd client(::accept4(listenFd_.get(), nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC));
      if (client.get() < 0) {
        if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR || errno == ECONNABORTED) {
          return;
        }
        // EMFILE/ENFILE/ENOBUFS: back off briefly instead of spinning on a readable listener.
        spdlog::warn("devkafka forwarder: accept failed: {}", errnoText(errno));
        acceptPausedUntil_ = std::chrono::steady_clock::now() + std::chrono::milliseconds(200);
        return;
      }
      int one = 1;
      ::setsockopt(client.get(), IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
      Fd upstream(::socket(upstream_.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
      if (upstream.get() < 0) {
        spdlog::warn("devkafka forwarder: socket failed: {}", errnoText(errno));
        continue;  // `client` is closed here
      }
      ::setsockopt(upstream.get(), IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
      if (::connect(upstream.get(), reinterpret_cast<const sockaddr*>(&upstream_), upstreamLen_) !=
              0 &&
          errno != EINPROGRESS) {
        spdlog::warn("devkafka forwarder: connect to mock broker failed: {}", errnoText(errno));
        continue;
      }
      auto conn = std::make_unique<Conn>();
      conn->client = std::move(client);
      conn->upstream = std::move(upstream);
      conns_.push_back(std::move(conn));
      spdlog::debug("devkafka forwarder: connection accepted ({} open)", conns_.size());
    }
  }

  // Handles one poll() round for `c`; sets c.dead when both fds must be closed.
  void service(Conn& c, const std::vector<pollfd>& fds) {
    const short cev = fds[c.clientSlot].revents;
    const short uev = fds[c.upstreamSlot].revents;
    const bool askedClientIn = fds[c.clientSlot].events & POLLIN;
    const bool askedUpstreamIn = fds[c.upstreamSlot].events & POLLIN;

    if (c.connecting) {
      if (uev & (POLLOUT | POLLERR | POLLHUP)) {
        int err = 0;
        socklen_t len = sizeof(err);
        ::getsockopt(c.upstream.get(), SOL_SOCKET, SO_ERROR, &err, &len);
        if (err != 0) {
          spdlog::warn("devkafka forwarder: connect to mock broker failed: {}", errnoText(err));
          c.dead = true;
          return;
        }
        c.connecting = false;
      }
    } else if ((uev & POLLERR) || ((uev & POLLHUP) && !askedUpstreamIn)) {
      c.dead = true;
      return;
    } else if ((uev & (POLLIN | POLLHUP)) && !fill(c.upstream.get(), c.toClient)) {
      c.dead = true;
      return;
    }

    if ((cev & POLLERR) || ((cev & POLLHUP) && !askedClientIn)) {
      c.dead = true;
      return;
    }
    if ((cev & (POLLIN | POLLHUP)) && !fill(c.client.get(), c.toUpstream)) {
      c.dead = true;
      return;
    }

    if (!drain(c.client.get(), c.toClient)) {
      c.dead = true;
      return;
    }
    if (!c.connecting && !drain(c.upstream.get(), c.toUpstream)) {
      c.dead = true;
      return;
    }

    // Kafka clients and brokers never half-close: once one side sent FIN and the bytes it sent
    // before were delivered, the connection is over.
    if (c.toUpstream.eof && c.toUpstream.pending() == 0) c.dead = true;
    if (c.toClient.eof && c.toClient.pending() == 0) c.dead = true;
  }

  void run() {
    std::vector<pollfd> fds;
    while (true) {
      fds.clear();
      fds.push_back({wakeFd_.get(), POLLIN, 0});
      const bool acceptPaused = std::chrono::steady_clock::now() < acceptPausedUntil_;
      const bool listening = conns_.size() < kMaxConnections && !acceptPaused;
      fds.push_back({listening ? listenFd_.get() : -1, POLLIN, 0});
      for (auto& c : conns_) {
        short cev = 0;
        short uev = 0;
        if (!c->toUpstream.eof && !c->toUpstream.full()) cev |= POLLIN;
        if (c->toClient.pending() > 0) cev |= POLLOUT;
        if (c->connecting) {
          uev = POLLOUT;
        } else {
          if (!c->toClient.eof && !c->toClient.full()) uev |= POLLIN;
          if (c->toUpstream.pending() > 0) uev |= POLLOUT;
        }
        c->clientSlot = fds.size();
        fds.push_back({c->client.get(), cev, 0});
        c->upstreamSlot = fds.size();
        fds.push_back({c->upstream.get(), uev, 0});
      }

      const int timeoutMs = acceptPaused ? 200 : -1;
      const int rc = ::poll(fds.data(), fds.size(), timeoutMs);
      if (rc < 0) {
        if (errno == EINTR) continue;
        spdlog::error("devkafka forwarder: poll failed: {}", errnoText(errno));
        healthy_.store(false);
        break;
      }
      if (fds[0].revents != 0) break;  // stop() was called
      if (fds[1].revents & POLLIN) acceptAll();

      // conns_ may have grown in acceptAll(); new entries have no slot this round.
      const size_t polled = (fds.size() - 2) / 2;
      size_t i = 0;
      for (auto it = conns_.begin(); it != conns_.end() && i < polled; ++i) {
        service(**it, fds);
        if ((*it)->dead) {
          it = conns_.erase(it);  // closes both fds
          spdlog::debug("devkafka forwarder: connection closed ({} open)", conns_.size());
        } else {
          ++it;
        }
      }
    }
    conns_.clear();
  }

  // Written by start() before the thread exists, read-only afterwards.
  sockaddr_storage upstream_{};
  socklen_t upstreamLen_ = 0;
  Fd listenFd_;
  Fd wakeFd_;
  uint16_t boundPort_ = 0;
  std::atomic<bool> healthy_{true};
  std::thread thread_;
  // Owned by the forwarder thread while it runs.
  std::list<std::unique_ptr<Conn>> conns_;
  std::chrono::steady_clock::time_point acceptPausedUntil_{};
};

std::unique_ptr<DevKafkaBroker> DevKafkaBroker::start(const DevKafkaBrokerOptions& options) {
  if (options.brokers < 1 || options.brokers > kMaxBrokers) {
    throw std::invalid_argument("brokers must be 1.." + std::to_string(kMaxBrokers));
  }
  if (options.partitions < 1 || options.partitions > kMaxPartitions) {
    throw std::invalid_argument("partitions must be 1.." + std::to_string(kMaxPartitions));
  }
  if (options.listenHost.empty()) throw std::invalid_argument("listen host is empty");
  for (const auto& topic : options.topics) {
    if (!validTopicName(topic)) {
      throw std::invalid_argument("invalid topic name '" + topic +
                                  "' (1..249 characters of a-z A-Z 0-9 . _ -)");
    }
  }

  std::unique_ptr<DevKafkaBroker> self(new DevKafkaBroker());
  // Bind the fixed address first, so a port in use fails before any cluster work.
  self->forwarder_ = std::make_unique<TcpForwarder>(options.listenHost, options.listenPort);
  self->bootstrapAddress_ = formatHostPort(options.listenHost, self->forwarder_->boundPort());

  char errstr[512];
  rd_kafka_conf_t* conf = rd_kafka_conf_new();
  rd_kafka_conf_set_log_cb(conf, rdkafkaLog);
  if (rd_kafka_conf_set(conf, "client.id", "outpost-devkafka", errstr, sizeof(errstr)) !=
      RD_KAFKA_CONF_OK) {
    rd_kafka_conf_destroy(conf);
    throw std::runtime_error(std::string("librdkafka config: ") + errstr);
  }
  // rd_kafka_new takes ownership of `conf` on success only.
  self->rk_ = rd_kafka_new(RD_KAFKA_PRODUCER, conf, errstr, sizeof(errstr));
  if (self->rk_ == nullptr) {
    rd_kafka_conf_destroy(conf);
    throw std::runtime_error(std::string("rd_kafka_new: ") + errstr);
  }
  self->mcluster_ = rd_kafka_mock_cluster_new(self->rk_, options.brokers);
  if (self->mcluster_ == nullptr) throw std::runtime_error("rd_kafka_mock_cluster_new failed");
  self->mockBootstraps_ = rd_kafka_mock_cluster_bootstraps(self->mcluster_);

  const int replication = std::min(options.brokers, 3);
  std::set<std::string> created;
  for (const auto& topic : options.topics) {
    if (!created.insert(topic).second) continue;
    const rd_kafka_resp_err_t err =
        rd_kafka_mock_topic_create(self->mcluster_, topic.c_str(), options.partitions, replication);
    if (err != RD_KAFKA_RESP_ERR_NO_ERROR) {
      throw std::runtime_error("cannot create topic '" + topic + "': " + rd_kafka_err2str(err));
    }
    spdlog::info("topic {} created: {} partitions, replication factor {}", topic,
                 options.partitions, replication);
  }

  // Forward to the first mock broker; any broker answers Metadata for the whole cluster.
  const std::string first = self->mockBootstraps_.substr(0, self->mockBootstraps_.find(','));
  std::string upstreamHost;
  uint16_t upstreamPort = 0;
  if (!parseHostPort(first, upstreamHost, upstreamPort)) {
    throw std::runtime_error("unexpected mock bootstrap list '" + self->mockBootstraps_ + "'");
  }
  addrinfo hints{};
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = AI_NUMERICHOST | AI_NUMERICSERV;
  addrinfo* res = nullptr;
  if (::getaddrinfo(upstreamHost.c_str(), std::to_string(upstreamPort).c_str(), &hints, &res) !=
          0 ||
      res == nullptr) {
    throw std::runtime_error("cannot parse mock broker address '" + first + "'");
  }
  sockaddr_storage upstream{};
  std::memcpy(&upstream, res->ai_addr, res->ai_addrlen);
  const socklen_t upstreamLen = res->ai_addrlen;
  ::freeaddrinfo(res);

  self->brokers_ = options.brokers;
  self->partitions_ = options.partitions;
  self->topics_ = created;
  if (options.control) {
    DevKafkaBroker* raw = self.get();
    self->controlServer_ = std::make_unique<ControlServer>(
        options.controlHost, options.controlPort,
        [raw](const std::string& line) { return raw->control(line); });
  }
  self->forwarder_->start(upstream, upstreamLen);
  spdlog::debug("devkafka: forwarding {} -> {} (mock brokers: {})", self->bootstrapAddress_, first,
                self->mockBootstraps_);
  return self;
}

DevKafkaBroker::~DevKafkaBroker() { stop(); }

void DevKafkaBroker::stop() {
  // Control first (it drives the cluster), then the forwarder so no client reaches a
  // half-destroyed cluster through the fixed address.
  controlServer_.reset();
  forwarder_.reset();
  if (mcluster_ != nullptr) {
    rd_kafka_mock_cluster_destroy(mcluster_);
    mcluster_ = nullptr;
  }
  if (rk_ != nullptr) {
    rd_kafka_destroy(rk_);
    rk_ = nullptr;
  }
}

bool DevKafkaBroker::healthy() const { return forwarder_ != nullptr && forwarder_->healthy(); }

uint16_t DevKafkaBroker::controlPort() const {
  return controlServer_ != nullptr ? controlServer_->boundPort() : 0;
}

}  // namespace outpost::aggregator
