#pragma once

// The agent's operations endpoint: /metrics (Prometheus text), /healthz and /readyz, with the same
// responses as HttpServer (http_server.h), served by libevent's evhttp on one thread. The agent
// uses this one and not HttpServer because Debian's cpp-httplib initialises OpenSSL from a static
// constructor when it is loaded (~1.3 MB resident even without TLS); libevent's core library needs
// only libc and initialises nothing at load (docs/bench-notes/agent-footprint.md).

#include <atomic>
#include <string>
#include <thread>

#include "outpost/common/http_server.h"
#include "outpost/common/metrics.h"
#include "outpost/common/status.h"

struct event_base;
struct evhttp;
struct evhttp_request;
struct event;

namespace outpost {

namespace config {
class Config;
}

class OpsHttpServer {
 public:
  OpsHttpServer(metrics::Registry& registry, HttpServer::HealthFn health,
                HttpServer::ReadyFn ready = {});
  ~OpsHttpServer();
  OpsHttpServer(const OpsHttpServer&) = delete;
  OpsHttpServer& operator=(const OpsHttpServer&) = delete;

  // Binds "host:port" (port 0 = any free port) and starts serving on its own thread. Call once.
  Status start(const std::string& listen);
  // Port actually bound (after start).
  int port() const { return port_; }
  void stop();

 private:
  static void onRequest(evhttp_request* req, void* self);
  static void onWake(int fd, short what, void* self);
  HttpServer::Response respond(const std::string& path) const;

  metrics::Registry& registry_;
  HttpServer::HealthFn health_;
  HttpServer::ReadyFn ready_;
  event_base* base_ = nullptr;
  evhttp* http_ = nullptr;
  event* wake_ev_ = nullptr;
  int wake_fd_ = -1;  // eventfd: stop() writes, the loop thread breaks out
  std::thread thread_;
  int port_ = 0;
};

}  // namespace outpost
