// LiteMqtt against scripted broker bytes: the broker is an untrusted peer, so malformed packets
// must close the connection with a reason, never be misread. (The happy path against a real
// Mosquitto runs in integration.sim_* and bench.sim.smoke.)

#include "outpost/sim/lite_mqtt.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <chrono>
#include <thread>

namespace outpost::sim {
namespace {

using Bytes = std::vector<uint8_t>;

int64_t nowUs() {
  return std::chrono::duration_cast<std::chrono::microseconds>(
             std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

// The broker's side of one TCP connection on 127.0.0.1: accepts, reads the CONNECT, answers
// `connack`, then writes `script`. Reads what the client sends into `received`.
class ScriptedPeer {
 public:
  explicit ScriptedPeer(Bytes connack) {
    lfd_ = ::socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    REQUIRE(::bind(lfd_, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0);
    socklen_t len = sizeof a;
    ::getsockname(lfd_, reinterpret_cast<sockaddr*>(&a), &len);
    port_ = ntohs(a.sin_port);
    ::listen(lfd_, 1);
    thread_ = std::thread([this, connack] {
      fd_ = ::accept(lfd_, nullptr, nullptr);
      uint8_t buf[512];
      (void)::recv(fd_, buf, sizeof buf, 0);  // CONNECT
      (void)::send(fd_, connack.data(), connack.size(), MSG_NOSIGNAL);
    });
  }
  ~ScriptedPeer() {
    if (thread_.joinable()) thread_.join();
    if (fd_ >= 0) ::close(fd_);
    ::close(lfd_);
  }
  std::string uri() const { return "tcp://127.0.0.1:" + std::to_string(port_); }
  void write(const Bytes& b) {
    if (thread_.joinable()) thread_.join();
    REQUIRE(::send(fd_, b.data(), b.size(), MSG_NOSIGNAL) == static_cast<ssize_t>(b.size()));
  }
  // Reads what the client sent within `ms`.
  Bytes read(int ms) {
    if (thread_.joinable()) thread_.join();
    Bytes out;
    const int64_t end = nowUs() + ms * 1000;
    while (nowUs() < end) {
      pollfd p{fd_, POLLIN, 0};
      if (::poll(&p, 1, 10) == 1) {
        uint8_t buf[512];
        const ssize_t n = ::recv(fd_, buf, sizeof buf, 0);
        if (n <= 0) break;
        out.insert(out.end(), buf, buf + n);
      }
    }
    return out;
  }

 private:
  int lfd_ = -1, fd_ = -1;
  uint16_t port_ = 0;
  std::thread thread_;
};

const Bytes kConnackOk = {0x20, 0x02, 0x00, 0x00};

// Runs io() until it fails or `ms` pass; returns whether the connection is still up.
bool pumpFor(LiteMqtt& c, int ms) {
  const int64_t end = nowUs() + ms * 1000;
  while (nowUs() < end) {
    if (!c.io(nowUs())) return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
  }
  return true;
}

TEST_CASE("LiteMqtt handles a broker's packets and refuses malformed ones", "[sim][mqtt]") {
  SECTION("a QoS 1 PUBLISH is delivered and PUBACKed with its packet id") {
    ScriptedPeer peer(kConnackOk);
    LiteMqtt c;
    std::string topic;
    Bytes payload;
    c.setOnMessage([&](std::string_view t, std::span<const uint8_t> p) {
      topic = t;
      payload.assign(p.begin(), p.end());
    });
    REQUIRE(c.connect({peer.uri(), "t1"}));
    // PUBLISH qos 1: topic "a/b", packet id 0x1234, payload "xyz"
    peer.write({0x32, 10, 0x00, 0x03, 'a', '/', 'b', 0x12, 0x34, 'x', 'y', 'z'});
    REQUIRE(pumpFor(c, 100));
    CHECK(topic == "a/b");
    CHECK(payload == Bytes{'x', 'y', 'z'});
    CHECK(peer.read(100) == Bytes{0x40, 0x02, 0x12, 0x34});
  }
  SECTION("publishes count as pending until their PUBACK; unknown PUBACKs are ignored") {
    ScriptedPeer peer(kConnackOk);
    LiteMqtt c;
    REQUIRE(c.connect({peer.uri(), "t2"}));
    const Bytes body = {1, 2, 3};
    REQUIRE(c.publish("t", body, 1, false));
    REQUIRE(pumpFor(c, 50));
    CHECK(c.pending() == 1);
    const Bytes sent = peer.read(100);
    // 0x32 len 2+1+2+3=8, topic "t", id, payload
    REQUIRE(sent.size() == 10);
    CHECK(sent[0] == 0x32);
    peer.write({0x40, 0x02, 0x7f, 0x7f});  // not ours
    REQUIRE(pumpFor(c, 50));
    CHECK(c.pending() == 1);
    peer.write({0x40, 0x02, sent[5], sent[6]});
    REQUIRE(pumpFor(c, 50));
    CHECK(c.pending() == 0);
  }
  SECTION("a refused CONNACK fails connect") {
    ScriptedPeer peer({0x20, 0x02, 0x00, 0x05});
    LiteMqtt c;
    auto st = c.connect({peer.uri(), "t3"});
    REQUIRE_FALSE(st);
    CHECK(st.error().message().find("refused") != std::string::npos);
  }
  SECTION("malformed packets close the connection with the reason") {
    struct Case {
      Bytes bytes;
      const char* reason;
    };
    const Case cases[] = {
        {{0x30, 0xff, 0xff, 0xff, 0xff, 0x01}, "malformed remaining length"},
        {{0x30, 0x80, 0x40}, "exceeds the limit"},                       // 8,192 bytes > 1,024
        {{0x30, 0x04, 0x00, 0x09, 'a', 'b'}, "malformed PUBLISH"},       // topic longer than packet
        {{0x34, 0x02, 0x00, 0x00}, "unsupported or malformed PUBLISH"},  // QoS 2
        {{0x40, 0x03, 0x00, 0x01, 0x00}, "malformed PUBACK"},
        {{0xf0, 0x00}, "unexpected packet type"},
    };
    for (const auto& k : cases) {
      ScriptedPeer peer(kConnackOk);
      LiteMqtt c;
      LiteMqttOptions o{peer.uri(), "t4"};
      o.max_packet = 1024;
      REQUIRE(c.connect(o));
      peer.write(k.bytes);
      CHECK_FALSE(pumpFor(c, 200));
      CHECK_FALSE(c.up());
      INFO(c.lastError());
      CHECK(c.lastError().find(k.reason) != std::string::npos);
    }
  }
  SECTION("ssl:// is refused with a message") {
    LiteMqtt c;
    auto st = c.connect({"ssl://127.0.0.1:8883", "t5"});
    REQUIRE_FALSE(st);
    CHECK(st.error().message().find("only tcp://") != std::string::npos);
  }
}

}  // namespace
}  // namespace outpost::sim
