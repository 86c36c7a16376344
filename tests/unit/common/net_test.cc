#include "outpost/common/net.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <string>
#include <vector>

#include <catch2/catch.hpp>

namespace net = outpost::net;

namespace {

// An owned file descriptor.
class Fd {
 public:
  Fd() = default;
  explicit Fd(int fd) : fd_(fd) {}
  ~Fd() {
    if (fd_ >= 0) ::close(fd_);
  }
  Fd(Fd&& o) noexcept : fd_(o.fd_) { o.fd_ = -1; }
  Fd& operator=(Fd&&) = delete;
  Fd(const Fd&) = delete;
  int get() const { return fd_; }

 private:
  int fd_ = -1;
};

// A TCP listener on the loopback address of a family (127.0.0.1 or ::1), port chosen by the kernel.
struct Listener {
  Fd fd;
  int port = 0;
};

// Returns a listener with fd -1 if the address family is unavailable (no IPv6 in the sandbox).
Listener listenOn(int family) {
  Fd fd(::socket(family, SOCK_STREAM | SOCK_CLOEXEC, 0));
  if (fd.get() < 0) return {};
  sockaddr_storage ss{};
  socklen_t len = 0;
  if (family == AF_INET) {
    auto* a = reinterpret_cast<sockaddr_in*>(&ss);
    a->sin_family = AF_INET;
    a->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    len = sizeof *a;
  } else {
    auto* a = reinterpret_cast<sockaddr_in6*>(&ss);
    a->sin6_family = AF_INET6;
    a->sin6_addr = in6addr_loopback;
    len = sizeof *a;
  }
  if (::bind(fd.get(), reinterpret_cast<sockaddr*>(&ss), len) != 0) return {};
  if (::listen(fd.get(), 16) != 0) return {};
  socklen_t got = sizeof ss;
  if (::getsockname(fd.get(), reinterpret_cast<sockaddr*>(&ss), &got) != 0) return {};
  const int port = family == AF_INET ? ntohs(reinterpret_cast<sockaddr_in*>(&ss)->sin_port)
                                     : ntohs(reinterpret_cast<sockaddr_in6*>(&ss)->sin6_port);
  return {std::move(fd), port};
}

Listener listenLoopback() {
  Listener l = listenOn(AF_INET);
  if (l.fd.get() < 0) FAIL("cannot listen on 127.0.0.1: " << std::strerror(errno));
  return l;
}

// A client socket connected to the listener (the loopback handshake completes in connect()).
Fd connectTo(const Listener& l, int family = AF_INET) {
  Fd fd(::socket(family, SOCK_STREAM | SOCK_CLOEXEC, 0));
  if (fd.get() < 0) FAIL("socket: " << std::strerror(errno));
  sockaddr_storage ss{};
  socklen_t len = sizeof ss;
  if (::getsockname(l.fd.get(), reinterpret_cast<sockaddr*>(&ss), &len) != 0) {
    FAIL("getsockname: " << std::strerror(errno));
  }
  if (::connect(fd.get(), reinterpret_cast<sockaddr*>(&ss), len) != 0) {
    FAIL("connect to port " << l.port << ": " << std::strerror(errno));
  }
  return fd;
}

Fd acceptFrom(const Listener& l) {
  Fd fd(::accept4(l.fd.get(), nullptr, nullptr, SOCK_CLOEXEC));
  if (fd.get() < 0) FAIL("accept: " << std::strerror(errno));
  return fd;
}

int noDelay(const Fd& fd) {
  int v = -1;
  socklen_t len = sizeof v;
  if (::getsockopt(fd.get(), IPPROTO_TCP, TCP_NODELAY, &v, &len) != 0) {
    FAIL("getsockopt(TCP_NODELAY): " << std::strerror(errno));
  }
  return v != 0 ? 1 : 0;
}

}  // namespace

TEST_CASE("setTcpNoDelayToPeer sets TCP_NODELAY only on sockets connected to the URI's endpoint",
          "[common][net]") {
  const Listener broker = listenLoopback();
  const Listener other = listenLoopback();
  Fd to_broker = connectTo(broker);
  Fd to_other = connectTo(other);
  Fd accepted = acceptFrom(broker);  // its peer is to_broker's ephemeral port: not a match
  REQUIRE(noDelay(to_broker) == 0);
  REQUIRE(noDelay(to_other) == 0);
  REQUIRE(noDelay(accepted) == 0);

  SECTION("tcp:// scheme") {
    CHECK(net::setTcpNoDelayToPeer("tcp://127.0.0.1:" + std::to_string(broker.port)) >= 1);
  }
  SECTION("mqtt:// scheme") {
    CHECK(net::setTcpNoDelayToPeer("mqtt://127.0.0.1:" + std::to_string(broker.port)) >= 1);
  }
  SECTION("no scheme") {
    CHECK(net::setTcpNoDelayToPeer("127.0.0.1:" + std::to_string(broker.port)) >= 1);
  }

  CHECK(noDelay(to_broker) == 1);
  CHECK(noDelay(to_other) == 0);
  CHECK(noDelay(accepted) == 0);
}

TEST_CASE("setTcpNoDelayToPeer counts every socket to the endpoint and is idempotent",
          "[common][net]") {
  const Listener broker = listenLoopback();
  Fd a = connectTo(broker);
  Fd b = connectTo(broker);
  const std::string uri = "tcp://127.0.0.1:" + std::to_string(broker.port);
  CHECK(net::setTcpNoDelayToPeer(uri) == 2);
  CHECK(noDelay(a) == 1);
  CHECK(noDelay(b) == 1);
  CHECK(net::setTcpNoDelayToPeer(uri) == 2);
  CHECK(noDelay(a) == 1);
}

TEST_CASE("setTcpNoDelayToPeer with no matching socket changes nothing", "[common][net]") {
  const Listener broker = listenLoopback();
  const Listener idle = listenLoopback();  // nothing connected to it
  Fd to_broker = connectTo(broker);
  CHECK(net::setTcpNoDelayToPeer("tcp://127.0.0.1:" + std::to_string(idle.port)) == 0);
  CHECK(noDelay(to_broker) == 0);
}

TEST_CASE("setTcpNoDelayToPeer returns 0 on malformed URIs without touching sockets",
          "[common][net]") {
  const Listener broker = listenLoopback();
  Fd to_broker = connectTo(broker);
  const std::string port = std::to_string(broker.port);
  const std::vector<std::string> malformed = {
      "",
      "tcp://",
      "mqtt://",
      "nohostport",
      "tcp://127.0.0.1",
      "tcp://127.0.0.1:",
      "tcp://127.0.0.1:notaport",
      "tcp://[]:" + port,
      "tcp://[::1:" + port,
      ":",
      "::",
  };
  for (const std::string& uri : malformed) {
    INFO("uri '" << uri << "'");
    CHECK(net::setTcpNoDelayToPeer(uri) == 0);
  }
  CHECK(noDelay(to_broker) == 0);
}

TEST_CASE("setTcpNoDelayToPeer understands bracketed IPv6 hosts", "[common][net]") {
  const Listener broker = listenOn(AF_INET6);
  if (broker.fd.get() < 0) {
    WARN("no IPv6 loopback here; not checked");
    return;
  }
  Fd to_broker = connectTo(broker, AF_INET6);
  REQUIRE(noDelay(to_broker) == 0);
  CHECK(net::setTcpNoDelayToPeer("tcp://[::1]:" + std::to_string(broker.port)) >= 1);
  CHECK(noDelay(to_broker) == 1);
}
