#pragma once

// The operations endpoint both programs serve: /metrics (Prometheus text), /healthz (alive) and
// /readyz (ready to do its job, JSON with the reasons when not), plus any extra handlers the
// program adds (the aggregator's dashboard and device API). Runs on its own threads.

#include <atomic>
#include <cstddef>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "outpost/common/metrics.h"
#include "outpost/common/status.h"

namespace httplib {
class Server;
}

namespace outpost {

class HttpServer {
 public:
  // Returns true when alive; fills `detail` with a one-line explanation either way.
  using HealthFn = std::function<bool(std::string& detail)>;
  // The reasons the program is not ready (empty: ready). Called from an HTTP thread.
  using ReadyFn = std::function<std::vector<std::string>()>;
  struct Response {
    int status = 200;
    std::string content_type = "text/plain; charset=utf-8";
    std::string body;
  };
  using Handler = std::function<Response()>;
  struct Request {
    std::string path;
    std::vector<std::string> matches;                // regex groups of the route (0 = whole path)
    std::multimap<std::string, std::string> params;  // query string, decoded
    // First value of query parameter `key`, or `fallback`.
    std::string param(const std::string& key, const std::string& fallback = "") const;
  };
  using RequestHandler = std::function<Response(const Request&)>;

  // `threads`: handler threads. Every open event stream holds one for its lifetime, and a browser
  // keeps a few keep-alive connections: size it as streams + 4 when streams are served.
  HttpServer(metrics::Registry& registry, HealthFn health, ReadyFn ready = {}, size_t threads = 2);
  ~HttpServer();
  HttpServer(const HttpServer&) = delete;
  HttpServer& operator=(const HttpServer&) = delete;

  // Adds a GET handler for an exact path; call before start().
  void addHandler(const std::string& path, Handler handler);
  // Adds a GET handler for a regular expression over the path (ECMAScript, whole path); call
  // before start().
  void addRequestHandler(const std::string& pattern, RequestHandler handler);
  // Server-sent events on `path`: each client gets one `data: <next()>` event at once and then
  // every `interval_ms`, until it goes away or the server stops. At most `max_clients` at once;
  // beyond that the request is answered 503 (each client holds a handler thread). Call before
  // start(). `next` is called from HTTP threads and must be thread-safe. With interval_ms 0 it is
  // called back to back: it should block (briefly, ~1 s at most) until it has something new.
  void addEventStream(const std::string& path, std::function<std::string()> next, int interval_ms,
                      size_t max_clients);
  // Event-stream clients connected now.
  size_t streamClients() const { return stream_clients_.load(); }

  // Binds "host:port" (port 0 = any free port) and starts serving. Call once.
  Status start(const std::string& listen);
  // Port actually bound (after start).
  int port() const { return port_; }
  void stop();

 private:
  std::unique_ptr<httplib::Server> server_;
  std::thread thread_;
  int port_ = 0;
  std::atomic<bool> stopping_{false};
  std::atomic<size_t> stream_clients_{0};
};

// Splits "host:port"; returns false if malformed.
bool splitHostPort(const std::string& s, std::string& host, int& port);

// The /healthz body: {"status":"ok"|"unhealthy","detail":...} and a newline.
std::string healthBody(bool ok, std::string_view detail);
// The /readyz body: {"ready":true|false,"reasons":[...]} and a newline.
std::string readyBody(const std::vector<std::string>& reasons);

}  // namespace outpost
