#include "outpost/common/json.h"

#include <charconv>
#include <cmath>

namespace outpost::json {
namespace {

// Length of a valid UTF-8 sequence starting at s[i] (a byte >= 0x80), or 0.
size_t utf8Length(std::string_view s, size_t i) {
  const auto c = static_cast<unsigned char>(s[i]);
  size_t n;
  uint32_t min;
  if (c >= 0xC2 && c <= 0xDF) {
    n = 2, min = 0x80;
  } else if (c >= 0xE0 && c <= 0xEF) {
    n = 3, min = 0x800;
  } else if (c >= 0xF0 && c <= 0xF4) {
    n = 4, min = 0x10000;
  } else {
    return 0;
  }
  if (i + n > s.size()) return 0;
  uint32_t cp = c & (0x7F >> n);
  for (size_t k = 1; k < n; ++k) {
    const auto cc = static_cast<unsigned char>(s[i + k]);
    if ((cc & 0xC0) != 0x80) return 0;
    cp = (cp << 6) | (cc & 0x3F);
  }
  if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) return 0;
  return n;
}

// Printable ASCII other than '"' and '\': copied as is.
inline bool plain(unsigned char c) { return c >= 0x20 && c < 0x7F && c != '"' && c != '\\'; }

void appendUtf8(std::string& out, uint32_t cp) {
  if (cp < 0x80) {
    out += static_cast<char>(cp);
  } else if (cp < 0x800) {
    out += static_cast<char>(0xC0 | (cp >> 6));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  } else if (cp < 0x10000) {
    out += static_cast<char>(0xE0 | (cp >> 12));
    out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  } else {
    out += static_cast<char>(0xF0 | (cp >> 18));
    out += static_cast<char>(0x80 | ((cp >> 12) & 0x3F));
    out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  }
}

}  // namespace

void appendString(std::string& out, std::string_view s) {
  static constexpr char kHex[] = "0123456789abcdef";
  out += '"';
  size_t i = 0;
  while (i < s.size()) {
    size_t run = i;
    while (run < s.size() && plain(static_cast<unsigned char>(s[run]))) ++run;
    out.append(s.data() + i, run - i);
    i = run;
    if (i >= s.size()) break;
    const auto c = static_cast<unsigned char>(s[i]);
    if (c >= 0x80) {
      if (const size_t n = utf8Length(s, i)) {
        out.append(s.data() + i, n);
        i += n;
      } else {
        out += "\\ufffd";
        ++i;
      }
      continue;
    }
    switch (c) {
      case '"': out += "\\\""; break;
      case '\\': out += "\\\\"; break;
      case '\n': out += "\\n"; break;
      case '\r': out += "\\r"; break;
      case '\t': out += "\\t"; break;
      default:  // other control characters and DEL
        out += "\\u00";
        out += kHex[c >> 4];
        out += kHex[c & 15];
    }
    ++i;
  }
  out += '"';
}

void appendNumber(std::string& out, double v) {
  if (!std::isfinite(v)) {
    out += "null";
    return;
  }
  char buf[32];
  auto [p, ec] = std::to_chars(buf, buf + sizeof buf, v);
  out.append(buf, p);
}

std::string quote(std::string_view s) {
  std::string out;
  out.reserve(s.size() + 2);
  appendString(out, s);
  return out;
}

// ---- Value ----

std::optional<bool> Value::asBool() const {
  if (kind_ != Kind::kBool) return std::nullopt;
  return bool_;
}

std::optional<double> Value::asDouble() const {
  if (kind_ != Kind::kNumber) return std::nullopt;
  return number_;
}

std::optional<int64_t> Value::asInt() const {
  if (kind_ != Kind::kNumber) return std::nullopt;
  int64_t v = 0;
  const char* b = text_.data();
  const char* e = b + text_.size();
  auto [p, ec] = std::from_chars(b, e, v);
  if (ec != std::errc() || p != e) return std::nullopt;  // a fraction, an exponent, or too big
  return v;
}

const std::string* Value::asString() const {
  return kind_ == Kind::kString ? &text_ : nullptr;
}

const Value* Value::find(std::string_view k) const {
  for (size_t i = keys_.size(); i-- > 0;) {
    if (keys_[i] == k) return &items_[i];
  }
  return nullptr;
}

void Value::write(Writer& w) const {
  switch (kind_) {
    case Kind::kNull: w.null(); break;
    case Kind::kBool: w.boolean(bool_); break;
    case Kind::kNumber: w.number(number_); break;
    case Kind::kString: w.string(text_); break;
    case Kind::kArray:
      w.beginArray();
      for (const Value& v : items_) v.write(w);
      w.endArray();
      break;
    case Kind::kObject:
      w.beginObject();
      for (size_t i = 0; i < items_.size(); ++i) {
        w.key(keys_[i]);
        items_[i].write(w);
      }
      w.endObject();
      break;
  }
}

// ---- Parser ----

class Parser {
 public:
  Parser(std::string_view s, const ParseLimits& limits) : s_(s), limits_(limits) {}

  Result<Value> document() {
    if (s_.size() > limits_.max_bytes) {
      return fail(ErrorCode::kResourceExhausted,
                  "JSON document of " + std::to_string(s_.size()) + " bytes is over the limit of " +
                      std::to_string(limits_.max_bytes));
    }
    Value v;
    skipSpace();
    if (!value(v, 0)) return std::unexpected(std::move(*error_));
    skipSpace();
    if (i_ != s_.size()) return error(ErrorCode::kInvalidArgument, "unexpected data after the value");
    return v;
  }

 private:
  std::unexpected<Error> error(ErrorCode code, const std::string& what) {
    return fail(code, "invalid JSON at byte " + std::to_string(i_) + ": " + what);
  }
  bool bad(const std::string& what, ErrorCode code = ErrorCode::kInvalidArgument) {
    if (!error_) error_ = error(code, what).error();
    return false;
  }

  void skipSpace() {
    while (i_ < s_.size() &&
           (s_[i_] == ' ' || s_[i_] == '\t' || s_[i_] == '\n' || s_[i_] == '\r')) {
      ++i_;
    }
  }

  bool value(Value& v, int depth) {
    if (++values_ > limits_.max_values) {
      return bad("more than " + std::to_string(limits_.max_values) + " values",
                 ErrorCode::kResourceExhausted);
    }
    if (i_ >= s_.size()) return bad("unexpected end, expected a value");
    switch (s_[i_]) {
      case '{': return object(v, depth + 1);
      case '[': return array(v, depth + 1);
      case '"': v.kind_ = Value::Kind::kString; return string(v.text_);
      case 't': v.kind_ = Value::Kind::kBool; v.bool_ = true; return literal("true");
      case 'f': v.kind_ = Value::Kind::kBool; return literal("false");
      case 'n': return literal("null");
      default:
        if (s_[i_] == '-' || (s_[i_] >= '0' && s_[i_] <= '9')) return number(v);
        return bad("unexpected character, expected a value");
    }
  }

  bool literal(std::string_view word) {
    if (s_.substr(i_, word.size()) != word) return bad("unexpected character, expected a value");
    i_ += word.size();
    return true;
  }

  bool nested(int depth) {
    if (depth > limits_.max_depth) {
      return bad("nested deeper than " + std::to_string(limits_.max_depth) + " levels",
                 ErrorCode::kResourceExhausted);
    }
    return true;
  }

  bool object(Value& v, int depth) {
    if (!nested(depth)) return false;
    v.kind_ = Value::Kind::kObject;
    ++i_;  // '{'
    skipSpace();
    if (i_ < s_.size() && s_[i_] == '}') {
      ++i_;
      return true;
    }
    for (;;) {
      skipSpace();
      if (i_ >= s_.size() || s_[i_] != '"') return bad("expected a member name (a string)");
      std::string& k = v.keys_.emplace_back();
      if (!string(k)) return false;
      skipSpace();
      if (i_ >= s_.size() || s_[i_] != ':') return bad("expected ':' after a member name");
      ++i_;
      skipSpace();
      if (!value(v.items_.emplace_back(), depth)) return false;
      skipSpace();
      if (i_ >= s_.size()) return bad("unexpected end inside an object");
      if (s_[i_] == ',') {
        ++i_;
        continue;
      }
      if (s_[i_] == '}') {
        ++i_;
        return true;
      }
      return bad("expected ',' or '}' in an object");
    }
  }

  bool array(Value& v, int depth) {
    if (!nested(depth)) return false;
    v.kind_ = Value::Kind::kArray;
    ++i_;  // '['
    skipSpace();
    if (i_ < s_.size() && s_[i_] == ']') {
      ++i_;
      return true;
    }
    for (;;) {
      skipSpace();
      if (!value(v.items_.emplace_back(), depth)) return false;
      skipSpace();
      if (i_ >= s_.size()) return bad("unexpected end inside an array");
      if (s_[i_] == ',') {
        ++i_;
        continue;
      }
      if (s_[i_] == ']') {
        ++i_;
        return true;
      }
      return bad("expected ',' or ']' in an array");
    }
  }

  bool hex4(uint32_t& cp) {
    if (i_ + 4 > s_.size()) return bad("truncated \\u escape");
    cp = 0;
    for (int k = 0; k < 4; ++k) {
      const char c = s_[i_++];
      cp <<= 4;
      if (c >= '0' && c <= '9') {
        cp |= static_cast<uint32_t>(c - '0');
      } else if (c >= 'a' && c <= 'f') {
        cp |= static_cast<uint32_t>(c - 'a' + 10);
      } else if (c >= 'A' && c <= 'F') {
        cp |= static_cast<uint32_t>(c - 'A' + 10);
      } else {
        --i_;
        return bad("\\u escape needs 4 hex digits");
      }
    }
    return true;
  }

  bool string(std::string& out) {
    ++i_;  // '"'
    for (;;) {
      const size_t run = i_;
      while (i_ < s_.size() && s_[i_] != '"' && s_[i_] != '\\' &&
             static_cast<unsigned char>(s_[i_]) >= 0x20 && static_cast<unsigned char>(s_[i_]) < 0x80) {
        ++i_;
      }
      out.append(s_.data() + run, i_ - run);
      if (i_ >= s_.size()) return bad("unterminated string");
      const auto c = static_cast<unsigned char>(s_[i_]);
      if (c == '"') {
        ++i_;
        return true;
      }
      if (c < 0x20) return bad("control character in a string (must be escaped)");
      if (c >= 0x80) {
        const size_t n = utf8Length(s_, i_);
        if (n == 0) return bad("invalid UTF-8 in a string");
        out.append(s_.data() + i_, n);
        i_ += n;
        continue;
      }
      // A backslash.
      if (++i_ >= s_.size()) return bad("unterminated escape");
      switch (s_[i_++]) {
        case '"': out += '"'; break;
        case '\\': out += '\\'; break;
        case '/': out += '/'; break;
        case 'b': out += '\b'; break;
        case 'f': out += '\f'; break;
        case 'n': out += '\n'; break;
        case 'r': out += '\r'; break;
        case 't': out += '\t'; break;
        case 'u': {
          uint32_t cp = 0;
          if (!hex4(cp)) return false;
          if (cp >= 0xDC00 && cp <= 0xDFFF) return bad("lone low surrogate in a \\u escape");
          if (cp >= 0xD800 && cp <= 0xDBFF) {
            uint32_t lo = 0;
            if (i_ + 1 >= s_.size() || s_[i_] != '\\' || s_[i_ + 1] != 'u') {
              return bad("high surrogate not followed by a \\u low surrogate");
            }
            i_ += 2;
            if (!hex4(lo)) return false;
            if (lo < 0xDC00 || lo > 0xDFFF) {
              return bad("high surrogate not followed by a \\u low surrogate");
            }
            cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
          }
          appendUtf8(out, cp);
          break;
        }
        default:
          --i_;
          return bad("unknown escape (allowed: \\\" \\\\ \\/ \\b \\f \\n \\r \\t \\uXXXX)");
      }
    }
  }

  bool number(Value& v) {
    const size_t b = i_;
    auto digits = [&] {
      const size_t d = i_;
      while (i_ < s_.size() && s_[i_] >= '0' && s_[i_] <= '9') ++i_;
      return i_ - d;
    };
    if (s_[i_] == '-') ++i_;
    if (i_ < s_.size() && s_[i_] == '0') {
      ++i_;
    } else if (digits() == 0) {
      return bad("a number needs digits");
    }
    if (i_ < s_.size() && s_[i_] == '.') {
      ++i_;
      if (digits() == 0) return bad("a number needs digits after '.'");
    }
    if (i_ < s_.size() && (s_[i_] == 'e' || s_[i_] == 'E')) {
      ++i_;
      if (i_ < s_.size() && (s_[i_] == '+' || s_[i_] == '-')) ++i_;
      if (digits() == 0) return bad("a number needs digits in its exponent");
    }
    v.kind_ = Value::Kind::kNumber;
    v.text_.assign(s_.substr(b, i_ - b));
    auto [p, ec] = std::from_chars(v.text_.data(), v.text_.data() + v.text_.size(), v.number_);
    if (ec == std::errc::result_out_of_range) {
      i_ = b;
      return bad("number out of the range of a double");
    }
    if (ec != std::errc() || p != v.text_.data() + v.text_.size()) {
      i_ = b;
      return bad("malformed number");
    }
    return true;
  }

  std::string_view s_;
  const ParseLimits& limits_;
  size_t i_ = 0;
  size_t values_ = 0;
  std::optional<Error> error_;
};

Result<Value> parse(std::string_view text, const ParseLimits& limits) {
  return Parser(text, limits).document();
}

}  // namespace outpost::json
