#pragma once

// Binary state images of the detectors (issue 19: a device's detector state moves between
// aggregator processes). A class lists its state once, in `template <class Ar> void fields(Ar&)`,
// and the same list writes (StateWriter) and reads (StateReader) it:
//
//   template <class Ar> void Foo::fields(Ar& ar) { ar(a_, b_, event_); ar.check(b_ < 8, "b"); }
//
// Encoding, little-endian and fixed width whatever the host: integers, bools and enums in
// sizeof(T) bytes; doubles and floats by their bit pattern (bit-exact, NaN payloads included);
// arrays of numbers as a u32 count of the leading elements up to the last one whose bits are not
// all zero, then those elements (a half-used seasonal profile costs half); vectors and strings as
// a u32 count then the elements; other class types through a free `stateFields(ar, value)` found
// by argument-dependent lookup.
//
// An image is framed: u8 tag, u8 version, u32 body length, body. The reader rejects another tag
// or version, a body longer than the input (truncated) and a body the fields do not consume
// exactly (oversized/garbage), so an image is read whole or not at all.
//
// Thread-safety: none (a writer/reader is a local of one call).

#include <algorithm>
#include <array>
#include <bit>
#include <cstdint>
#include <cstring>
#include <span>
#include <string>
#include <type_traits>
#include <vector>

#include "outpost/common/status.h"

namespace outpost::detect {

// Timestamps read from an image are bounded so that the detectors' arithmetic on them (differences,
// ms -> us) cannot overflow: |t| < 2^52 ms (about 142,000 years) and 2^62 us.
inline bool saneStateMs(int64_t t) { return t > -(int64_t{1} << 52) && t < (int64_t{1} << 52); }
inline bool saneStateUs(int64_t t) { return t > -(int64_t{1} << 62) && t < (int64_t{1} << 62); }

class StateWriter {
 public:
  explicit StateWriter(std::string& out) : out_(out) {}
  static constexpr bool kReading = false;

  // Starts a framed image; end() patches its length.
  void begin(uint8_t tag, uint8_t version) {
    put(tag);
    put(version);
    len_at_ = out_.size();
    put(uint32_t{0});
  }
  void end() {
    const uint32_t n = static_cast<uint32_t>(out_.size() - len_at_ - 4);
    for (int i = 0; i < 4; ++i) out_[len_at_ + i] = static_cast<char>((n >> (8 * i)) & 0xff);
  }

  template <class... T>
  void operator()(const T&... v) {
    (put(v), ...);
  }
  // Semantic checks of the reader; nothing to check when writing.
  void check(bool, const char*) {}
  // An object with its own framed image (save/restore), inside this one.
  template <class T>
  void nested(const T& obj) {
    obj.save(out_);
  }

  template <class T>
  void put(const T& v) {
    if constexpr (std::is_same_v<T, bool>) {
      out_.push_back(v ? 1 : 0);
    } else if constexpr (std::is_enum_v<T>) {
      put(static_cast<std::underlying_type_t<T>>(v));
    } else if constexpr (std::is_same_v<T, double>) {
      put(std::bit_cast<uint64_t>(v));
    } else if constexpr (std::is_same_v<T, float>) {
      put(std::bit_cast<uint32_t>(v));
    } else if constexpr (std::is_integral_v<T>) {
      using U = std::make_unsigned_t<T>;
      const U u = static_cast<U>(v);
      for (size_t i = 0; i < sizeof(T); ++i)
        out_.push_back(static_cast<char>((u >> (8 * i)) & 0xff));
    } else if constexpr (std::is_array_v<T>) {
      uint32_t n = static_cast<uint32_t>(std::extent_v<T>);
      while (n > 0 && isZeroBits(v[n - 1])) --n;
      put(n);
      for (uint32_t i = 0; i < n; ++i) put(v[i]);
    } else if constexpr (std::is_same_v<T, std::string>) {
      put(static_cast<uint32_t>(v.size()));
      out_.append(v);
    } else if constexpr (IsVector<T>::value) {
      put(static_cast<uint32_t>(v.size()));
      for (const auto& x : v) put(static_cast<const typename T::value_type&>(x));
    } else {
      stateFields(*this, const_cast<T&>(v));  // the writer only reads it
    }
  }

 private:
  template <class T>
  struct IsVector : std::false_type {};
  template <class T, class A>
  struct IsVector<std::vector<T, A>> : std::true_type {};
  template <class E>
  static bool isZeroBits(const E& e) {
    std::array<unsigned char, sizeof(E)> b;
    std::memcpy(b.data(), &e, sizeof(E));
    for (unsigned char c : b)
      if (c) return false;
    return true;
  }

  std::string& out_;
  size_t len_at_ = 0;
};

class StateReader {
 public:
  explicit StateReader(std::span<const uint8_t> in) : in_(in) {}
  static constexpr bool kReading = true;

  // Reads a frame header of `what` and limits reading to its body. False (error set) on another
  // tag/version or a body longer than the input.
  bool begin(uint8_t tag, uint8_t version, const char* what) {
    uint8_t t = 0, v = 0;
    uint32_t n = 0;
    get(t);
    get(v);
    get(n);
    if (!ok()) return false;
    if (t != tag) return failWith(std::string(what) + ": not a state image (tag " +
                                  std::to_string(t) + ", expected " + std::to_string(tag) + ")");
    if (v != version)
      return failWith(std::string(what) + ": state format version " + std::to_string(v) +
                      " is not supported (this build reads version " + std::to_string(version) +
                      ")");
    if (n > in_.size() - pos_)
      return failWith(std::string(what) + ": truncated (body of " + std::to_string(n) +
                      " bytes, " + std::to_string(in_.size() - pos_) + " left)");
    end_ = pos_ + n;
    what_ = what;
    return true;
  }
  // After the fields: the body must be consumed exactly.
  bool end() {
    if (ok() && pos_ != end_)
      failWith(what_ + ": " + std::to_string(end_ - pos_) + " unexpected bytes at the end");
    return ok();
  }

  template <class... T>
  void operator()(T&... v) {
    (get(v), ...);
  }
  void check(bool cond, const char* what) {
    if (!cond && ok()) failWith(what_ + ": invalid " + what);
  }
  // An object with its own framed image (restore(span&) consumes it), inside this one.
  template <class T>
  void nested(T& obj) {
    if (!ok()) return;
    std::span<const uint8_t> rest = in_.subspan(pos_, limit() - pos_);
    const size_t before = rest.size();
    if (auto st = obj.restore(rest); !st) {
      failWith(what_ + ": " + st.error().message());
      return;
    }
    pos_ += before - rest.size();
  }

  template <class T>
  void get(T& v) {
    if (!ok()) return;
    if constexpr (std::is_same_v<T, bool>) {
      uint8_t b = 0;
      get(b);
      if (ok() && b > 1) failWith(what_ + ": a boolean is " + std::to_string(b));
      v = b != 0;
    } else if constexpr (std::is_enum_v<T>) {
      std::underlying_type_t<T> u{};
      get(u);
      v = static_cast<T>(u);  // range checked by the caller (check())
    } else if constexpr (std::is_same_v<T, double>) {
      uint64_t u = 0;
      get(u);
      v = std::bit_cast<double>(u);
    } else if constexpr (std::is_same_v<T, float>) {
      uint32_t u = 0;
      get(u);
      v = std::bit_cast<float>(u);
    } else if constexpr (std::is_integral_v<T>) {
      if (limit() - pos_ < sizeof(T)) {
        failWith(what_ + ": truncated");
        return;
      }
      using U = std::make_unsigned_t<T>;
      U u = 0;
      for (size_t i = 0; i < sizeof(T); ++i)
        u |= static_cast<U>(static_cast<U>(in_[pos_ + i]) << (8 * i));
      pos_ += sizeof(T);
      v = static_cast<T>(u);
    } else if constexpr (std::is_array_v<T>) {
      uint32_t n = 0;
      get(n);
      if (ok() && n > std::extent_v<T>) {
        failWith(what_ + ": array of " + std::to_string(n) + " elements, at most " +
                 std::to_string(std::extent_v<T>));
        return;
      }
      for (uint32_t i = 0; i < n; ++i) get(v[i]);
      for (size_t i = n; i < std::extent_v<T>; ++i) v[i] = {};
    } else if constexpr (std::is_same_v<T, std::string>) {
      uint32_t n = 0;
      get(n);
      if (!ok()) return;
      if (n > limit() - pos_) {
        failWith(what_ + ": truncated string");
        return;
      }
      v.assign(reinterpret_cast<const char*>(in_.data() + pos_), n);
      pos_ += n;
    } else if constexpr (IsVector<T>::value) {
      uint32_t n = 0;
      get(n);
      if (!ok()) return;
      // Every element takes at least one byte: a count beyond the input is garbage, caught
      // before anything is allocated.
      if (n > limit() - pos_) {
        failWith(what_ + ": truncated vector (" + std::to_string(n) + " elements)");
        return;
      }
      v.assign(n, typename T::value_type{});
      for (uint32_t i = 0; i < n && ok(); ++i) {
        typename T::value_type x{};
        get(x);
        v[i] = x;
      }
    } else {
      stateFields(*this, v);
    }
  }

  bool ok() const { return error_.empty(); }
  const std::string& error() const { return error_; }
  size_t consumed() const { return pos_; }
  Status status() const {
    if (ok()) return {};
    return fail(ErrorCode::kCorrupt, error_);
  }

 private:
  template <class T>
  struct IsVector : std::false_type {};
  template <class T, class A>
  struct IsVector<std::vector<T, A>> : std::true_type {};
  size_t limit() const { return end_ == SIZE_MAX ? in_.size() : end_; }
  bool failWith(std::string e) {
    if (error_.empty()) error_ = e.empty() ? "invalid state image" : std::move(e);
    return false;
  }

  std::span<const uint8_t> in_;
  size_t pos_ = 0;
  size_t end_ = SIZE_MAX;
  std::string what_ = "detector state";
  std::string error_;
};

// Checks that a field list names every member: records the offset and size of each listed member
// (class members through their stateFields) in the object; gaps() names the first byte range
// between them, or at the end, longer than the padding the next member's alignment (or the
// class's) explains. Offsets cannot tell padding from a member smaller than the next member's
// alignment that sits right before where padding would be (e.g. one bool before a float array);
// the classes' sizeof static_asserts and the bit-exact round-trip tests are the other nets.
class StateLayoutProbe {
 public:
  static constexpr bool kReading = false;
  StateLayoutProbe(const void* base, size_t size, size_t align)
      : base_(static_cast<const char*>(base)), size_(size), align_(align) {}

  template <class... T>
  void operator()(const T&... v) {
    (add(v), ...);
  }
  void check(bool, const char*) {}

  // Empty when every byte of the object is a listed member or padding.
  std::string gaps() const {
    std::vector<Span> s = spans_;
    std::sort(s.begin(), s.end(), [](const Span& a, const Span& b) { return a.off < b.off; });
    size_t end = 0;
    for (const Span& x : s) {
      if (x.off < end) return "a member at byte " + std::to_string(x.off) + " is listed twice";
      if (x.off - end >= x.align)
        return "bytes " + std::to_string(end) + ".." + std::to_string(x.off - 1) +
               " are not in the field list";
      end = x.off + x.size;
    }
    if (size_ - end >= align_)
      return "bytes " + std::to_string(end) + ".." + std::to_string(size_ - 1) +
             " are not in the field list";
    return {};
  }

 private:
  struct Span {
    size_t off, size, align;
  };
  template <class T>
  struct IsVector : std::false_type {};
  template <class T, class A>
  struct IsVector<std::vector<T, A>> : std::true_type {};
  template <class T>
  void add(const T& v) {
    if constexpr (std::is_class_v<T> && !IsVector<T>::value && !std::is_same_v<T, std::string>) {
      stateFields(*this, const_cast<T&>(v));  // only addresses are taken
    } else {
      spans_.push_back({static_cast<size_t>(reinterpret_cast<const char*>(&v) - base_), sizeof(T),
                        alignof(std::remove_all_extents_t<T>)});
    }
  }

  const char* base_;
  size_t size_, align_;
  std::vector<Span> spans_;
};

}  // namespace outpost::detect
