#pragma once

// Declarative configuration: each program declares its settings in one table (name, type, default,
// allowed range or values, one-line description). The same table validates TOML files and
// command-line overrides, rejects unknown keys, and renders docs/configuration.md.
// Start-up only: errors are thrown as ConfigError, with a message that names the key, the value
// and what is allowed.

#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

namespace outpost::config {

class ConfigError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

enum class Type { kBool, kInt, kDouble, kString, kTableArray };
const char* typeName(Type type);

using Value = std::variant<std::monostate, bool, int64_t, double, std::string>;
std::string valueToString(const Value& v);

class Schema;

struct Setting {
  std::string key;  // dotted path relative to the schema root, e.g. "uplink.mqtt.broker"
  Type type = Type::kString;
  Value default_value;  // monostate = no default (then `required` or optional-unset)
  std::optional<double> min;
  std::optional<double> max;
  std::vector<std::string> allowed;  // for strings: the only accepted values, if non-empty
  std::string description;
  bool required = false;
  std::shared_ptr<const Schema> item_schema;  // kTableArray: schema of each [[key]] entry
  bool reloadable = false;  // SIGHUP applies a change to the running process (else: restart)
};

class Schema {
 public:
  explicit Schema(std::string name) : name_(std::move(name)) {}

  // Fluent declaration helpers. `min`/`max` bound ints and doubles (inclusive); for strings,
  // the length.
  Schema& boolean(std::string key, bool def, std::string description);
  Schema& integer(std::string key, int64_t def, int64_t min, int64_t max, std::string description);
  Schema& real(std::string key, double def, double min, double max, std::string description);
  Schema& string(std::string key, std::string def, std::string description);
  Schema& requiredString(std::string key, std::string description);
  Schema& oneOf(std::string key, std::string def, std::vector<std::string> allowed,
                std::string description);
  Schema& tableArray(std::string key, std::shared_ptr<const Schema> item, std::string description);
  // Any setting (settings.h tables declare their rows through this). A key declared twice is a
  // bug (std::logic_error).
  Setting& add(Setting s);
  // Marks `key`, or every key under it when it ends with '.', reloadable (SIGHUP applies it).
  // A key that matches nothing is a bug (std::logic_error).
  Schema& markReloadable(std::string_view key);
  // True when `key` is declared reloadable.
  bool isReloadable(std::string_view key) const;

  const std::string& name() const { return name_; }
  const std::vector<Setting>& settings() const { return settings_; }
  const Setting* find(std::string_view key) const;
  // True when some setting lives under "prefix." (so [prefix] is a known table).
  bool isTablePrefix(std::string_view prefix) const;

 private:
  std::string name_;
  std::vector<Setting> settings_;
};

// Validated values: every setting of the schema has a value (its default unless set).
class Config {
 public:
  bool getBool(std::string_view key) const;
  int64_t getInt(std::string_view key) const;
  double getDouble(std::string_view key) const;
  const std::string& getString(std::string_view key) const;
  // True when the file or an override set the key (as opposed to its default).
  bool isSet(std::string_view key) const;
  const std::vector<Config>& items(std::string_view key) const;

  // Applies "key=value" from the command line, typed and checked by the schema.
  void applyOverride(const Schema& schema, std::string_view assignment);

 private:
  friend Config parseToml(std::string_view, const Schema&, std::string_view, const std::string&);
  friend Config defaults(const Schema& schema, const std::string& path_prefix);
  const Value& get(std::string_view key, Type type) const;

  std::string prefix_;  // for messages inside table arrays, e.g. "sensors[2]."
  std::map<std::string, Value, std::less<>> values_;
  std::map<std::string, bool, std::less<>> set_;
  std::map<std::string, std::vector<Config>, std::less<>> arrays_;
};

// Every setting at its default.
Config defaults(const Schema& schema, const std::string& path_prefix = "");

// Parses and validates TOML text; `source` names the file in messages.
Config parseToml(std::string_view text, const Schema& schema, std::string_view source,
                 const std::string& path_prefix = "");
Config loadFile(const std::string& path, const Schema& schema);

// Markdown reference for docs/configuration.md: one table per section.
std::string renderMarkdown(const Schema& schema, std::string_view title, std::string_view intro);

}  // namespace outpost::config
