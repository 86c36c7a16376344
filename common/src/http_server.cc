#include "outpost/common/http_server.h"

#include <httplib.h>

#include <charconv>
#include <chrono>
#include <cstdio>

#include <spdlog/spdlog.h>

#include "outpost/common/cli.h"
#include "outpost/common/config.h"
#include "outpost/common/json.h"

#include "outpost/common/thread_name.h"

namespace outpost {

std::string HttpServer::Request::param(const std::string& key, const std::string& fallback) const {
  auto it = params.find(key);
  return it == params.end() ? fallback : it->second;
}

HttpServer::HttpServer(metrics::Registry& registry, HealthFn health, ReadyFn ready, size_t threads)
    : server_(std::make_unique<httplib::Server>()) {
  // Scrapes and health checks are rare: few handler threads, not httplib's default of 8+ (the
  // agent runs on small boards).
  if (threads < 1) threads = 1;
  server_->new_task_queue = [threads] { return new httplib::ThreadPool(threads); };
  // An idle keep-alive connection holds a handler thread: let it go soon.
  server_->set_keep_alive_timeout(2);
  // Responses go out in several writes (headers, body): without this, a response on a kept-alive
  // connection waits for the browser's delayed ACK (~40 ms per round).
  server_->set_tcp_nodelay(true);
  server_->Get("/metrics", [&registry](const httplib::Request&, httplib::Response& res) {
    res.set_content(registry.render(), "text/plain; version=0.0.4; charset=utf-8");
  });
  server_->Get("/healthz", [health](const httplib::Request&, httplib::Response& res) {
    std::string detail;
    const bool ok = health ? health(detail) : true;
    res.status = ok ? 200 : 503;
    res.set_content(healthBody(ok, detail), "application/json");
  });
  server_->Get("/readyz", [ready](const httplib::Request&, httplib::Response& res) {
    const std::vector<std::string> reasons = ready ? ready() : std::vector<std::string>{};
    res.status = reasons.empty() ? 200 : 503;
    res.set_content(readyBody(reasons), "application/json");
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

void HttpServer::addRequestHandler(const std::string& pattern, RequestHandler handler) {
  server_->Get(pattern, [handler](const httplib::Request& req, httplib::Response& res) {
    Request r;
    r.path = req.path;
    for (const auto& m : req.matches) r.matches.push_back(m.str());
    for (const auto& [k, v] : req.params) r.params.emplace(k, v);
    Response out = handler(r);
    res.status = out.status;
    res.set_content(out.body, out.content_type);
  });
}

void HttpServer::addEventStream(const std::string& path, std::function<std::string()> next,
                                int interval_ms, size_t max_clients) {
  server_->Get(path, [this, next, interval_ms, max_clients](const httplib::Request&,
                                                            httplib::Response& res) {
    if (stream_clients_.fetch_add(1) >= max_clients) {
      stream_clients_.fetch_sub(1);
      res.status = 503;
      res.set_header("Retry-After", "5");
      std::string body;
      json::Writer(body)
          .beginObject()
          .member("error",
                  "too many event-stream clients (limit " + std::to_string(max_clients) + ")")
          .endObject();
      body += "\n";
      res.set_content(body, "application/json");
      return;
    }
    res.set_header("Cache-Control", "no-cache");
    auto first = std::make_shared<bool>(true);
    res.set_chunked_content_provider(
        "text/event-stream",
        [this, next, interval_ms, first](size_t, httplib::DataSink& sink) {
          if (!*first) {
            // Sleep in slices so that stop() does not wait a whole interval per client.
            const auto until =
                std::chrono::steady_clock::now() + std::chrono::milliseconds(interval_ms);
            while (std::chrono::steady_clock::now() < until) {
              if (stopping_.load()) return false;
              std::this_thread::sleep_for(std::chrono::milliseconds(50));
            }
          }
          *first = false;
          if (stopping_.load() || !sink.is_writable()) return false;
          const std::string ev = "data: " + next() + "\n\n";
          return sink.write(ev.data(), ev.size());
        },
        [this](bool) { stream_clients_.fetch_sub(1); });
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
  stopping_.store(true);
  if (thread_.joinable()) {
    server_->stop();
    thread_.join();
  }
}

}  // namespace outpost
