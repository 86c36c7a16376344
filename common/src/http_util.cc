// splitHostPort, healthBody and readyBody (http_server.h): shared by both HTTP servers, so that neither server
// library is needed to use them.
#include <charconv>
#include <string>
#include <string_view>

#include "outpost/common/http_server.h"
#include "outpost/common/json.h"

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

std::string healthBody(bool ok, std::string_view detail) {
  std::string body;
  json::Writer w(body);
  w.beginObject().member("status", ok ? "ok" : "unhealthy").member("detail", detail).endObject();
  return body + "\n";
}

std::string readyBody(const std::vector<std::string>& reasons) {
  std::string body;
  json::Writer w(body);
  w.beginObject().member("ready", reasons.empty()).key("reasons").beginArray();
  for (const auto& r : reasons) w.string(r);
  w.endArray().endObject();
  return body + "\n";
}

}  // namespace outpost
