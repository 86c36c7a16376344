#include "outpost/common/ops_http_server.h"

#include <event2/buffer.h>
#include <event2/event.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>
#include <spdlog/spdlog.h>
#include <netinet/in.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstdint>
#include <cstring>

#include "outpost/common/config.h"
#include "outpost/common/thread_name.h"

namespace outpost {

OpsHttpServer::OpsHttpServer(metrics::Registry& registry, HttpServer::HealthFn health,
                             HttpServer::ReadyFn ready)
    : registry_(registry), health_(std::move(health)), ready_(std::move(ready)) {}

OpsHttpServer::~OpsHttpServer() {
  stop();
  if (wake_ev_) event_free(wake_ev_);
  if (http_) evhttp_free(http_);
  if (base_) event_base_free(base_);
  if (wake_fd_ >= 0) ::close(wake_fd_);
}

HttpServer::Response OpsHttpServer::respond(const std::string& path) const {
  HttpServer::Response r;
  if (path == "/metrics") {
    r.content_type = "text/plain; version=0.0.4; charset=utf-8";
    r.body = registry_.render();
  } else if (path == "/healthz") {
    std::string detail;
    const bool ok = health_ ? health_(detail) : true;
    r.status = ok ? 200 : 503;
    r.content_type = "application/json";
    r.body = healthBody(ok, detail);
  } else if (path == "/readyz") {
    const std::vector<std::string> reasons = ready_ ? ready_() : std::vector<std::string>{};
    r.body = readyBody(reasons);
    r.status = reasons.empty() ? 200 : 503;
    r.content_type = "application/json";
  } else {
    r.status = 404;
    r.body.clear();
  }
  return r;
}

void OpsHttpServer::onRequest(evhttp_request* req, void* arg) {
  auto* self = static_cast<OpsHttpServer*>(arg);
  // evhttp has parsed and bounded the request line and headers (limits set in start()); only
  // the path is used, the query string is ignored as cpp-httplib's routes do.
  const evhttp_uri* uri = evhttp_request_get_evhttp_uri(req);
  const char* raw = uri ? evhttp_uri_get_path(uri) : nullptr;
  std::string path = raw && *raw ? raw : "/";
  HttpServer::Response r;
  try {
    r = self->respond(path);
  } catch (const std::exception& e) {
    spdlog::warn("http: {} failed: {}", path, e.what());
    r.status = 500;
    r.body = "internal error\n";
  }
  evkeyvalq* headers = evhttp_request_get_output_headers(req);
  if (!r.body.empty() || r.status == 200) {
    evhttp_add_header(headers, "Content-Type", r.content_type.c_str());
  }
  evbuffer* out = evbuffer_new();
  if (!out) {
    evhttp_send_error(req, 500, nullptr);
    return;
  }
  evbuffer_add(out, r.body.data(), r.body.size());
  const char* reason = r.status == 200   ? "OK"
                       : r.status == 404 ? "Not Found"
                       : r.status == 503 ? "Service Unavailable"
                                         : "Internal Server Error";
  evhttp_send_reply(req, r.status, reason, out);
  evbuffer_free(out);
}

void OpsHttpServer::onWake(int fd, short, void* arg) {
  uint64_t v = 0;
  [[maybe_unused]] const ssize_t n = ::read(fd, &v, sizeof v);
  event_base_loopbreak(static_cast<OpsHttpServer*>(arg)->base_);
}

Status OpsHttpServer::start(const std::string& listen) {
  std::string host;
  int port = 0;
  if (!splitHostPort(listen, host, port)) {
    return fail(ErrorCode::kInvalidArgument, "listen address '" + listen + "' is not host:port");
  }
  if (base_) return fail(ErrorCode::kInvalidArgument, "http server already started");
  base_ = event_base_new();
  if (!base_) return fail(ErrorCode::kIoError, "cannot create the HTTP event loop");
  http_ = evhttp_new(base_);
  wake_fd_ = ::eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
  if (!http_ || wake_fd_ < 0) return fail(ErrorCode::kIoError, "cannot create the HTTP server");
  wake_ev_ = event_new(base_, wake_fd_, EV_READ | EV_PERSIST, &OpsHttpServer::onWake, this);
  if (!wake_ev_ || event_add(wake_ev_, nullptr) != 0) {
    return fail(ErrorCode::kIoError, "cannot create the HTTP server's stop event");
  }
  // Scrapes and health checks only: GET and HEAD, small requests, idle connections let go soon
  // (cpp-httplib's keep-alive timeout was 2 s, its read timeout 5 s).
  evhttp_set_allowed_methods(http_, EVHTTP_REQ_GET | EVHTTP_REQ_HEAD);
  evhttp_set_max_headers_size(http_, 16 * 1024);
  evhttp_set_max_body_size(http_, 16 * 1024);
  evhttp_set_timeout(http_, 5);
  evhttp_set_gencb(http_, &OpsHttpServer::onRequest, this);
  evhttp_bound_socket* bound = evhttp_bind_socket_with_handle(http_, host.c_str(), port);
  if (!bound) {
    return fail(ErrorCode::kIoError,
                "cannot bind " + listen + (port != 0 ? " (in use?)" : std::string()));
  }
  sockaddr_storage ss{};
  socklen_t len = sizeof ss;
  const int fd = evhttp_bound_socket_get_fd(bound);
  if (::getsockname(fd, reinterpret_cast<sockaddr*>(&ss), &len) != 0) {
    return fail(ErrorCode::kIoError, "cannot read the bound port of " + listen);
  }
  port_ = ss.ss_family == AF_INET6 ? ntohs(reinterpret_cast<sockaddr_in6*>(&ss)->sin6_port)
                                   : ntohs(reinterpret_cast<sockaddr_in*>(&ss)->sin_port);
  thread_ = std::thread([this] {
    setThreadName("op-http");
    event_base_dispatch(base_);
  });
  return {};
}

void OpsHttpServer::stop() {
  if (!thread_.joinable()) return;
  const uint64_t one = 1;
  [[maybe_unused]] const ssize_t n = ::write(wake_fd_, &one, sizeof one);
  thread_.join();
}

}  // namespace outpost
