#include "outpost/agent/stream_source.h"

#include <fcntl.h>
#include <poll.h>
#include <spdlog/spdlog.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "outpost/common/config.h"
#include "outpost/common/thread_name.h"

namespace outpost::agent {
namespace {

constexpr size_t kReadBytes = 64 * 1024;
constexpr int64_t kIdlePollUs = 5000;

// Logs the first few errors of a stream, then every 10,000th (a flood of bad lines must not
// flood the log).
bool shouldLog(uint64_t n) { return n <= 10 || n % 10000 == 0; }

std::string printable(std::string_view s) {
  std::string out;
  for (char c : s.substr(0, 80)) out += (c >= 0x20 && c < 0x7f) ? c : '?';
  if (s.size() > 80) out += "...";
  return out;
}

}  // namespace

uint64_t LineDecoder::Counts::errorsTotal() const {
  uint64_t n = 0;
  for (size_t i = 0; i < errors.size(); ++i) {
    const auto e = static_cast<LineError>(i);
    if (e != LineError::kNone && e != LineError::kHeader && e != LineError::kEmpty) n += errors[i];
  }
  return n;
}

LineDecoder::LineDecoder(
    LineFormat format, const SensorNames* names, size_t max_line_bytes, std::string label,
    const std::array<metrics::Counter*, static_cast<size_t>(LineError::kCount)>* error_counters)
    : format_(format),
      names_(names),
      max_line_bytes_(max_line_bytes),
      label_(std::move(label)),
      error_counters_(error_counters) {
  partial_.reserve(max_line_bytes_);
}

void LineDecoder::error(LineError e, std::string_view text) {
  ++counts_.errors[static_cast<size_t>(e)];
  if (e == LineError::kHeader || e == LineError::kEmpty) return;
  if (error_counters_ && (*error_counters_)[static_cast<size_t>(e)]) {
    (*error_counters_)[static_cast<size_t>(e)]->inc();
  }
  const uint64_t n = counts_.errorsTotal();
  if (shouldLog(n)) {
    spdlog::warn("{}: line {} rejected ({}): {}{}", label_, counts_.lines, lineErrorName(e),
                 printable(text), n == 10 ? " (further errors: every 10000th is logged)" : "");
  }
}

void LineDecoder::line(std::string_view text, int64_t now_us, ReadingSink& sink) {
  ++counts_.lines;
  ParsedLine p;
  LineError e = parseLine(format_, text, p);
  if (e == LineError::kNone) {
    auto it = names_->find(p.sensor);
    if (it == names_->end()) {
      e = LineError::kUnknownSensor;
    } else if (p.has_ts && !timestampPlausible(p.ts_us, now_us)) {
      e = LineError::kBadTimestamp;
    } else {
      ++counts_.readings;
      sink.push(
          wire::Reading(p.has_ts ? p.ts_us : now_us, p.value, it->second, wire::Quality::Good));
      return;
    }
  }
  error(e, text);
}

void LineDecoder::feed(std::string_view bytes, int64_t now_us, ReadingSink& sink) {
  while (!bytes.empty()) {
    const size_t nl = bytes.find('\n');
    const bool complete = nl != std::string_view::npos;
    const std::string_view piece = bytes.substr(0, nl);
    if (discarding_) {
      discarding_ = !complete;  // the rest of a too-long line
    } else if (partial_.size() + piece.size() > max_line_bytes_) {
      ++counts_.lines;
      error(LineError::kTooLong, partial_.empty() ? piece : std::string_view(partial_));
      partial_.clear();
      discarding_ = !complete;
    } else if (!complete) {
      partial_.append(piece);
    } else if (partial_.empty()) {
      line(piece, now_us, sink);  // the common case: no copy
    } else {
      partial_.append(piece);
      line(partial_, now_us, sink);
      partial_.clear();
    }
    if (!complete) return;
    bytes.remove_prefix(nl + 1);
  }
}

void LineDecoder::finish(int64_t now_us, ReadingSink& sink) {
  if (!partial_.empty() && !discarding_) line(partial_, now_us, sink);
  partial_.clear();
  discarding_ = false;
}

// Fills chunks and hands them over when full (and at the end of each read).
class StreamSource::ChunkSink final : public ReadingSink {
 public:
  explicit ChunkSink(ReadingHandoff& h) : h_(h), chunk_(h.takeEmpty()) {}
  void push(const wire::Reading& r) override {
    chunk_.push_back(r);
    if (chunk_.size() >= h_.chunkReadings()) flush();
  }
  void flush() {
    if (chunk_.empty()) return;
    h_.put(std::move(chunk_));
    chunk_ = h_.takeEmpty();
  }

 private:
  ReadingHandoff& h_;
  std::vector<wire::Reading> chunk_;
};

StreamSource::StreamSource(const std::string& label, const std::vector<SensorSpec>& sensors,
                           SourceKind kind, const SourcesSpec& opt, const Clock& clock,
                           metrics::Registry* registry)
    : label_(label),
      opt_(opt),
      clock_(clock),
      kind_(kind),
      handoff_(opt.queue_chunks, opt.chunk_readings, opt.queue_block,
               registry ? &registry->counter("outpost_agent_source_dropped_total",
                                             "Readings dropped because the queue to the pipeline "
                                             "was full",
                                             {{"source", label}})
                        : nullptr) {
  setSensors(sensors);
  if (registry) {
    for (size_t i = 0; i < error_counters_.size(); ++i) {
      const auto e = static_cast<LineError>(i);
      if (e == LineError::kNone || e == LineError::kHeader || e == LineError::kEmpty) continue;
      error_counters_[i] = &registry->counter("outpost_agent_source_line_errors_total",
                                              "Input lines rejected, by source and reason",
                                              {{"source", label}, {"reason", lineErrorName(e)}});
    }
    readings_counter_ =
        &registry->counter("outpost_agent_source_readings_total",
                           "Readings parsed by threaded sources", {{"source", label}});
  }
  stop_fd_ = ::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
  if (stop_fd_ < 0) throw std::runtime_error(label + ": eventfd: " + std::strerror(errno));
}

StreamSource::~StreamSource() {
  stop();
  if (stop_fd_ >= 0) ::close(stop_fd_);
}

void StreamSource::stop() {
  if (!thread_.joinable()) return;
  const uint64_t one = 1;
  (void)!::write(stop_fd_, &one, sizeof one);
  handoff_.close();  // unblocks a reader waiting for queue space
  thread_.join();
}

void StreamSource::setSensors(const std::vector<SensorSpec>& sensors) {
  auto names = std::make_shared<SensorNames>();
  infos_.clear();
  for (const auto& s : sensors) {
    if (s.source != kind_) continue;
    names->emplace(s.name, s.id);
    infos_.push_back({s.id, s.name, s.unit});
  }
  MutexLock lock(names_mu_);
  names_ = std::move(names);
  names_gen_.fetch_add(1, std::memory_order_release);
}

const SensorNames* StreamSource::namesIfChanged(std::shared_ptr<const SensorNames>& hold,
                                                uint64_t& seen) {
  if (names_gen_.load(std::memory_order_acquire) == seen) return nullptr;
  MutexLock lock(names_mu_);
  hold = names_;
  seen = names_gen_.load(std::memory_order_relaxed);
  return hold.get();
}

int64_t StreamSource::poll(int64_t now_us, std::vector<wire::Reading>& out) {
  const size_t n = handoff_.drain(out, 64);
  return n > 0 ? now_us : now_us + kIdlePollUs;
}

void StreamSource::report(const LineDecoder::Counts& now, LineDecoder::Counts& reported) {
  LineDecoder::Counts c = now;
  c.lines -= reported.lines;
  c.readings -= reported.readings;
  for (size_t i = 0; i < c.errors.size(); ++i) c.errors[i] -= reported.errors[i];
  reported = now;
  if (readings_counter_) readings_counter_->inc(c.readings);
  MutexLock lock(counts_mu_);
  totals_.lines += c.lines;
  totals_.readings += c.readings;
  for (size_t i = 0; i < c.errors.size(); ++i) totals_.errors[i] += c.errors[i];
}

LineDecoder::Counts StreamSource::counts() const {
  MutexLock lock(counts_mu_);
  return totals_;
}

StdinSource::StdinSource(const std::vector<SensorSpec>& sensors, const SourcesSpec& opt,
                         const Clock& clock, metrics::Registry* registry, int fd)
    : StreamSource("stdin", sensors, SourceKind::kStdin, opt, clock, registry), fd_(fd) {
  start(std::thread([this] { run(); }));
}

void StdinSource::run() {
  setThreadName("op-src-stdin");
  std::shared_ptr<const SensorNames> names;
  uint64_t names_seen = 0;
  LineDecoder dec(opt_.stdin_format, namesIfChanged(names, names_seen), opt_.max_line_bytes,
                  "stdin", &error_counters_);
  ChunkSink sink(handoff_);
  std::vector<char> buf(kReadBytes);
  LineDecoder::Counts reported;
  auto report = [&] { StreamSource::report(dec.counts(), reported); };
  for (;;) {
    pollfd fds[2] = {{fd_, POLLIN, 0}, {stop_fd_, POLLIN, 0}};
    if (::poll(fds, 2, -1) < 0) {
      if (errno == EINTR) continue;
      spdlog::error("stdin: poll: {}", std::strerror(errno));
      break;
    }
    if (fds[1].revents) break;  // stop
    const ssize_t n = ::read(fd_, buf.data(), buf.size());
    if (n < 0) {
      if (errno == EINTR || errno == EAGAIN) continue;
      spdlog::error("stdin: read: {}", std::strerror(errno));
      break;
    }
    if (const SensorNames* changed = namesIfChanged(names, names_seen)) dec.setNames(changed);
    const int64_t now = clock_.nowUs();
    if (n == 0) {
      dec.finish(now, sink);
      sink.flush();
      report();
      spdlog::info("stdin: end of input after {} lines ({} readings, {} rejected)",
                   dec.counts().lines, dec.counts().readings, dec.counts().errorsTotal());
      break;
    }
    dec.feed(std::string_view(buf.data(), static_cast<size_t>(n)), now, sink);
    sink.flush();
    report();
  }
  report();
  finished_.store(true);
}

void SocketSource::checkPath(const std::string& path) {
  sockaddr_un addr{};
  if (path.size() >= sizeof addr.sun_path) {
    throw config::ConfigError("sources.socket.path = \"" + path +
                              "\" is too long; allowed: at most " +
                              std::to_string(sizeof addr.sun_path - 1) + " bytes");
  }
  struct stat st {};
  if (::lstat(path.c_str(), &st) == 0 && !S_ISSOCK(st.st_mode)) {
    throw config::ConfigError("sources.socket.path = \"" + path +
                              "\" exists and is not a socket; allowed: a new path or a stale "
                              "socket");
  }
}

SocketSource::SocketSource(const std::vector<SensorSpec>& sensors, const SourcesSpec& opt,
                           const Clock& clock, metrics::Registry* registry)
    : StreamSource("socket", sensors, SourceKind::kSocket, opt, clock, registry) {
  const std::string& path = opt_.socket_path;
  checkPath(path);
  struct stat st {};
  if (::lstat(path.c_str(), &st) == 0) ::unlink(path.c_str());  // stale socket of a previous run
  sockaddr_un addr{};
  listen_fd_ = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
  if (listen_fd_ < 0) throw std::runtime_error(std::string("socket: ") + std::strerror(errno));
  addr.sun_family = AF_UNIX;
  std::memcpy(addr.sun_path, path.data(), path.size());
  if (::bind(listen_fd_, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0 ||
      ::listen(listen_fd_, 16) != 0) {
    const int e = errno;
    ::close(listen_fd_);
    throw std::runtime_error("sources.socket.path = \"" + path +
                             "\": cannot listen: " + std::strerror(e));
  }
  if (registry) {
    refused_ = &registry->counter("outpost_agent_socket_refused_total",
                                  "Socket connections refused (sources.socket.max_clients)");
  }
  spdlog::info("socket source listening on {}", path);
  start(std::thread([this] { run(); }));
}

SocketSource::~SocketSource() {
  stop();
  if (listen_fd_ >= 0) {
    ::close(listen_fd_);
    ::unlink(opt_.socket_path.c_str());
  }
}

void SocketSource::run() {
  setThreadName("op-src-socket");
  struct Client {
    int fd;
    std::unique_ptr<LineDecoder> dec;
    LineDecoder::Counts reported;
  };
  std::vector<Client> clients;
  std::vector<pollfd> fds;
  std::vector<char> buf(kReadBytes);
  ChunkSink sink(handoff_);
  uint64_t connection = 0;
  std::shared_ptr<const SensorNames> names;
  uint64_t names_seen = 0;
  (void)namesIfChanged(names, names_seen);
  auto closeClient = [&](size_t i) {
    clients[i].dec->finish(clock_.nowUs(), sink);
    report(clients[i].dec->counts(), clients[i].reported);
    ::close(clients[i].fd);
    clients.erase(clients.begin() + static_cast<std::ptrdiff_t>(i));
  };
  bool stopping = false;
  while (!stopping) {
    fds.clear();
    fds.push_back({stop_fd_, POLLIN, 0});
    fds.push_back({listen_fd_, POLLIN, 0});
    for (const auto& c : clients) fds.push_back({c.fd, POLLIN, 0});
    if (::poll(fds.data(), fds.size(), -1) < 0) {
      if (errno == EINTR) continue;
      spdlog::error("socket: poll: {}", std::strerror(errno));
      break;
    }
    if (fds[0].revents) break;
    if (fds[1].revents & POLLIN) {
      const int fd = ::accept4(listen_fd_, nullptr, nullptr, SOCK_CLOEXEC | SOCK_NONBLOCK);
      if (fd >= 0) {
        if (clients.size() >= opt_.socket_max_clients) {
          if (refused_) refused_->inc();
          ::close(fd);
          spdlog::warn(
              "socket: connection refused: {} clients connected (sources.socket.max_clients)",
              clients.size());
        } else {
          ++connection;
          clients.push_back(
              {fd,
               std::make_unique<LineDecoder>(opt_.socket_format, names.get(), opt_.max_line_bytes,
                                             "socket connection " + std::to_string(connection),
                                             &error_counters_),
               {}});
        }
      }
    }
    if (const SensorNames* changed = namesIfChanged(names, names_seen)) {
      for (auto& c : clients) c.dec->setNames(changed);
    }
    // Indexes shift when a client closes: walk backwards over this poll's clients.
    for (size_t i = fds.size() - 1; i >= 2; --i) {
      if (!fds[i].revents) continue;
      const size_t ci = i - 2;
      const ssize_t n = ::read(clients[ci].fd, buf.data(), buf.size());
      if (n > 0) {
        clients[ci].dec->feed(std::string_view(buf.data(), static_cast<size_t>(n)), clock_.nowUs(),
                              sink);
        report(clients[ci].dec->counts(), clients[ci].reported);
      } else if (n == 0 || (errno != EINTR && errno != EAGAIN)) {
        closeClient(ci);
      }
    }
    sink.flush();
  }
  while (!clients.empty()) closeClient(clients.size() - 1);
  sink.flush();
}

}  // namespace outpost::agent
