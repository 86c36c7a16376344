// splitHostPort and jsonQuote (http_server.h): shared by both HTTP servers, so that neither server
// library is needed to use them.
#include <charconv>
#include <cstdio>
#include <string>
#include <string_view>

#include "outpost/common/http_server.h"

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

std::string jsonQuote(std::string_view s) {
  std::string out;
  out.reserve(s.size() + 2);
  out += '"';
  for (unsigned char c : s) {
    switch (c) {
      case '"':
        out += "\\\"";
        break;
      case '\\':
        out += "\\\\";
        break;
      case '\n':
        out += "\\n";
        break;
      case '\r':
        out += "\\r";
        break;
      case '\t':
        out += "\\t";
        break;
      default:
        if (c < 0x20 || c >= 0x7f) {
          // Bytes outside printable ASCII are escaped one by one: the output is valid JSON
          // whatever the input (device-reported strings are untrusted).
          char buf[8];
          std::snprintf(buf, sizeof buf, "\\u%04x", c);
          out += buf;
        } else {
          out += static_cast<char>(c);
        }
    }
  }
  out += '"';
  return out;
}

}  // namespace outpost
