#include "outpost/common/http_server.h"

#include <charconv>

#include <httplib.h>

#include "outpost/common/thread_name.h"

namespace outpost {

bool splitHostPort(const std::string& s, std::string& host, int& port) {
  const auto colon = s.rfind(':');
  if (colon == std::string::npos || colon == 0) return false;
  host = s.substr(0, colon);
  const char* b = s.data() + colon + 1;
  const char* e = s.data() + s.size();
  auto [p, ec] = std::from_chars(b, e, port);
  return ec == std::errc() && p == e && port >= 0 && port <= 65535;
}

HttpServer::HttpServer(metrics::Registry& registry, HealthFn health)
    : server_(std::make_unique<httplib::Server>()) {
  // Scrapes and health checks are rare: two handler threads, not httplib's default of 8+ (the
  // agent runs on small boards).
  server_->new_task_queue = [] { return new httplib::ThreadPool(2); };
  server_->Get("/metrics", [&registry](const httplib::Request&, httplib::Response& res) {
    res.set_content(registry.render(), "text/plain; version=0.0.4; charset=utf-8");
  });
  server_->Get("/healthz", [health](const httplib::Request&, httplib::Response& res) {
    std::string detail;
    const bool ok = health ? health(detail) : true;
    res.status = ok ? 200 : 503;
    res.set_content((ok ? "ok " : "unhealthy ") + detail + "\n", "text/plain; charset=utf-8");
  });
}

HttpServer::~HttpServer() { stop(); }

void HttpServer::addHandler(const std::string& path, Handler handler) {
  server_->Get(path, [handler](const httplib::Request&, httplib::Response& res) {
    Response r = handler();
    res.status = r.status;
    res.set_content(r.body, r.content_type);
  });
}

Status HttpServer::start(const std::string& listen) {
  std::string host;
  int port = 0;
  if (!splitHostPort(listen, host, port)) {
    return fail(ErrorCode::kInvalidArgument, "listen address '" + listen + "' is not host:port");
  }
  if (port == 0) {
    port_ = server_->bind_to_any_port(host);
    if (port_ < 0) return fail(ErrorCode::kIoError, "cannot bind " + listen);
  } else {
    if (!server_->bind_to_port(host, port)) {
      return fail(ErrorCode::kIoError, "cannot bind " + listen + " (in use?)");
    }
    port_ = port;
  }
  thread_ = std::thread([this] {
    setThreadName("op-http");
    server_->listen_after_bind();
  });
  return {};
}

void HttpServer::stop() {
  if (thread_.joinable()) {
    server_->stop();
    thread_.join();
  }
}

}  // namespace outpost
