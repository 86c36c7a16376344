#include "outpost/common/config.h"

#include <charconv>
#include <cmath>
#include <fstream>
#include <sstream>

#include <toml++/toml.h>

namespace outpost::config {
namespace {

std::string fmtNumber(double v) {
  if (std::floor(v) == v && std::fabs(v) < 1e15) return std::to_string(static_cast<int64_t>(v));
  std::ostringstream os;
  os << v;
  return os.str();
}

std::string allowedText(const Setting& s) {
  switch (s.type) {
    case Type::kBool: return "true or false";
    case Type::kInt:
    case Type::kDouble: {
      std::string t = s.type == Type::kInt ? "an integer" : "a number";
      if (s.min && s.max) return t + " from " + fmtNumber(*s.min) + " to " + fmtNumber(*s.max);
      if (s.min) return t + " >= " + fmtNumber(*s.min);
      if (s.max) return t + " <= " + fmtNumber(*s.max);
      return t;
    }
    case Type::kString: {
      if (s.allowed.empty()) return "a string";
      std::string t = "one of";
      for (size_t i = 0; i < s.allowed.size(); ++i) t += (i ? ", \"" : " \"") + s.allowed[i] + "\"";
      return t;
    }
    case Type::kTableArray: return "an array of tables [[" + s.key + "]]";
  }
  return "?";
}

[[noreturn]] void badValue(std::string_view source, const std::string& full_key,
                           const std::string& shown, const Setting& s, std::string_view why) {
  throw ConfigError(std::string(source) + ": " + full_key + " = " + shown + " " + std::string(why) +
                    "; allowed: " + allowedText(s));
}

Value checkValue(const Setting& s, Value v, std::string_view source, const std::string& full_key) {
  const std::string shown = valueToString(v);
  if (s.type == Type::kDouble && std::holds_alternative<int64_t>(v)) {
    v = static_cast<double>(std::get<int64_t>(v));
  }
  switch (s.type) {
    case Type::kBool:
      if (!std::holds_alternative<bool>(v)) badValue(source, full_key, shown, s, "has the wrong type");
      break;
    case Type::kInt:
    case Type::kDouble: {
      double d;
      if (s.type == Type::kInt) {
        if (!std::holds_alternative<int64_t>(v)) {
          badValue(source, full_key, shown, s, "has the wrong type");
        }
        d = static_cast<double>(std::get<int64_t>(v));
      } else {
        if (!std::holds_alternative<double>(v)) {
          badValue(source, full_key, shown, s, "has the wrong type");
        }
        d = std::get<double>(v);
        if (!std::isfinite(d)) badValue(source, full_key, shown, s, "is not finite");
      }
      if ((s.min && d < *s.min) || (s.max && d > *s.max)) {
        badValue(source, full_key, shown, s, "is out of range");
      }
      break;
    }
    case Type::kString: {
      if (!std::holds_alternative<std::string>(v)) {
        badValue(source, full_key, shown, s, "has the wrong type");
      }
      const auto& str = std::get<std::string>(v);
      if (!s.allowed.empty()) {
        bool ok = false;
        for (const auto& a : s.allowed) ok = ok || a == str;
        if (!ok) badValue(source, full_key, shown, s, "is not allowed");
      }
      if (s.required && str.empty()) badValue(source, full_key, shown, s, "must not be empty");
      break;
    }
    case Type::kTableArray: break;
  }
  return v;
}

Value fromNode(const toml::node& node) {
  if (auto b = node.as_boolean()) return b->get();
  if (auto i = node.as_integer()) return i->get();
  if (auto f = node.as_floating_point()) return f->get();
  if (auto s = node.as_string()) return s->get();
  return std::monostate{};
}

std::string nodeTypeName(const toml::node& node) {
  switch (node.type()) {
    case toml::node_type::table: return "a table";
    case toml::node_type::array: return "an array";
    case toml::node_type::date: return "a date";
    case toml::node_type::time: return "a time";
    case toml::node_type::date_time: return "a date-time";
    default: return "a value";
  }
}

std::string siblings(const Schema& schema, const std::string& table_path) {
  std::vector<std::string> names;
  const std::string prefix = table_path.empty() ? "" : table_path + ".";
  for (const auto& s : schema.settings()) {
    if (s.key.rfind(prefix, 0) != 0) continue;
    std::string rest = s.key.substr(prefix.size());
    rest = rest.substr(0, rest.find('.'));
    bool dup = false;
    for (const auto& n : names) dup = dup || n == rest;
    if (!dup) names.push_back(rest);
  }
  std::string out;
  for (size_t i = 0; i < names.size(); ++i) out += (i ? ", " : "") + names[i];
  return out;
}

}  // namespace

const char* typeName(Type type) {
  switch (type) {
    case Type::kBool: return "bool";
    case Type::kInt: return "integer";
    case Type::kDouble: return "number";
    case Type::kString: return "string";
    case Type::kTableArray: return "array of tables";
  }
  return "?";
}

std::string valueToString(const Value& v) {
  if (std::holds_alternative<bool>(v)) return std::get<bool>(v) ? "true" : "false";
  if (std::holds_alternative<int64_t>(v)) return std::to_string(std::get<int64_t>(v));
  if (std::holds_alternative<double>(v)) return fmtNumber(std::get<double>(v));
  if (std::holds_alternative<std::string>(v)) return "\"" + std::get<std::string>(v) + "\"";
  return "(unset)";
}

Setting& Schema::add(Setting s) {
  for (const auto& existing : settings_) {
    if (existing.key == s.key) throw std::logic_error("setting declared twice: " + s.key);
  }
  settings_.push_back(std::move(s));
  return settings_.back();
}

Schema& Schema::markReloadable(std::string_view key) {
  bool any = false;
  for (auto& s : settings_) {
    if (s.key == key || (key.ends_with('.') && s.key.starts_with(key))) {
      s.reloadable = true;
      any = true;
    }
  }
  if (!any) throw std::logic_error("markReloadable: no setting " + std::string(key));
  return *this;
}

bool Schema::isReloadable(std::string_view key) const {
  const Setting* s = find(key);
  return s && s->reloadable;
}

Schema& Schema::boolean(std::string key, bool def, std::string description) {
  add({.key = std::move(key), .type = Type::kBool, .default_value = def,
       .description = std::move(description)});
  return *this;
}
Schema& Schema::integer(std::string key, int64_t def, int64_t min, int64_t max,
                        std::string description) {
  add({.key = std::move(key), .type = Type::kInt, .default_value = def,
       .min = static_cast<double>(min), .max = static_cast<double>(max),
       .description = std::move(description)});
  return *this;
}
Schema& Schema::real(std::string key, double def, double min, double max,
                     std::string description) {
  add({.key = std::move(key), .type = Type::kDouble, .default_value = def, .min = min, .max = max,
       .description = std::move(description)});
  return *this;
}
Schema& Schema::string(std::string key, std::string def, std::string description) {
  add({.key = std::move(key), .type = Type::kString, .default_value = std::move(def),
       .description = std::move(description)});
  return *this;
}
Schema& Schema::requiredString(std::string key, std::string description) {
  add({.key = std::move(key), .type = Type::kString, .default_value = std::string(),
       .description = std::move(description), .required = true});
  return *this;
}
Schema& Schema::oneOf(std::string key, std::string def, std::vector<std::string> allowed,
                      std::string description) {
  add({.key = std::move(key), .type = Type::kString, .default_value = std::move(def),
       .allowed = std::move(allowed), .description = std::move(description)});
  return *this;
}
Schema& Schema::tableArray(std::string key, std::shared_ptr<const Schema> item,
                           std::string description) {
  add({.key = std::move(key), .type = Type::kTableArray, .description = std::move(description),
       .item_schema = std::move(item)});
  return *this;
}

const Setting* Schema::find(std::string_view key) const {
  for (const auto& s : settings_) {
    if (s.key == key) return &s;
  }
  return nullptr;
}

bool Schema::isTablePrefix(std::string_view prefix) const {
  for (const auto& s : settings_) {
    if (s.key.size() > prefix.size() && s.key.compare(0, prefix.size(), prefix) == 0 &&
        s.key[prefix.size()] == '.') {
      return true;
    }
  }
  return false;
}

const Value& Config::get(std::string_view key, Type type) const {
  auto it = values_.find(key);
  if (it == values_.end()) {
    throw std::logic_error("config: no setting '" + std::string(key) + "' of type " +
                           typeName(type) + " in the schema");
  }
  return it->second;
}

bool Config::getBool(std::string_view key) const { return std::get<bool>(get(key, Type::kBool)); }
int64_t Config::getInt(std::string_view key) const {
  return std::get<int64_t>(get(key, Type::kInt));
}
double Config::getDouble(std::string_view key) const {
  return std::get<double>(get(key, Type::kDouble));
}
const std::string& Config::getString(std::string_view key) const {
  return std::get<std::string>(get(key, Type::kString));
}
bool Config::isSet(std::string_view key) const { return set_.find(key) != set_.end(); }
const std::vector<Config>& Config::items(std::string_view key) const {
  auto it = arrays_.find(key);
  if (it == arrays_.end()) throw std::logic_error("config: no table array '" + std::string(key) + "'");
  return it->second;
}

Config defaults(const Schema& schema, const std::string& path_prefix) {
  Config c;
  c.prefix_ = path_prefix;
  for (const auto& s : schema.settings()) {
    if (s.type == Type::kTableArray) {
      c.arrays_[s.key] = {};
    } else {
      Value v = s.default_value;
      if (s.type == Type::kDouble && std::holds_alternative<int64_t>(v)) {
        v = static_cast<double>(std::get<int64_t>(v));
      }
      c.values_[s.key] = v;
    }
  }
  return c;
}

Config parseToml(std::string_view text, const Schema& schema, std::string_view source,
                 const std::string& path_prefix) {
  toml::table root;
  try {
    root = toml::parse(text, source);
  } catch (const toml::parse_error& e) {
    std::ostringstream os;
    os << source << ":" << e.source().begin.line << ":" << e.source().begin.column
       << ": TOML syntax error: " << e.description();
    throw ConfigError(os.str());
  }
  Config c = defaults(schema, path_prefix);

  // Recursive walk; `path` is the dotted key of `tbl` within the schema.
  auto walk = [&](auto&& self, const toml::table& tbl, const std::string& path) -> void {
    for (auto&& [k, node] : tbl) {
      const std::string key = path.empty() ? std::string(k.str()) : path + "." + std::string(k.str());
      const std::string full_key = path_prefix + key;
      if (const Setting* s = schema.find(key)) {
        if (s->type == Type::kTableArray) {
          const toml::array* arr = node.as_array();
          // An empty array (`key = []`) is an empty table array; toml++ does not call it
          // homogeneous.
          if (!arr || (!arr->empty() && !arr->is_array_of_tables())) {
            throw ConfigError(std::string(source) + ": " + full_key + " must be " + allowedText(*s));
          }
          auto& items = c.arrays_[key];
          for (size_t i = 0; i < arr->size(); ++i) {
            // Re-serialised as a document: an inline-table entry (`key = [{...}]`) must be
            // printed as a plain table, or the text is `{ ... }`, which is not a TOML document.
            toml::table entry = *arr->get(i)->as_table();
            entry.is_inline(false);
            std::ostringstream one;
            one << entry;
            items.push_back(parseToml(one.str(), *s->item_schema, source,
                                      full_key + "[" + std::to_string(i) + "]."));
          }
          continue;
        }
        Value v = fromNode(node);
        if (std::holds_alternative<std::monostate>(v)) {
          throw ConfigError(std::string(source) + ": " + full_key + " is " + nodeTypeName(node) +
                            "; allowed: " + allowedText(*s));
        }
        c.values_[key] = checkValue(*s, std::move(v), source, full_key);
        c.set_[key] = true;
      } else if (node.is_table() && schema.isTablePrefix(key)) {
        self(self, *node.as_table(), key);
      } else if (schema.isTablePrefix(key)) {
        // A known table given as a value (`batch = 5`): not an unknown key.
        const Value v = fromNode(node);
        throw ConfigError(std::string(source) + ": " + full_key +
                          (std::holds_alternative<std::monostate>(v)
                               ? " is " + nodeTypeName(node)
                               : " = " + valueToString(v) + " is not a table") +
                          "; allowed: a table [" + key + "] with keys " + siblings(schema, key));
      } else {
        std::string known = siblings(schema, path);
        // Inside a [[table array]] entry, full_key already says where ("sensors[1].x").
        const std::string where = !path.empty()          ? " in [" + path + "]"
                                  : path_prefix.empty() ? std::string(" at the top level")
                                                        : std::string();
        throw ConfigError(std::string(source) + ": unknown key '" + full_key + "'" + where +
                          "; known keys there: " + (known.empty() ? "(none)" : known));
      }
    }
  };
  walk(walk, root, "");

  for (const auto& s : schema.settings()) {
    if (s.required && !c.isSet(s.key)) {
      throw ConfigError(std::string(source) + ": " + path_prefix + s.key +
                        " is required (" + s.description + ")");
    }
  }
  return c;
}

Config loadFile(const std::string& path, const Schema& schema) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw ConfigError(path + ": cannot open the configuration file");
  std::ostringstream buf;
  buf << in.rdbuf();
  return parseToml(buf.str(), schema, path);
}

void Config::applyOverride(const Schema& schema, std::string_view assignment) {
  const auto eq = assignment.find('=');
  if (eq == std::string_view::npos || eq == 0) {
    throw ConfigError("--set " + std::string(assignment) + ": expected key=value");
  }
  const std::string key(assignment.substr(0, eq));
  const std::string raw(assignment.substr(eq + 1));
  const Setting* s = schema.find(key);
  if (!s || s->type == Type::kTableArray) {
    throw ConfigError("--set: unknown key '" + key + "' (every key: --print-config-reference or docs/configuration.md)");
  }
  Value v;
  switch (s->type) {
    case Type::kBool:
      if (raw == "true") v = true;
      else if (raw == "false") v = false;
      else v = raw;
      break;
    case Type::kInt: {
      int64_t i = 0;
      auto [p, ec] = std::from_chars(raw.data(), raw.data() + raw.size(), i);
      if (ec == std::errc() && p == raw.data() + raw.size()) v = i;
      else v = raw;
      break;
    }
    case Type::kDouble: {
      char* end = nullptr;
      double d = std::strtod(raw.c_str(), &end);
      if (!raw.empty() && end == raw.c_str() + raw.size()) v = d;
      else v = raw;
      break;
    }
    default: v = raw;
  }
  values_[key] = checkValue(*s, std::move(v), "--set", key);
  set_[key] = true;
}

std::string renderMarkdown(const Schema& schema, std::string_view title, std::string_view intro) {
  std::ostringstream os;
  os << "## " << title << "\n\n" << intro << "\n\n";
  // Entries of a reloadable table array are reloaded with it (`live`).
  auto table = [&](const Schema& sc, const std::string& prefix, bool live) {
    os << "| key | type | default | allowed | SIGHUP | description |\n|---|---|---|---|---|---|\n";
    for (const auto& s : sc.settings()) {
      std::string def = s.type == Type::kTableArray ? "" : valueToString(s.default_value);
      if (s.required) def = "(required)";
      std::string allowed = allowedText(s);
      os << "| `" << prefix << s.key << "` | " << typeName(s.type) << " | " << (def.empty() ? "" : "`" + def + "`")
         << " | " << allowed << " | " << (s.reloadable || live ? "applied" : "restart") << " | "
         << s.description << " |\n";
    }
    os << "\n";
  };
  table(schema, "", false);
  // Table arrays, and table arrays inside their entries ([[sensors.filters]]), one section each.
  auto arrays = [&](auto&& self, const Schema& sc, const std::string& prefix,
                    const std::string& toml_prefix, bool live) -> void {
    for (const auto& s : sc.settings()) {
      if (s.type == Type::kTableArray && s.item_schema) {
        os << "### `[[" << toml_prefix << s.key << "]]` entries\n\n" << s.description << "\n\n";
        const bool entry_live = live || s.reloadable;
        table(*s.item_schema, prefix + s.key + "[].", entry_live);
        self(self, *s.item_schema, prefix + s.key + "[].", toml_prefix + s.key + ".", entry_live);
      }
    }
  };
  arrays(arrays, schema, "", "", false);
  return os.str();
}

}  // namespace outpost::config
