// One virtual device's ZeroMQ uplink, the agent's protocol (common/zmq_protocol.h,
// agent/src/uplink/zmq_uplink.cc): a CURVE DEALER socket to the aggregator's ROUTER sending
// "batch" <Batch> and "ping", receiving "ack" <Ack> and "pong". The aggregator knows the device
// by the key it authenticated with, so every virtual device has its own socket and key pair.

#include <spdlog/spdlog.h>

#include <array>
#include <cstring>

#include "links.h"
#include "outpost/common/zmq_protocol.h"
#include "outpost/sim/fleet.h"

namespace outpost::sim {
namespace {

std::string zmqError() { return zmq_strerror(zmq_errno()); }

class ZmqLink final : public Link {
 public:
  ZmqLink(void* ctx, ZmqLinkOptions o, OnAck on_ack)
      : ctx_(ctx), opt_(std::move(o)), on_ack_(std::move(on_ack)) {}
  ~ZmqLink() override { close(); }

  Status connect() override {
    close();
    sock_ = zmq_socket(ctx_, ZMQ_DEALER);
    if (!sock_) return fail(ErrorCode::kUnavailable, "zmq_socket: " + zmqError());
    const int zero = 0, one = 1, max_msg = 1 << 20;
    const int64_t max_size = max_msg;
    bool ok = zmq_setsockopt(sock_, ZMQ_LINGER, &zero, sizeof zero) == 0 &&
              zmq_setsockopt(sock_, ZMQ_IMMEDIATE, &one, sizeof one) == 0 &&
              zmq_setsockopt(sock_, ZMQ_SNDHWM, &opt_.sndhwm, sizeof opt_.sndhwm) == 0 &&
              zmq_setsockopt(sock_, ZMQ_MAXMSGSIZE, &max_size, sizeof max_size) == 0 &&
              zmq_setsockopt(sock_, ZMQ_CURVE_SERVERKEY, opt_.server_public_key.c_str(), 41) == 0 &&
              zmq_setsockopt(sock_, ZMQ_CURVE_PUBLICKEY, opt_.public_key.c_str(), 41) == 0 &&
              zmq_setsockopt(sock_, ZMQ_CURVE_SECRETKEY, opt_.secret_key.c_str(), 41) == 0;
    if (!ok || zmq_connect(sock_, opt_.endpoint.c_str()) != 0) {
      std::string why = zmqError();
      close();
      return fail(ErrorCode::kUnavailable, "ZeroMQ " + opt_.endpoint + ": " + why);
    }
    last_heard_us_ = last_sent_us_ = 0;
    error_.clear();
    return {};
  }

  bool io(int64_t now, bool read) override {
    if (!sock_) return false;
    last_now_ = now;
    if (last_heard_us_ == 0) last_heard_us_ = last_sent_us_ = now;
    if (read) {
      for (;;) {
        zmq_msg_t kind;
        zmq_msg_init(&kind);
        if (zmq_msg_recv(&kind, sock_, ZMQ_DONTWAIT) < 0) {
          zmq_msg_close(&kind);
          break;
        }
        last_heard_us_ = now;
        const std::string_view k(static_cast<const char*>(zmq_msg_data(&kind)),
                                 zmq_msg_size(&kind));
        bool more = zmq_msg_more(&kind);
        zmq_msg_close(&kind);
        int frames = 0;
        while (more) {
          zmq_msg_t body;
          zmq_msg_init(&body);
          if (zmq_msg_recv(&body, sock_, 0) < 0) {
            zmq_msg_close(&body);
            break;
          }
          more = zmq_msg_more(&body);
          if (++frames == 1 && !more && k == zmqproto::kAck && on_ack_) {
            on_ack_({static_cast<const uint8_t*>(zmq_msg_data(&body)), zmq_msg_size(&body)});
          }
          zmq_msg_close(&body);
        }
        // "pong" (or anything else): counts as heard, nothing else to do.
      }
    }
    const int64_t hb = int64_t{opt_.heartbeat_ms} * 1000;
    if (now - last_heard_us_ > hb * opt_.liveness) {
      error_ = "no reply from the aggregator for " + std::to_string((now - last_heard_us_) / 1000) +
               " ms (CURVE handshake refused, or the aggregator is away)";
      close();
      return false;
    }
    if (now - last_sent_us_ >= hb && send(zmqproto::kPing, {})) last_sent_us_ = now;
    return true;
  }

  bool publish(const std::string&, std::span<const uint8_t> payload, bool) override {
    if (!sock_ || !send(zmqproto::kBatch, payload)) return false;
    return true;
  }

  bool busy() const override {
    if (!sock_) return true;
    int events = 0;
    size_t len = sizeof events;
    zmq_getsockopt(sock_, ZMQ_EVENTS, &events, &len);
    return (events & ZMQ_POLLOUT) == 0;  // no completed connection, or the high-water mark
  }

  zmq_pollitem_t pollItem() const override { return {sock_, 0, ZMQ_POLLIN, 0}; }
  void disconnect() override { close(); }
  std::string lastError() const override { return error_; }

 private:
  bool send(std::string_view kind, std::span<const uint8_t> body) {
    const bool with_body = kind == zmqproto::kBatch;
    if (zmq_send(sock_, kind.data(), kind.size(), ZMQ_DONTWAIT | (with_body ? ZMQ_SNDMORE : 0)) <
        0) {
      return false;
    }
    // The first frame went: the second cannot fail on the high-water mark (atomic multipart).
    if (with_body && zmq_send(sock_, body.data(), body.size(), 0) < 0) return false;
    last_sent_us_ = last_now_;
    return true;
  }
  void close() {
    if (sock_) zmq_close(sock_);
    sock_ = nullptr;
  }

  void* ctx_;
  void* sock_ = nullptr;
  ZmqLinkOptions opt_;
  OnAck on_ack_;
  int64_t last_heard_us_ = 0, last_sent_us_ = 0, last_now_ = 0;
  std::string error_;
};

}  // namespace

std::unique_ptr<Link> makeZmqLink(void* ctx, ZmqLinkOptions o, Link::OnAck on_ack) {
  return std::make_unique<ZmqLink>(ctx, std::move(o), std::move(on_ack));
}

Result<SimKeyPair> simCurveKeyPair(uint64_t seed, int64_t index) {
  // 32 secret bytes from a splitmix64 stream of (seed, "keys", index); Z85, then the public key
  // is derived from the secret (crypto_scalarmult_base inside zmq_curve_public).
  Rng rng = Rng::derive(seed, 0x6b657973 /* "keys" */, static_cast<uint64_t>(index + 1));
  std::array<uint8_t, 32> secret{};
  for (size_t i = 0; i < secret.size(); i += 8) {
    const uint64_t v = rng.next();
    std::memcpy(secret.data() + i, &v, 8);
  }
  char z85_secret[41] = {}, z85_public[41] = {};
  if (!zmq_z85_encode(z85_secret, secret.data(), secret.size()) ||
      zmq_curve_public(z85_public, z85_secret) != 0) {
    return fail(ErrorCode::kInternal, "CURVE key derivation failed (libzmq without CURVE?)");
  }
  return SimKeyPair{z85_public, z85_secret};
}

}  // namespace outpost::sim
