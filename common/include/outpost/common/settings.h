#pragma once

// Settings tables bound to typed structs: one row per setting (key, type, default, range or allowed
// values, whether SIGHUP applies it live, one-line description) and the struct member it fills.
// The same rows declare the settings in a config::Schema (which validates files and --set
// overrides, rejects unknown keys and renders docs/configuration.md) and read a validated
// config::Config into the struct, so a key is spelled once. Checks across settings stay in code
// after read(); they throw config::ConfigError naming the keys.
//
//   const config::SettingsTable<OutboxOptions>& outboxTable() {
//     static const auto t = config::SettingsTable<OutboxOptions>("outbox.")
//         .string("path", &OutboxOptions::path, "/var/lib/outpost/outbox.db", "SQLite outbox file")
//         .integer("max_bytes", &OutboxOptions::max_bytes, 256 << 20, 65536, 1ll << 40, "...")
//         .live();
//     return t;
//   }
//
// Start-up and SIGHUP only (not the data path): tables are built once and then read-only, so
// any thread may use a built table.

#include <cmath>
#include <concepts>
#include <functional>
#include <initializer_list>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "outpost/common/config.h"

namespace outpost::config {

// The names of an enum's values, declared once: the allowed values of every setting of that
// enum, parsing (an unknown name is a ConfigError naming the key and the allowed names) and the
// name shown in messages, logs and metrics labels.
template <class E>
class EnumNames {
 public:
  struct Entry {
    E value;
    const char* name;
  };
  EnumNames(std::initializer_list<Entry> entries) : entries_(entries) {}

  // The name of `v`; "?" for a value outside the table (a bug).
  const char* name(E v) const {
    for (const auto& e : entries_) {
      if (e.value == v) return e.name;
    }
    return "?";
  }
  std::optional<E> find(std::string_view name) const {
    for (const auto& e : entries_) {
      if (name == e.name) return e.value;
    }
    return std::nullopt;
  }
  // Throws ConfigError: `key = "x" is not allowed; allowed: one of "a", "b"`.
  E parse(std::string_view key, std::string_view name) const {
    if (auto v = find(name)) return *v;
    throw ConfigError(std::string(key) + " = \"" + std::string(name) +
                      "\" is not allowed; allowed: " + allowedText());
  }
  std::vector<std::string> names() const {
    std::vector<std::string> out;
    for (const auto& e : entries_) out.emplace_back(e.name);
    return out;
  }
  // `a, b, c`
  std::string joinedNames() const {
    std::string t;
    for (size_t i = 0; i < entries_.size(); ++i) {
      t += (i ? ", " : "") + std::string(entries_[i].name);
    }
    return t;
  }
  // `one of "a", "b", "c"`
  std::string allowedText() const {
    std::string t = "one of";
    for (size_t i = 0; i < entries_.size(); ++i) {
      t += (i ? ", \"" : " \"") + std::string(entries_[i].name) + "\"";
    }
    return t;
  }

 private:
  std::vector<Entry> entries_;
};

// A settings table for struct T. Keys are relative to the table's prefix ("outbox." + "path");
// declare() and read() may add an outer prefix (entries of a table array use none).
template <class T>
class SettingsTable {
 public:
  using Setter = std::function<void(T&, const Config&, const std::string& key)>;
  using Declarer = std::function<void(Schema&, const std::string& prefix)>;
  struct Row {
    Setting setting;  // key relative to the table's prefix
    Setter set;       // null: declared only (table arrays, declaredBy rows; read by code)
    bool only_if_set = false;
    Declarer declare;  // declaredBy rows: declares their settings instead of `setting`
  };

  explicit SettingsTable(std::string prefix = "") : prefix_(std::move(prefix)) {}

  // Integer into an integral member, times `scale` (e.g. 1000: a `_ms` key into a `_us` member).
  template <class M>
    requires std::integral<M> && (!std::same_as<M, bool>)
  SettingsTable& integer(std::string key, M T::*m, int64_t def, int64_t min, int64_t max,
                         std::string doc, int64_t scale = 1) {
    return add({.key = std::move(key), .type = Type::kInt, .default_value = def,
                .min = static_cast<double>(min), .max = static_cast<double>(max),
                .description = std::move(doc)},
               [m, scale](T& t, const Config& c, const std::string& k) {
                 t.*m = static_cast<M>(c.getInt(k) * scale);
               });
  }
  SettingsTable& integer(std::string key, std::function<void(T&, int64_t)> set, int64_t def,
                         int64_t min, int64_t max, std::string doc) {
    return add({.key = std::move(key), .type = Type::kInt, .default_value = def,
                .min = static_cast<double>(min), .max = static_cast<double>(max),
                .description = std::move(doc)},
               [set = std::move(set)](T& t, const Config& c, const std::string& k) {
                 set(t, c.getInt(k));
               });
  }
  SettingsTable& real(std::string key, double T::*m, double def, double min, double max,
                      std::string doc) {
    return add({.key = std::move(key), .type = Type::kDouble, .default_value = def, .min = min,
                .max = max, .description = std::move(doc)},
               [m](T& t, const Config& c, const std::string& k) { t.*m = c.getDouble(k); });
  }
  SettingsTable& real(std::string key, std::function<void(T&, double)> set, double def,
                      double min, double max, std::string doc) {
    return add({.key = std::move(key), .type = Type::kDouble, .default_value = def, .min = min,
                .max = max, .description = std::move(doc)},
               [set = std::move(set)](T& t, const Config& c, const std::string& k) {
                 set(t, c.getDouble(k));
               });
  }
  SettingsTable& boolean(std::string key, bool T::*m, bool def, std::string doc) {
    return add({.key = std::move(key), .type = Type::kBool, .default_value = def,
                .description = std::move(doc)},
               [m](T& t, const Config& c, const std::string& k) { t.*m = c.getBool(k); });
  }
  SettingsTable& string(std::string key, std::string T::*m, std::string def, std::string doc) {
    return add({.key = std::move(key), .type = Type::kString, .default_value = std::move(def),
                .description = std::move(doc)},
               [m](T& t, const Config& c, const std::string& k) { t.*m = c.getString(k); });
  }
  SettingsTable& string(std::string key, std::function<void(T&, const std::string&)> set,
                        std::string def, std::string doc) {
    return add({.key = std::move(key), .type = Type::kString, .default_value = std::move(def),
                .description = std::move(doc)},
               [set = std::move(set)](T& t, const Config& c, const std::string& k) {
                 set(t, c.getString(k));
               });
  }
  // A non-empty string without a default.
  SettingsTable& requiredString(std::string key, std::string T::*m, std::string doc) {
    return add({.key = std::move(key), .type = Type::kString, .description = std::move(doc),
                .required = true},
               [m](T& t, const Config& c, const std::string& k) { t.*m = c.getString(k); });
  }
  // One of the names of `names` into an enum member.
  template <class E>
  SettingsTable& oneOf(std::string key, E T::*m, const EnumNames<E>& names, E def,
                       std::string doc) {
    return oneOf<E>(std::move(key), [m](T& t, E v) { t.*m = v; }, names, def, std::move(doc));
  }
  template <class E>
  SettingsTable& oneOf(std::string key, std::function<void(T&, E)> set, const EnumNames<E>& names,
                       E def, std::string doc) {
    return add({.key = std::move(key), .type = Type::kString,
                .default_value = std::string(names.name(def)), .allowed = names.names(),
                .description = std::move(doc)},
               [set = std::move(set), &names](T& t, const Config& c, const std::string& k) {
                 set(t, names.parse(k, c.getString(k)));
               });
  }
  // Another stage's table under this one, read into the member `m` (its keys are under this
  // table's prefix + `sub` + the nested table's own prefix).
  template <class U>
  SettingsTable& nested(U T::*m, const SettingsTable<U>& table, std::string sub = "") {
    rows_.push_back({.setting = {.key = sub},
                     .set = [m, &table](T& t, const Config& c,
                                        const std::string& p) { table.read(c, t.*m, p); },
                     .declare = [&table, sub](Schema& s, const std::string& p) {
                       table.declare(s, p + sub);
                     }});
    return *this;
  }
  // One of `allowed` into a string member (values used as they are spelled, e.g. SQLite's).
  SettingsTable& oneOf(std::string key, std::string T::*m, std::vector<std::string> allowed,
                       std::string def, std::string doc) {
    return add({.key = std::move(key), .type = Type::kString, .default_value = std::move(def),
                .allowed = std::move(allowed), .description = std::move(doc)},
               [m](T& t, const Config& c, const std::string& k) { t.*m = c.getString(k); });
  }
  // Declared here (so it is validated and documented with the stage); the entries are read by
  // the stage's code (they need checks across entries).
  SettingsTable& tableArray(std::string key, std::shared_ptr<const Schema> item, std::string doc) {
    return add({.key = std::move(key), .type = Type::kTableArray, .description = std::move(doc),
                .item_schema = std::move(item)},
               nullptr);
  }
  // Rows declared by another module's function (e.g. mqttsec::addSettings), not read by read().
  SettingsTable& declaredBy(Declarer declare) {
    rows_.push_back({.declare = std::move(declare)});
    return *this;
  }

  // Modifiers of the row added last.
  // SIGHUP applies a change of this setting (of every setting of a declaredBy row) to the running
  // process; otherwise it takes effect after a restart.
  SettingsTable& live() {
    rows_.back().setting.reloadable = true;
    return *this;
  }
  // read() leaves the member as it is unless the file or an override set the key.
  SettingsTable& ifSet() {
    rows_.back().only_if_set = true;
    return *this;
  }

  const std::string& prefix() const { return prefix_; }
  const std::vector<Row>& rows() const { return rows_; }

  // Adds every row to `schema` under `outer` + prefix(); `doc_prefix` goes before each
  // description (e.g. "Override: " for per-class copies of a table).
  void declare(Schema& schema, const std::string& outer = "",
               const std::string& doc_prefix = "") const {
    const std::string p = outer + prefix_;
    for (const auto& r : rows_) {
      if (r.declare) {
        const size_t before = schema.settings().size();
        r.declare(schema, p);
        if (r.setting.reloadable) {
          std::vector<std::string> added;
          for (size_t i = before; i < schema.settings().size(); ++i) {
            added.push_back(schema.settings()[i].key);
          }
          for (const auto& k : added) schema.markReloadable(k);
        }
        continue;
      }
      Setting s = r.setting;
      s.key = p + s.key;
      s.description = doc_prefix + s.description;
      schema.add(std::move(s));
    }
  }
  std::shared_ptr<const Schema> schema(std::string name) const {
    auto s = std::make_shared<Schema>(std::move(name));
    declare(*s);
    return s;
  }

  // Fills `out` from a validated config (every row with a setter; ifSet() rows only when set;
  // with `only_set` every row only when set: overrides on top of `out`).
  void read(const Config& c, T& out, const std::string& outer = "", bool only_set = false) const {
    const std::string p = outer + prefix_;
    for (const auto& r : rows_) {
      if (!r.set) continue;
      const std::string key = p + r.setting.key;
      if ((r.only_if_set || only_set) && !r.declare && !c.isSet(key)) continue;
      r.set(out, c, key);
    }
  }
  T read(const Config& c, const std::string& outer = "") const {
    T out{};
    read(c, out, outer);
    return out;
  }

 private:
  SettingsTable& add(Setting s, Setter set) {
    rows_.push_back({std::move(s), std::move(set)});
    return *this;
  }
  std::string prefix_;
  std::vector<Row> rows_;
};

}  // namespace outpost::config
