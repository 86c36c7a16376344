#pragma once

// The operations endpoint both programs serve: /metrics (Prometheus text) and /healthz, plus any
// extra handlers the program adds (the aggregator's dashboard). Runs on its own threads.

#include <functional>
#include <memory>
#include <string>
#include <thread>

#include "outpost/common/metrics.h"
#include "outpost/common/status.h"

namespace httplib {
class Server;
}

namespace outpost {

class HttpServer {
 public:
  // Returns true when healthy; fills `detail` with a one-line explanation either way.
  using HealthFn = std::function<bool(std::string& detail)>;
  struct Response {
    int status = 200;
    std::string content_type = "text/plain; charset=utf-8";
    std::string body;
  };
  using Handler = std::function<Response()>;

  HttpServer(metrics::Registry& registry, HealthFn health);
  ~HttpServer();
  HttpServer(const HttpServer&) = delete;
  HttpServer& operator=(const HttpServer&) = delete;

  // Adds a GET handler; call before start().
  void addHandler(const std::string& path, Handler handler);

  // Binds "host:port" (port 0 = any free port) and starts serving. Call once.
  Status start(const std::string& listen);
  // Port actually bound (after start).
  int port() const { return port_; }
  void stop();

 private:
  std::unique_ptr<httplib::Server> server_;
  std::thread thread_;
  int port_ = 0;
};

// Splits "host:port"; returns false if malformed.
bool splitHostPort(const std::string& s, std::string& host, int& port);

}  // namespace outpost
