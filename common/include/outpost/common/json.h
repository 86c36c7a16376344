#pragma once

// JSON for both programs: one writer (every JSON document either program writes: Kafka messages,
// HTTP API bodies, webhook posts, status messages) and one parser for untrusted bytes (MQTT status
// messages, ...).
//
// Writing. Strings: valid UTF-8 is copied as is; each byte that does not start a valid UTF-8
// sequence (overlong, surrogate, above U+10FFFF, truncated, stray continuation) becomes \ufffd, one
// per byte; '"' and '\' are escaped, \n \r \t as such, other control characters and DEL as \u00XX.
// Numbers: finite doubles in the shortest form that reads back to the same double (std::to_chars),
// NaN and infinities as null; integers exactly.
//
// Parsing. RFC 8259, strictly: one value, optional surrounding whitespace, nothing after it;
// strings must be valid UTF-8 (escapes decoded, \u surrogate pairs joined, a lone surrogate is an
// error); numbers must fit a double. Size, nesting depth and value count are bounded
// (ParseLimits); an error names the byte offset and what was wrong.

#include <charconv>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <type_traits>
#include <vector>

#include "outpost/common/status.h"

namespace outpost::json {

// JSON string literal of `s` (quotes included), appended to `out`.
void appendString(std::string& out, std::string_view s);
// A finite double in its shortest round-trip form; NaN and infinities as null.
void appendNumber(std::string& out, double v);
[[gnu::always_inline]] inline void appendInt(std::string& out, int64_t v) {
  char buf[24];
  auto [p, ec] = std::to_chars(buf, buf + sizeof buf, v);
  out.append(buf, p);
}
[[gnu::always_inline]] inline void appendUint(std::string& out, uint64_t v) {
  char buf[24];
  auto [p, ec] = std::to_chars(buf, buf + sizeof buf, v);
  out.append(buf, p);
}
// `s` as a JSON string literal, in a new string.
std::string quote(std::string_view s);

// A member name written in the code: a string literal of printable ASCII without '"' or '\\'
// (checked when compiling: anything else does not compile), kept ready as `,"name":` so that
// writing it is one append (the readings messages are the hot path).
class Name {
 public:
  template <size_t N>
  consteval Name(const char (&k)[N]) : size_(N + 3) {  // N - 1 bytes of name, plus ,"":
    static_assert(N >= 2 && N + 3 <= sizeof(buf_), "a member name of 1..60 bytes");
    buf_[0] = ',';
    buf_[1] = '"';
    for (size_t i = 0; i + 1 < N; ++i) {
      const auto c = static_cast<unsigned char>(k[i]);
      if (c < 0x20 || c >= 0x7F || c == '"' || c == '\\') {
        throw "a literal JSON member name must be printable ASCII without quote or backslash";
      }
      buf_[2 + i] = k[i];
    }
    buf_[N + 1] = '"';
    buf_[N + 2] = ':';
  }
  std::string_view withComma() const { return {buf_, size_}; }
  std::string_view withoutComma() const { return {buf_ + 1, size_ - 1}; }

 private:
  char buf_[64] = {};
  size_t size_;
};

// Streaming writer: appends one JSON document to a string the caller owns, placing the commas and
// colons itself. Calls must form valid JSON (a key before each member value, ends matching
// begins): the writer does not check that (it is on the hot path of every Kafka message).
// Not thread-safe; cheap to create (one per document).
class Writer {
 public:
  explicit Writer(std::string& out) : out_(out) {}

  [[gnu::always_inline]] Writer& beginObject() { return open('{'); }
  [[gnu::always_inline]] Writer& endObject() { return close('}'); }
  [[gnu::always_inline]] Writer& beginArray() { return open('['); }
  [[gnu::always_inline]] Writer& endArray() { return close(']'); }
  // The next member's name: a string literal (Name, checked when compiling) or any text (escaped
  // like a string value).
  [[gnu::always_inline]] Writer& key(const Name& k) {
    out_.append(need_comma_ ? k.withComma() : k.withoutComma());
    need_comma_ = false;
    return *this;
  }
  template <typename S>
    requires(std::is_convertible_v<const S&, std::string_view> && !std::is_array_v<S>)
  [[gnu::always_inline]] Writer& key(const S& k) {
    separate();
    appendString(out_, std::string_view(k));
    out_ += ':';
    need_comma_ = false;
    return *this;
  }

  [[gnu::always_inline]] Writer& string(std::string_view s) {
    separate();
    appendString(out_, s);
    return *this;
  }
  [[gnu::always_inline]] Writer& number(double v) {
    separate();
    appendNumber(out_, v);
    return *this;
  }
  [[gnu::always_inline]] Writer& integer(int64_t v) {
    separate();
    appendInt(out_, v);
    return *this;
  }
  [[gnu::always_inline]] Writer& uinteger(uint64_t v) {
    separate();
    appendUint(out_, v);
    return *this;
  }
  // 64-bit identifiers (epochs) as a decimal string: JavaScript numbers keep only 53 bits.
  [[gnu::always_inline]] Writer& uintString(uint64_t v) {
    separate();
    out_ += '"';
    appendUint(out_, v);
    out_ += '"';
    return *this;
  }
  [[gnu::always_inline]] Writer& boolean(bool v) {
    separate();
    out_ += v ? "true" : "false";
    return *this;
  }
  [[gnu::always_inline]] Writer& null() {
    separate();
    out_ += "null";
    return *this;
  }
  // A value that is already JSON (rendered by this writer elsewhere), copied as is.
  [[gnu::always_inline]] Writer& raw(std::string_view json) {
    separate();
    out_ += json;
    return *this;
  }
  // Members that are already JSON (`"a":1,"b":2`, rendered by this writer elsewhere), inserted
  // into the open object as is.
  [[gnu::always_inline]] Writer& rawMembers(std::string_view members) {
    separate();
    out_ += members;
    return *this;
  }

  // Shorthands for one member named by a literal.
  [[gnu::always_inline]] Writer& member(const Name& k, std::string_view v) {
    return key(k).string(v);
  }
  [[gnu::always_inline]] Writer& member(const Name& k, const char* v) { return key(k).string(v); }
  [[gnu::always_inline]] Writer& member(const Name& k, double v) { return key(k).number(v); }
  [[gnu::always_inline]] Writer& member(const Name& k, int64_t v) { return key(k).integer(v); }
  [[gnu::always_inline]] Writer& member(const Name& k, uint64_t v) { return key(k).uinteger(v); }
  [[gnu::always_inline]] Writer& member(const Name& k, int v) { return key(k).integer(v); }
  [[gnu::always_inline]] Writer& member(const Name& k, bool v) { return key(k).boolean(v); }

  std::string& out() { return out_; }

 private:
  [[gnu::always_inline]] void separate() {
    if (need_comma_) out_ += ',';
    need_comma_ = true;
  }
  [[gnu::always_inline]] Writer& open(char c) {
    if (need_comma_) {
      const char two[2] = {',', c};
      out_.append(two, 2);
    } else {
      out_ += c;
    }
    need_comma_ = false;
    return *this;
  }
  [[gnu::always_inline]] Writer& close(char c) {
    out_ += c;
    need_comma_ = true;
    return *this;
  }

  std::string& out_;
  bool need_comma_ = false;  // a value was written at this level: the next one needs a comma
};

// ---- parsing ----

struct ParseLimits {
  size_t max_bytes = 1 << 20;  // input size
  int max_depth = 32;          // nested arrays/objects
  size_t max_values = 100000;  // values in the document (bounds memory whatever the shape)
};

class Value {
 public:
  enum class Kind { kNull, kBool, kNumber, kString, kArray, kObject };

  Kind kind() const { return kind_; }
  bool isNull() const { return kind_ == Kind::kNull; }
  bool isObject() const { return kind_ == Kind::kObject; }
  bool isArray() const { return kind_ == Kind::kArray; }

  // The value if it is of that kind, else nullopt / nullptr.
  std::optional<bool> asBool() const;
  std::optional<double> asDouble() const;
  // A number written as an integer (no fraction, no exponent) that fits int64_t.
  std::optional<int64_t> asInt() const;
  // The decoded string (valid UTF-8).
  const std::string* asString() const;

  // Array items, or object member values (in document order).
  const std::vector<Value>& items() const { return items_; }
  // Object member names, parallel to items(); empty for anything else.
  const std::vector<std::string>& keys() const { return keys_; }
  // Member `k` of an object (the last one when a name repeats); nullptr if absent or not an
  // object.
  const Value* find(std::string_view k) const;

  // Appends this value as JSON (Writer rules) to `w`.
  void write(Writer& w) const;

 private:
  friend class Parser;
  Kind kind_ = Kind::kNull;
  bool bool_ = false;
  double number_ = 0;
  std::string text_;  // string contents, or a number's source text (for asInt)
  std::vector<Value> items_;
  std::vector<std::string> keys_;
};

// Parses one JSON document from untrusted bytes. Errors are kInvalidArgument (malformed, with the
// byte offset) or kResourceExhausted (a limit hit, naming it).
Result<Value> parse(std::string_view text, const ParseLimits& limits = {});

}  // namespace outpost::json
