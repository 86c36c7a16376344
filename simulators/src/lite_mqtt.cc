#include "outpost/sim/lite_mqtt.h"

#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstring>

namespace outpost::sim {
namespace {

enum : uint8_t {
  kConnect = 1,
  kConnack = 2,
  kPublish = 3,
  kPuback = 4,
  kSubscribe = 8,
  kSuback = 9,
  kPingreq = 12,
  kPingresp = 13,
  kDisconnect = 14,
};

int64_t monoNowUs() {
  return std::chrono::duration_cast<std::chrono::microseconds>(
             std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

constexpr size_t kReadChunk = 64 * 1024;
constexpr size_t kMaxReadPerIo = 1u << 20;  // bytes per io() call: other connections get a turn

}  // namespace

Result<std::pair<std::string, std::string>> splitBrokerUri(const std::string& uri) {
  std::string rest = uri;
  for (const char* tls : {"ssl://", "mqtts://", "wss://", "ws://"}) {
    if (rest.rfind(tls, 0) == 0) {
      return fail(ErrorCode::kInvalidArgument,
                  "broker '" + uri + "': only tcp://host:port is supported by this client");
    }
  }
  for (const char* scheme : {"tcp://", "mqtt://"}) {
    if (rest.rfind(scheme, 0) == 0) rest = rest.substr(std::strlen(scheme));
  }
  const auto colon = rest.rfind(':');
  if (colon == std::string::npos || colon == 0 || colon + 1 == rest.size()) {
    return fail(ErrorCode::kInvalidArgument, "broker '" + uri + "': expected tcp://host:port");
  }
  std::string host = rest.substr(0, colon);
  if (host.size() > 2 && host.front() == '[' && host.back() == ']') {
    host = host.substr(1, host.size() - 2);
  }
  return std::pair{host, rest.substr(colon + 1)};
}

LiteMqtt::~LiteMqtt() {
  if (fd_ >= 0) ::close(fd_);
}

void LiteMqtt::closeWith(std::string why) {
  if (fd_ >= 0) ::close(fd_);
  fd_ = -1;
  error_ = std::move(why);
}

void LiteMqtt::putRemainingLength(size_t n) {
  do {
    uint8_t b = n % 128;
    n /= 128;
    if (n > 0) b |= 0x80;
    wbuf_.push_back(b);
  } while (n > 0);
}

void LiteMqtt::putString(std::string_view s) {
  wbuf_.push_back(static_cast<uint8_t>(s.size() >> 8));
  wbuf_.push_back(static_cast<uint8_t>(s.size() & 0xff));
  wbuf_.insert(wbuf_.end(), s.begin(), s.end());
}

Status LiteMqtt::connect(const LiteMqttOptions& o) {
  closeWith("");
  error_.clear();
  wbuf_.clear();
  woff_ = 0;
  roff_ = rlen_ = 0;
  in_use_.assign(65536, 0);
  pending_ = 0;
  ping_out_ = false;
  connack_ = false;
  connack_rc_ = -1;
  keepalive_s_ = o.keepalive_s;
  max_packet_ = o.max_packet;
  auto hp = splitBrokerUri(o.broker);
  if (!hp) return std::unexpected(hp.error());
  if (o.client_id.empty() || o.client_id.size() > 65535) {
    return fail(ErrorCode::kInvalidArgument, "MQTT client id must be 1..65535 bytes");
  }

  addrinfo hints{};
  hints.ai_socktype = SOCK_STREAM;
  addrinfo* res = nullptr;
  if (int rc = getaddrinfo(hp->first.c_str(), hp->second.c_str(), &hints, &res); rc != 0) {
    return fail(ErrorCode::kUnavailable,
                "broker " + o.broker + ": cannot resolve: " + gai_strerror(rc));
  }
  const int64_t deadline = monoNowUs() + o.connect_timeout_us;
  std::string why = "no address";
  for (addrinfo* p = res; p && fd_ < 0; p = p->ai_next) {
    int fd = ::socket(p->ai_family, p->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC, p->ai_protocol);
    if (fd < 0) {
      why = std::strerror(errno);
      continue;
    }
    int rc = ::connect(fd, p->ai_addr, p->ai_addrlen);
    if (rc != 0 && errno == EINPROGRESS) {
      pollfd pfd{fd, POLLOUT, 0};
      const int64_t left = std::max<int64_t>(0, deadline - monoNowUs());
      rc = ::poll(&pfd, 1, static_cast<int>(left / 1000)) == 1 ? 0 : -1;
      int err = rc == 0 ? 0 : ETIMEDOUT;
      socklen_t len = sizeof err;
      if (rc == 0) getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len);
      if (err != 0) {
        errno = err;
        rc = -1;
      }
    }
    if (rc != 0) {
      why = std::strerror(errno);
      ::close(fd);
      continue;
    }
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);  // small packets, no 40 ms waits
    fd_ = fd;
  }
  freeaddrinfo(res);
  if (fd_ < 0) return fail(ErrorCode::kUnavailable, "broker " + o.broker + ": " + why);

  // CONNECT: protocol "MQTT" level 4, clean session, keep-alive, client id [, user [, password]].
  uint8_t flags = 0x02;
  size_t len = 10 + 2 + o.client_id.size();
  if (!o.username.empty()) {
    flags |= 0x80;
    len += 2 + o.username.size();
    if (!o.password.empty()) {
      flags |= 0x40;
      len += 2 + o.password.size();
    }
  }
  wbuf_.push_back(kConnect << 4);
  putRemainingLength(len);
  putString("MQTT");
  wbuf_.push_back(4);
  wbuf_.push_back(flags);
  wbuf_.push_back(static_cast<uint8_t>(o.keepalive_s >> 8));
  wbuf_.push_back(static_cast<uint8_t>(o.keepalive_s & 0xff));
  putString(o.client_id);
  if (flags & 0x80) putString(o.username);
  if (flags & 0x40) putString(o.password);

  while (!connack_) {
    const int64_t now = monoNowUs();
    if (now >= deadline) {
      closeWith("CONNACK timed out");
      return fail(ErrorCode::kUnavailable, "broker " + o.broker + ": CONNACK timed out");
    }
    pollfd pfd{fd_, static_cast<short>(POLLIN | (unsent() ? POLLOUT : 0)), 0};
    ::poll(&pfd, 1, static_cast<int>(std::min<int64_t>(100'000, deadline - now) / 1000) + 1);
    if (!io(monoNowUs())) {
      return fail(ErrorCode::kUnavailable, "broker " + o.broker + ": " + error_);
    }
  }
  if (connack_rc_ != 0) {
    closeWith("connection refused");
    return fail(ErrorCode::kUnavailable, "broker " + o.broker +
                                             " refused the connection (CONNACK " +
                                             std::to_string(connack_rc_) + ")");
  }
  return {};
}

Status LiteMqtt::subscribe(std::string_view filter, int qos, int64_t timeout_us) {
  const std::string f(filter);
  return subscribe(std::span<const std::string>(&f, 1), qos, timeout_us);
}

Status LiteMqtt::subscribe(std::span<const std::string> filters, int qos, int64_t timeout_us) {
  if (fd_ < 0) return fail(ErrorCode::kUnavailable, "not connected");
  if (filters.empty()) return {};
  suback_ = -1;
  size_t len = 2;
  for (const auto& f : filters) len += 2 + f.size() + 1;
  wbuf_.push_back(kSubscribe << 4 | 0x02);
  putRemainingLength(len);
  wbuf_.push_back(0);
  wbuf_.push_back(1);  // packet id 1: SUBSCRIBE ids are separate from our publish accounting
  for (const auto& f : filters) {
    putString(f);
    wbuf_.push_back(static_cast<uint8_t>(qos));
  }
  const int64_t deadline = monoNowUs() + timeout_us;
  while (suback_ < 0) {
    const int64_t now = monoNowUs();
    if (now >= deadline) return fail(ErrorCode::kUnavailable, "SUBACK timed out");
    pollfd pfd{fd_, static_cast<short>(POLLIN | (unsent() ? POLLOUT : 0)), 0};
    ::poll(&pfd, 1, 20);
    if (!io(monoNowUs())) return fail(ErrorCode::kUnavailable, error_);
  }
  if (suback_ == 0x80) {
    return fail(ErrorCode::kUnavailable,
                "broker refused the subscription " + filters.front() +
                    (filters.size() > 1 ? " (or one of " + std::to_string(filters.size()) + ")"
                                        : std::string()));
  }
  return {};
}

bool LiteMqtt::publish(std::string_view topic, std::span<const uint8_t> payload, int qos,
                       bool retain) {
  if (fd_ < 0) return false;
  uint16_t id = 0;
  if (qos > 0) {
    if (pending_ >= 65535) return false;
    do {
      id = static_cast<uint16_t>(next_id_ % 65535 + 1);
      next_id_ = id;
    } while (in_use_[id]);
    in_use_[id] = 1;
    ++pending_;
  }
  // Keep the buffer compact: drop what was written once it is most of the buffer.
  if (woff_ > 0 && woff_ * 2 >= wbuf_.size()) {
    wbuf_.erase(wbuf_.begin(), wbuf_.begin() + static_cast<long>(woff_));
    woff_ = 0;
  }
  wbuf_.push_back(static_cast<uint8_t>(kPublish << 4 | (qos > 0 ? 0x02 : 0) | (retain ? 1 : 0)));
  putRemainingLength(2 + topic.size() + (qos > 0 ? 2 : 0) + payload.size());
  putString(topic);
  if (qos > 0) {
    wbuf_.push_back(static_cast<uint8_t>(id >> 8));
    wbuf_.push_back(static_cast<uint8_t>(id & 0xff));
  }
  wbuf_.insert(wbuf_.end(), payload.begin(), payload.end());
  return true;
}

bool LiteMqtt::flush() {
  while (woff_ < wbuf_.size()) {
    const ssize_t n = ::send(fd_, wbuf_.data() + woff_, wbuf_.size() - woff_, MSG_NOSIGNAL);
    if (n > 0) {
      woff_ += static_cast<size_t>(n);
      last_send_us_ = monoNowUs();
      continue;
    }
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) break;
    if (n < 0 && errno == EINTR) continue;
    closeWith(std::string("send: ") + std::strerror(errno));
    return false;
  }
  if (woff_ == wbuf_.size()) {
    wbuf_.clear();
    woff_ = 0;
  }
  return true;
}

bool LiteMqtt::readSome() {
  // rbuf_[roff_, rlen_) holds bytes received and not parsed; the vector's size is its capacity
  // (never shrunk, so a recv does not zero-fill a fresh chunk each time).
  if (roff_ == rlen_) {
    roff_ = rlen_ = 0;
  }
  size_t total = 0;
  while (total < kMaxReadPerIo) {
    if (rbuf_.size() - rlen_ < kReadChunk) {
      if (roff_ > 0) {
        std::memmove(rbuf_.data(), rbuf_.data() + roff_, rlen_ - roff_);
        rlen_ -= roff_;
        roff_ = 0;
      }
      if (rbuf_.size() - rlen_ < kReadChunk)
        rbuf_.resize(std::max(rbuf_.size() * 2, rlen_ + kReadChunk));
    }
    const size_t space = rbuf_.size() - rlen_;
    const ssize_t n = ::recv(fd_, rbuf_.data() + rlen_, space, 0);
    if (n > 0) {
      rlen_ += static_cast<size_t>(n);
      total += static_cast<size_t>(n);
      if (static_cast<size_t>(n) < space) break;  // drained for now; saves an EAGAIN call
      continue;
    }
    if (n == 0) {
      closeWith("broker closed the connection");
      return false;
    }
    if (errno == EAGAIN || errno == EWOULDBLOCK) break;
    if (errno == EINTR) continue;
    closeWith(std::string("recv: ") + std::strerror(errno));
    return false;
  }
  return true;
}

bool LiteMqtt::parse(int64_t now) {
  while (rlen_ - roff_ >= 2) {
    const uint8_t* p = rbuf_.data() + roff_;
    const size_t avail = rlen_ - roff_;
    size_t len = 0, hdr = 1;
    for (int shift = 0;; shift += 7) {
      if (hdr >= avail) return true;  // length not complete yet
      if (shift > 21) {
        closeWith("malformed remaining length");
        return false;
      }
      const uint8_t b = p[hdr++];
      len |= static_cast<size_t>(b & 0x7f) << shift;
      if (!(b & 0x80)) break;
    }
    if (len > max_packet_) {
      closeWith("packet of " + std::to_string(len) + " bytes exceeds the limit");
      return false;
    }
    if (avail < hdr + len) return true;  // wait for the rest
    const uint8_t type = p[0] >> 4;
    const uint8_t* body = p + hdr;
    roff_ += hdr + len;
    last_recv_us_ = now;
    switch (type) {
      case kConnack:
        if (len != 2) {
          closeWith("malformed CONNACK");
          return false;
        }
        connack_ = true;
        connack_rc_ = body[1];
        break;
      case kPuback: {
        if (len != 2) {
          closeWith("malformed PUBACK");
          return false;
        }
        const uint16_t id = static_cast<uint16_t>(body[0] << 8 | body[1]);
        if (in_use_[id]) {
          in_use_[id] = 0;
          --pending_;
        }
        break;
      }
      case kPublish: {
        const int qos = (p[0] >> 1) & 3;
        if (qos > 1 || len < 2) {
          closeWith("unsupported or malformed PUBLISH");
          return false;
        }
        const size_t tlen = static_cast<size_t>(body[0] << 8 | body[1]);
        const size_t head = 2 + tlen + (qos ? 2 : 0);
        if (head > len) {
          closeWith("malformed PUBLISH");
          return false;
        }
        if (qos == 1) {
          wbuf_.push_back(kPuback << 4);
          wbuf_.push_back(2);
          wbuf_.push_back(body[2 + tlen]);
          wbuf_.push_back(body[3 + tlen]);
        }
        if (on_message_) {
          on_message_(std::string_view(reinterpret_cast<const char*>(body + 2), tlen),
                      std::span<const uint8_t>(body + head, len - head));
        }
        if (fd_ < 0) return false;  // the callback may not close us, but be safe
        break;
      }
      case kSuback: {
        suback_ = len >= 3 ? 0 : 0x80;
        for (size_t i = 2; i < len; ++i) {
          if (body[i] == 0x80) suback_ = 0x80;
        }
        break;
      }
      case kPingresp:
        ping_out_ = false;
        break;
      default:
        closeWith("unexpected packet type " + std::to_string(type));
        return false;
    }
  }
  return true;
}

bool LiteMqtt::io(int64_t now, bool read) {
  if (fd_ < 0) return false;
  if (last_recv_us_ == 0) last_recv_us_ = now;
  if (!flush()) return false;
  if (read) {
    if (!readSome() || !parse(now)) return false;
    if (!flush()) return false;  // PUBACKs for what was just received
  }
  if (keepalive_s_ > 0) {
    const int64_t ka = int64_t{keepalive_s_} * 1'000'000;
    if (read && now - last_recv_us_ > ka * 3 / 2) {
      closeWith("keep-alive: no packet from the broker for 1.5 x keep-alive");
      return false;
    }
    if (!ping_out_ && now - last_send_us_ > ka / 2) {
      wbuf_.push_back(kPingreq << 4);
      wbuf_.push_back(0);
      ping_out_ = true;
      if (!flush()) return false;
    }
  }
  return true;
}

void LiteMqtt::disconnect(int64_t flush_us) {
  if (fd_ < 0) return;
  wbuf_.push_back(kDisconnect << 4);
  wbuf_.push_back(0);
  const int64_t deadline = monoNowUs() + flush_us;
  while (fd_ >= 0 && unsent() > 0 && monoNowUs() < deadline) {
    pollfd pfd{fd_, POLLOUT, 0};
    ::poll(&pfd, 1, 10);
    if (!flush()) break;
  }
  closeWith("disconnected");
}

}  // namespace outpost::sim
