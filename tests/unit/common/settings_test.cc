// Settings tables bound to typed structs (settings.h): declare, validate, read, document, reload.
#include "outpost/common/settings.h"

#include <catch2/catch.hpp>
#include <cmath>
#include <limits>
#include <string>

namespace config = outpost::config;
using Catch::Matchers::Contains;
using config::ConfigError;

namespace {

enum class Color { kRed, kGreen };

const config::EnumNames<Color>& colorNames() {
  static const config::EnumNames<Color> names{{Color::kRed, "red"}, {Color::kGreen, "green"}};
  return names;
}

struct Inner {
  int64_t timeout_us = 0;
  bool on = false;
};

struct Outer {
  std::string name;
  size_t count = 0;
  double ratio = 0;
  double lower = -std::numeric_limits<double>::infinity();
  Color color = Color::kRed;
  std::string mode;
  int doubled = 0;
  Inner inner;
};

const config::SettingsTable<Inner>& innerTable() {
  static const auto t = config::SettingsTable<Inner>("inner.")
                            .integer("timeout_ms", &Inner::timeout_us, 250, 1, 10000,
                                     "Timeout.", 1000)
                            .live()
                            .boolean("on", &Inner::on, true, "Switch.");
  return t;
}

const config::SettingsTable<Outer>& outerTable() {
  static const auto t =
      config::SettingsTable<Outer>("s.")
          .requiredString("name", &Outer::name, "Name.")
          .integer("count", &Outer::count, 3, 0, 10, "Count.")
          .real("ratio", &Outer::ratio, 0.5, 0, 1, "Ratio.")
          .real("lower", &Outer::lower, -1e300, -1e300, 1e300, "Lower bound.")
          .ifSet()
          .oneOf("color", &Outer::color, colorNames(), Color::kGreen, "Color.")
          .live()
          .oneOf("mode", &Outer::mode, {"fast", "safe"}, "safe", "Mode.")
          .integer("half", [](Outer& o, int64_t v) { o.doubled = static_cast<int>(v * 2); }, 4,
                   0, 100, "Half of doubled.")
          .nested(&Outer::inner, innerTable());
  return t;
}

config::Schema schema() {
  config::Schema s("test");
  outerTable().declare(s);
  return s;
}

}  // namespace

TEST_CASE("a settings table declares its rows with defaults and ranges and allowed values",
          "[common][settings]") {
  const config::Schema s = schema();
  REQUIRE(s.find("s.name") != nullptr);
  CHECK(s.find("s.name")->required);
  CHECK(s.find("s.count")->max == 10);
  CHECK(s.find("s.color")->allowed == std::vector<std::string>{"red", "green"});
  CHECK(std::get<std::string>(s.find("s.color")->default_value) == "green");
  CHECK(s.find("s.mode")->allowed == std::vector<std::string>{"fast", "safe"});
  CHECK(s.find("s.inner.timeout_ms") != nullptr);  // nested table under the outer prefix
  CHECK(s.isReloadable("s.color"));
  CHECK(s.isReloadable("s.inner.timeout_ms"));
  CHECK_FALSE(s.isReloadable("s.count"));
  CHECK_FALSE(s.isReloadable("s.inner.on"));
  CHECK_FALSE(s.isReloadable("no.such.key"));
}

TEST_CASE("a settings table reads a validated config into its struct", "[common][settings]") {
  const config::Schema s = schema();
  SECTION("defaults") {
    const Outer o = outerTable().read(config::parseToml("[s]\nname = \"x\"\n", s, "t.toml"));
    CHECK(o.name == "x");
    CHECK(o.count == 3);
    CHECK(o.ratio == 0.5);
    CHECK(std::isinf(o.lower));  // ifSet(): the struct's default stands
    CHECK(o.color == Color::kGreen);
    CHECK(o.mode == "safe");
    CHECK(o.doubled == 8);
    CHECK(o.inner.timeout_us == 250000);  // scaled: _ms key into a _us member
    CHECK(o.inner.on);
  }
  SECTION("set values") {
    const Outer o = outerTable().read(config::parseToml(
        "[s]\nname = \"y\"\ncount = 7\nlower = -5.0\ncolor = \"red\"\nmode = \"fast\"\nhalf = 1\n"
        "[s.inner]\ntimeout_ms = 3\non = false\n",
        s, "t.toml"));
    CHECK(o.count == 7);
    CHECK(o.lower == -5.0);
    CHECK(o.color == Color::kRed);
    CHECK(o.mode == "fast");
    CHECK(o.doubled == 2);
    CHECK(o.inner.timeout_us == 3000);
    CHECK_FALSE(o.inner.on);
  }
}

TEST_CASE("the schema built from a table rejects unknown keys and bad values by name",
          "[common][settings]") {
  const config::Schema s = schema();
  CHECK_THROWS_WITH(config::parseToml("[s]\nname = \"x\"\ncolour = \"red\"\n", s, "t.toml"),
                    Contains("s.colour"));
  CHECK_THROWS_WITH(config::parseToml("[s]\nname = \"x\"\ncolor = \"blue\"\n", s, "t.toml"),
                    Contains("s.color") && Contains("\"red\", \"green\""));
  CHECK_THROWS_WITH(config::parseToml("[s]\nname = \"x\"\ncount = 11\n", s, "t.toml"),
                    Contains("s.count") && Contains("from 0 to 10"));
}

TEST_CASE("EnumNames spells each value once and names the key on a bad name",
          "[common][settings]") {
  const auto& n = colorNames();
  CHECK(std::string(n.name(Color::kGreen)) == "green");
  CHECK(n.find("red") == Color::kRed);
  CHECK_FALSE(n.find("Red").has_value());
  CHECK(n.parse("paint.color", "green") == Color::kGreen);
  CHECK_THROWS_AS(n.parse("paint.color", "blue"), ConfigError);
  CHECK_THROWS_WITH(n.parse("paint.color", "blue"),
                    Contains("paint.color = \"blue\"") && Contains("one of \"red\", \"green\""));
}

TEST_CASE("the reference marks reloadable settings and table-array entries with their array",
          "[common][settings]") {
  config::Schema s = schema();
  auto item = std::make_shared<config::Schema>("item");
  item->integer("n", 1, 0, 9, "Entry setting.");
  s.tableArray("items", item, "Entries.");
  s.markReloadable("items");
  CHECK_THROWS_AS(s.markReloadable("nothing.here."), std::logic_error);
  const std::string md = config::renderMarkdown(s, "test", "Intro.");
  CHECK_THAT(md, Contains("| SIGHUP |"));
  CHECK_THAT(md,
             Contains("`s.color` | string | `\"green\"` | one of \"red\", \"green\" | applied"));
  CHECK_THAT(md, Contains("`s.count` | integer | `3` | an integer from 0 to 10 | restart"));
  CHECK_THAT(md, Contains("`items[].n` | integer | `1` | an integer from 0 to 9 | applied"));
}
