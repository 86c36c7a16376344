// MqttClient over Paho's C asynchronous API. Compiled twice from this one file: into the agent
// library (linked with the non-SSL libpaho-mqtt3a) and into the TLS module (linked statically with
// the SSL build, libpaho-mqtt3as, whose symbols stay inside the module): mqtt_client.h.
#include <MQTTAsync.h>

#include <cstring>
#include <map>

#include "outpost/agent/mqtt_client.h"
#include "outpost/common/thread_annotations.h"

namespace outpost::agent {
namespace {

class PahoClient final : public MqttClient {
 public:
  PahoClient(MQTTAsync handle, const MqttClientOptions& options, MqttCallbacks callbacks)
      : handle_(handle), options_(options), callbacks_(std::move(callbacks)) {}

  ~PahoClient() override {
    // Completes (or fails) every pending operation; no callback of this client runs afterwards.
    MQTTAsync_destroy(&handle_);
    MutexLock lock(mu_);
    pending_.clear();
  }

  // Paho's callbacks (its threads).
  static int onMessage(void* ctx, char* topic, int topic_len, MQTTAsync_message* m) {
    auto* self = static_cast<PahoClient*>(ctx);
    if (self->callbacks_.on_message) {
      const size_t n = topic_len > 0 ? static_cast<size_t>(topic_len) : std::strlen(topic);
      self->callbacks_.on_message(
          std::string_view(topic, n),
          std::string_view(static_cast<const char*>(m->payload), static_cast<size_t>(m->payloadlen)));
    }
    MQTTAsync_freeMessage(&m);
    MQTTAsync_free(topic);
    return 1;  // handled: Paho frees nothing more and does not redeliver
  }
  static void onLost(void* ctx, char* cause) {
    auto* self = static_cast<PahoClient*>(ctx);
    if (self->callbacks_.on_connection_lost) self->callbacks_.on_connection_lost(cause ? cause : "");
  }

  Status connect(const MqttConnectOptions& o) override {
    // Kept in the client: Paho may read the strings until the connect completes.
    connect_options_ = o;
    const MqttConnectOptions& c = connect_options_;
    MQTTAsync_connectOptions opts = MQTTAsync_connectOptions_initializer;
    opts.keepAliveInterval = c.keepalive_s;
    opts.cleansession = c.clean_session ? 1 : 0;
    opts.connectTimeout = static_cast<int>(c.timeout.count());
    MQTTAsync_willOptions will = MQTTAsync_willOptions_initializer;
    if (!c.will.topic.empty()) {
      will.topicName = c.will.topic.c_str();
      will.message = nullptr;  // binary payload below
      will.payload.data = c.will.payload.data();
      will.payload.len = static_cast<int>(c.will.payload.size());
      will.qos = c.will.qos;
      will.retained = c.will.retained ? 1 : 0;
      opts.will = &will;
    }
    const auto& sec = c.security;
    if (!sec.username.empty()) opts.username = sec.username.c_str();
    if (!sec.password.empty()) opts.password = sec.password.c_str();
    MQTTAsync_SSLOptions ssl = MQTTAsync_SSLOptions_initializer;
    if (sec.tls) {
      if (!sec.ca_file.empty()) ssl.trustStore = sec.ca_file.c_str();
      if (!sec.cert_file.empty()) ssl.keyStore = sec.cert_file.c_str();
      if (!sec.key_file.empty()) ssl.privateKey = sec.key_file.c_str();
      ssl.enableServerCertAuth = sec.verify ? 1 : 0;
      ssl.verify = sec.verify ? 1 : 0;  // host name check
      ssl.sslVersion = MQTT_SSL_VERSION_TLS_1_2;
      opts.ssl = &ssl;
    }
    auto op = newOp();
    opts.onSuccess = &PahoClient::onSuccess;
    opts.onFailure = &PahoClient::onFailure;
    opts.context = op.get();
    const int rc = MQTTAsync_connect(handle_, &opts);
    if (rc != MQTTASYNC_SUCCESS) {
      dropOp(op.get());
      return failWith(rc, "connect");
    }
    auto st = wait(op, c.timeout + std::chrono::seconds(1), "connect");
    if (st && !connected()) return fail(ErrorCode::kUnavailable, "not connected after CONNACK");
    return st;
  }

  bool connected() const override { return MQTTAsync_isConnected(handle_) != 0; }

  Status publish(const std::string& topic, const void* data, size_t size, int qos, bool retained,
                 std::chrono::milliseconds wait_for) override {
    MQTTAsync_message msg = MQTTAsync_message_initializer;
    msg.payload = const_cast<void*>(data);  // Paho copies it
    msg.payloadlen = static_cast<int>(size);
    msg.qos = qos;
    msg.retained = retained ? 1 : 0;
    MQTTAsync_responseOptions ro = MQTTAsync_responseOptions_initializer;
    std::shared_ptr<Op> op;
    if (wait_for.count() > 0) {
      op = newOp();
      ro.onSuccess = &PahoClient::onSuccess;
      ro.onFailure = &PahoClient::onFailure;
      ro.context = op.get();
    }
    const int rc = MQTTAsync_sendMessage(handle_, topic.c_str(), &msg, &ro);
    if (rc != MQTTASYNC_SUCCESS) {
      if (op) dropOp(op.get());
      return failWith(rc, "publish to " + topic);
    }
    if (!op) return {};
    return wait(op, wait_for, "publish to " + topic);
  }

  Status subscribe(const std::string& filter, int qos, std::chrono::milliseconds wait_for) override {
    auto op = newOp();
    MQTTAsync_responseOptions ro = responseOptions(op.get());
    const int rc = MQTTAsync_subscribe(handle_, filter.c_str(), qos, &ro);
    if (rc != MQTTASYNC_SUCCESS) {
      dropOp(op.get());
      return failWith(rc, "subscribe to " + filter);
    }
    return wait(op, wait_for, "subscribe to " + filter);
  }

  Status unsubscribe(const std::string& filter, std::chrono::milliseconds wait_for) override {
    auto op = newOp();
    MQTTAsync_responseOptions ro = responseOptions(op.get());
    const int rc = MQTTAsync_unsubscribe(handle_, filter.c_str(), &ro);
    if (rc != MQTTASYNC_SUCCESS) {
      dropOp(op.get());
      return failWith(rc, "unsubscribe from " + filter);
    }
    return wait(op, wait_for, "unsubscribe from " + filter);
  }

  void disconnect(std::chrono::milliseconds quiesce, std::chrono::milliseconds wait_for) override {
    auto op = newOp();
    MQTTAsync_disconnectOptions d = MQTTAsync_disconnectOptions_initializer;
    d.timeout = static_cast<int>(quiesce.count());
    d.onSuccess = &PahoClient::onSuccess;
    d.onFailure = &PahoClient::onFailure;
    d.context = op.get();
    if (MQTTAsync_disconnect(handle_, &d) != MQTTASYNC_SUCCESS) {
      dropOp(op.get());
      return;
    }
    (void)wait(op, wait_for, "disconnect");
  }

 private:
  // One operation whose completion a caller waits for. Paho holds the raw pointer as its context;
  // pending_ keeps the Op alive until Paho completes it, even when the caller stopped waiting.
  struct Op {
    PahoClient* client;
    // Written by complete() and read by wait(), both under client->mu_.
    bool done = false;
    int rc = 0;
    std::string message;
  };

  std::shared_ptr<Op> newOp() {
    auto op = std::make_shared<Op>();
    op->client = this;
    MutexLock lock(mu_);
    pending_[op.get()] = op;
    return op;
  }
  void dropOp(Op* op) {
    MutexLock lock(mu_);
    pending_.erase(op);
  }
  static MQTTAsync_responseOptions responseOptions(Op* op) {
    MQTTAsync_responseOptions ro = MQTTAsync_responseOptions_initializer;
    ro.onSuccess = &PahoClient::onSuccess;
    ro.onFailure = &PahoClient::onFailure;
    ro.context = op;
    return ro;
  }
  static void complete(void* ctx, int rc, const char* message) {
    auto* op = static_cast<Op*>(ctx);
    PahoClient* self = op->client;
    MutexLock lock(self->mu_);
    op->done = true;
    op->rc = rc;
    if (message) op->message = message;
    self->pending_.erase(op);  // the waiter, if still waiting, holds its own reference
    self->cv_.notify_all();
  }
  static void onSuccess(void* ctx, MQTTAsync_successData*) {
    complete(ctx, MQTTASYNC_SUCCESS, nullptr);
  }
  static void onFailure(void* ctx, MQTTAsync_failureData* f) {
    complete(ctx, f && f->code != MQTTASYNC_SUCCESS ? f->code : MQTTASYNC_FAILURE,
             f ? f->message : nullptr);
  }

  Status wait(const std::shared_ptr<Op>& op, std::chrono::milliseconds timeout,
              const std::string& what) {
    MutexLock lock(mu_);
    if (!cv_.wait_for(lock, timeout, [&] { return op->done; })) {
      return fail(ErrorCode::kUnavailable, what + ": timed out");
    }
    if (op->rc == MQTTASYNC_SUCCESS) return {};
    std::string why = op->message.empty() ? reason(op->rc) : op->message;
    return fail(ErrorCode::kUnavailable, what + " failed: " + why);
  }

  static std::string reason(int rc) {
    const char* s = MQTTAsync_strerror(rc);
    return s ? std::string(s) : "Paho error " + std::to_string(rc);
  }
  static std::unexpected<Error> failWith(int rc, const std::string& what) {
    return fail(ErrorCode::kUnavailable, what + " failed: " + reason(rc));
  }

  MQTTAsync handle_;
  const MqttClientOptions options_;
  const MqttCallbacks callbacks_;
  MqttConnectOptions connect_options_;  // the last connect's (its strings outlive the call)
  Mutex mu_;
  CondVar cv_;
  std::map<Op*, std::shared_ptr<Op>> pending_ GUARDED_BY(mu_);
};

}  // namespace

Result<std::unique_ptr<MqttClient>> makePahoClient(const MqttClientOptions& options,
                                                   MqttCallbacks callbacks) {
  MQTTAsync_createOptions co = MQTTAsync_createOptions_initializer;
  co.MQTTVersion = MQTTVERSION_DEFAULT;
  co.sendWhileDisconnected = 0;  // the outbox is the buffer
  co.maxBufferedMessages = options.max_buffered;
  MQTTAsync handle = nullptr;
  int rc = MQTTAsync_createWithOptions(&handle, options.broker.c_str(), options.client_id.c_str(),
                                       MQTTCLIENT_PERSISTENCE_NONE, nullptr, &co);
  if (rc != MQTTASYNC_SUCCESS) {
    const char* s = MQTTAsync_strerror(rc);
    return fail(ErrorCode::kInvalidArgument,
                "MQTT broker \"" + options.broker + "\" is not usable: " +
                    (s ? std::string(s) : "Paho error " + std::to_string(rc)));
  }
  auto client = std::make_unique<PahoClient>(handle, options, std::move(callbacks));
  rc = MQTTAsync_setCallbacks(handle, client.get(), &PahoClient::onLost, &PahoClient::onMessage,
                              nullptr);
  if (rc != MQTTASYNC_SUCCESS) {
    return fail(ErrorCode::kInternal, "MQTTAsync_setCallbacks: " + std::to_string(rc));
  }
  return std::unique_ptr<MqttClient>(std::move(client));
}

}  // namespace outpost::agent
