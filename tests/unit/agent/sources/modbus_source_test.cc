#include "outpost/agent/modbus_source.h"

#include <modbus.h>

#include <catch2/catch.hpp>
#include <chrono>
#include <cmath>
#include <cstring>
#include <limits>
#include <random>
#include <thread>

#include "outpost/agent/agent_config.h"
#include "outpost/agent/config_reload.h"
#include "outpost/common/clock.h"
#include "outpost/common/config.h"

using namespace outpost;
using namespace outpost::agent;

namespace {

// The registers of a value whose big-endian bytes are `be` (A first), as a slave sends them in
// `order` (first transmitted byte in each register's high half, as libmodbus returns them).
std::vector<uint16_t> onWire(const std::vector<uint8_t>& be, ModbusOrder order) {
  std::vector<uint8_t> b = be;
  const size_t n = b.size() / 2;
  std::vector<uint16_t> words(n);
  for (size_t i = 0; i < n; ++i) words[i] = static_cast<uint16_t>(b[2 * i] << 8 | b[2 * i + 1]);
  if (order == ModbusOrder::kBADC || order == ModbusOrder::kDCBA) {
    for (auto& w : words) w = static_cast<uint16_t>(w >> 8 | w << 8);
  }
  if (order == ModbusOrder::kCDAB || order == ModbusOrder::kDCBA) {
    std::reverse(words.begin(), words.end());
  }
  return words;
}

constexpr ModbusOrder kOrders[] = {ModbusOrder::kABCD, ModbusOrder::kDCBA, ModbusOrder::kBADC,
                                   ModbusOrder::kCDAB};

AgentInputs inputsFrom(const std::string& toml) {
  const auto cfg = config::parseToml("device_id = \"d\"\n" + toml, agentSchema(), "test.toml");
  return parseInputs(cfg);
}

std::string errorOf(const std::string& toml) {
  try {
    inputsFrom(toml);
  } catch (const config::ConfigError& e) {
    return e.what();
  }
  return "(no error)";
}

const char* kTcpSlave = R"(
[[sources.modbus.slaves]]
name = "plc"
host = "127.0.0.1"
port = 1502
)";

// A modbus sensor of slave "plc" (unless `body` names another) with `body`.
std::string sensor(const std::string& body) {
  const std::string slave =
      body.find("modbus.slave") == std::string::npos ? "modbus.slave = \"plc\"\n" : "";
  return std::string(kTcpSlave) + "[[sensors]]\nname = \"s\"\nsource = \"modbus\"\n" + slave +
         body;
}

}  // namespace

TEST_CASE("modbus: every type decodes exactly in every byte order", "[agent][modbus]") {
  // Known byte patterns, most significant byte first.
  SECTION("on the wire, the four orders of 0x11223344") {
    const std::vector<uint8_t> be = {0x11, 0x22, 0x33, 0x44};
    CHECK(onWire(be, ModbusOrder::kABCD) == std::vector<uint16_t>{0x1122, 0x3344});
    CHECK(onWire(be, ModbusOrder::kDCBA) == std::vector<uint16_t>{0x4433, 0x2211});
    CHECK(onWire(be, ModbusOrder::kBADC) == std::vector<uint16_t>{0x2211, 0x4433});
    CHECK(onWire(be, ModbusOrder::kCDAB) == std::vector<uint16_t>{0x3344, 0x1122});
  }
  SECTION("literal registers, as a slave sends them") {
    const uint16_t abcd[] = {0x4049, 0x0FDB};  // float32 pi
    const uint16_t cdab[] = {0x0FDB, 0x4049};
    const uint16_t badc[] = {0x4940, 0xDB0F};
    const uint16_t dcba[] = {0xDB0F, 0x4940};
    const double pi32 = static_cast<double>(3.14159274f);
    CHECK(modbusDecode(abcd, ModbusType::kFloat32, ModbusOrder::kABCD) == pi32);
    CHECK(modbusDecode(cdab, ModbusType::kFloat32, ModbusOrder::kCDAB) == pi32);
    CHECK(modbusDecode(badc, ModbusType::kFloat32, ModbusOrder::kBADC) == pi32);
    CHECK(modbusDecode(dcba, ModbusType::kFloat32, ModbusOrder::kDCBA) == pi32);
    const uint16_t u32[] = {0x7856, 0x3412};  // 0x12345678 little-endian
    CHECK(modbusDecode(u32, ModbusType::kUint32, ModbusOrder::kDCBA) == 305419896.0);
    CHECK(modbusDecode(u32, ModbusType::kUint32, ModbusOrder::kABCD) == 2018915346.0);
    // int64 -1234567890123 = 0xFFFFFEE08E04FB35, BADC.
    const uint16_t i64[] = {0xFFFF, 0xE0FE, 0x048E, 0x35FB};
    CHECK(modbusDecode(i64, ModbusType::kInt64, ModbusOrder::kBADC) == -1234567890123.0);
    // float64 -1.5 = 0xBFF8000000000000, CDAB (GHEFCDAB): registers in reverse.
    const uint16_t f64[] = {0x0000, 0x0000, 0x0000, 0xBFF8};
    CHECK(modbusDecode(f64, ModbusType::kFloat64, ModbusOrder::kCDAB) == -1.5);
  }
  SECTION("each type, each order, round trip of known values") {
    for (ModbusOrder o : kOrders) {
      INFO(modbusOrderName(o));
      auto w = onWire({0xFF, 0xFE}, o);  // int16 -2 / uint16 65534
      CHECK(modbusDecode(w.data(), ModbusType::kInt16, o) == -2.0);
      CHECK(modbusDecode(w.data(), ModbusType::kUint16, o) == 65534.0);
      CHECK(modbusDecode(w.data(), ModbusType::kBool, o) == 1.0);
      const uint16_t zero = 0;
      CHECK(modbusDecode(&zero, ModbusType::kBool, o) == 0.0);
      w = onWire({0xFF, 0xFE, 0x79, 0x60}, o);  // int32 -100000
      CHECK(modbusDecode(w.data(), ModbusType::kInt32, o) == -100000.0);
      CHECK(modbusDecode(w.data(), ModbusType::kUint32, o) == 4294867296.0);
      w = onWire({0x40, 0x49, 0x0F, 0xDB}, o);
      CHECK(modbusDecode(w.data(), ModbusType::kFloat32, o) == static_cast<double>(3.14159274f));
      w = onWire({0x80, 0, 0, 0, 0, 0, 0, 0}, o);  // int64 minimum
      CHECK(modbusDecode(w.data(), ModbusType::kInt64, o) ==
            static_cast<double>(std::numeric_limits<int64_t>::min()));
      w = onWire({0x40, 0x09, 0x21, 0xFB, 0x54, 0x44, 0x2D, 0x18}, o);  // float64 pi
      CHECK(modbusDecode(w.data(), ModbusType::kFloat64, o) == 3.141592653589793);
      w = onWire({0x7F, 0xF8, 0, 0, 0, 0, 0, 0}, o);  // NaN stays NaN (a range filter may drop it)
      CHECK(std::isnan(modbusDecode(w.data(), ModbusType::kFloat64, o)));
    }
  }
  SECTION("type widths") {
    CHECK(modbusTypeWords(ModbusType::kBool) == 1);
    CHECK(modbusTypeWords(ModbusType::kInt16) == 1);
    CHECK(modbusTypeWords(ModbusType::kUint32) == 2);
    CHECK(modbusTypeWords(ModbusType::kFloat32) == 2);
    CHECK(modbusTypeWords(ModbusType::kInt64) == 4);
    CHECK(modbusTypeWords(ModbusType::kFloat64) == 4);
  }
}

TEST_CASE("modbus: reads are grouped into as few requests as allowed", "[agent][modbus]") {
  using F = ModbusFunction;
  SECTION("contiguous and overlapping registers share a request; functions never do") {
    auto r = planModbusRequests({{F::kHolding, 10, 2, 0},
                                 {F::kHolding, 12, 4, 1},
                                 {F::kHolding, 13, 1, 2},
                                 {F::kInput, 16, 1, 3},
                                 {F::kHolding, 0, 1, 4}},
                                0, 125, 2000);
    REQUIRE(r.size() == 3);
    CHECK((r[0].function == F::kHolding && r[0].address == 0 && r[0].count == 1));
    CHECK((r[1].function == F::kHolding && r[1].address == 10 && r[1].count == 6));
    CHECK(r[1].items == std::vector<size_t>{0, 1, 2});
    CHECK((r[2].function == F::kInput && r[2].address == 16 && r[2].count == 1));
  }
  SECTION("max_gap joins nearby ranges") {
    const std::vector<ModbusPlanItem> items = {{F::kHolding, 0, 1, 0}, {F::kHolding, 4, 2, 1}};
    CHECK(planModbusRequests(items, 2, 125, 2000).size() == 2);
    auto r = planModbusRequests(items, 3, 125, 2000);
    REQUIRE(r.size() == 1);
    CHECK(r[0].count == 6);
  }
  SECTION("the protocol limits split requests: 125 registers, 2000 bits") {
    std::vector<ModbusPlanItem> regs, bits;
    for (size_t i = 0; i < 300; ++i) regs.push_back({F::kInput, static_cast<uint16_t>(i), 1, i});
    for (size_t i = 0; i < 4001; ++i) bits.push_back({F::kCoil, static_cast<uint16_t>(i), 1, i});
    auto r = planModbusRequests(regs, 0, 125, 2000);
    REQUIRE(r.size() == 3);
    CHECK((r[0].count == 125 && r[1].count == 125 && r[2].count == 50));
    CHECK(r[1].address == 125);
    auto b = planModbusRequests(bits, 0, 125, 2000);
    REQUIRE(b.size() == 3);
    CHECK((b[0].count == 2000 && b[1].count == 2000 && b[2].count == 1));
    // A value is never split across two requests.
    auto f = planModbusRequests({{F::kHolding, 0, 4, 0}, {F::kHolding, 4, 4, 1}}, 0, 6, 2000);
    REQUIRE(f.size() == 2);
    CHECK((f[0].count == 4 && f[1].address == 4 && f[1].count == 4));
  }
  SECTION("the last address") {
    auto r = planModbusRequests({{F::kHolding, 65532, 4, 0}, {F::kHolding, 65535, 1, 1}}, 0, 125,
                                2000);
    REQUIRE(r.size() == 1);
    CHECK((r[0].address == 65532 && r[0].count == 4));
  }
}

TEST_CASE("modbus: grouping keeps its invariants on random maps", "[agent][modbus]") {
  std::mt19937 rng(17);
  for (int round = 0; round < 200; ++round) {
    const int max_gap = static_cast<int>(rng() % 20);
    const int max_registers = 4 + static_cast<int>(rng() % 122);
    const int max_bits = 1 + static_cast<int>(rng() % 2000);
    std::vector<ModbusPlanItem> items;
    const size_t n = 1 + rng() % 60;
    for (size_t i = 0; i < n; ++i) {
      const auto f = static_cast<ModbusFunction>(rng() % 4);
      const uint16_t width = modbusIsBits(f) ? 1 : static_cast<uint16_t>(1u << (rng() % 3));
      const uint16_t address = static_cast<uint16_t>(rng() % (65537 - width));
      items.push_back({f, address, width, i});
    }
    const auto reqs = planModbusRequests(items, max_gap, max_registers, max_bits);
    std::vector<int> seen(n, 0);
    for (const auto& r : reqs) {
      const int limit = modbusIsBits(r.function) ? max_bits : max_registers;
      REQUIRE(r.count >= 1);
      REQUIRE(r.count <= limit);
      REQUIRE(static_cast<uint32_t>(r.address) + r.count <= 65536);
      for (size_t i : r.items) {
        const auto& it = items[i];
        ++seen[i];
        REQUIRE(it.function == r.function);  // a value is read whole, from its own table
        REQUIRE(it.address >= r.address);
        REQUIRE(it.address + it.width <= r.address + r.count);
      }
    }
    for (size_t i = 0; i < n; ++i) REQUIRE(seen[i] == 1);  // every item in exactly one request
    // As few as allowed: no two neighbouring requests of one function could have been one.
    for (size_t k = 1; k < reqs.size(); ++k) {
      const auto& a = reqs[k - 1];
      const auto& b = reqs[k];
      if (a.function != b.function) continue;
      const int limit = modbusIsBits(a.function) ? max_bits : max_registers;
      uint32_t b_end = b.address;
      for (size_t i : b.items) {
        b_end = std::max<uint32_t>(b_end, items[i].address + items[i].width);
      }
      const bool joinable = b.address <= a.address + a.count + static_cast<uint32_t>(max_gap) &&
                            b_end - a.address <= static_cast<uint32_t>(limit);
      REQUIRE_FALSE(joinable);
    }
  }
}

TEST_CASE("modbus: libmodbus errors are told apart", "[agent][modbus]") {
  int code = -1;
  CHECK(classifyModbusErrno(ETIMEDOUT, code) == ModbusError::kTimeout);
  CHECK(classifyModbusErrno(EMBBADCRC, code) == ModbusError::kCrc);
  CHECK(classifyModbusErrno(EMBXILADD, code) == ModbusError::kException);
  CHECK(code == 2);
  CHECK(classifyModbusErrno(EMBXGTAR, code) == ModbusError::kException);
  CHECK(code == 11);
  CHECK(classifyModbusErrno(EMBBADDATA, code) == ModbusError::kBadResponse);
  CHECK(classifyModbusErrno(EMBBADSLAVE, code) == ModbusError::kBadResponse);
  CHECK(classifyModbusErrno(ECONNREFUSED, code) == ModbusError::kConnection);
  CHECK(classifyModbusErrno(ECONNRESET, code) == ModbusError::kConnection);
  CHECK(code == 0);
}

TEST_CASE("modbus: the configuration is checked strictly", "[agent][modbus][config]") {
  SECTION("a valid map") {
    auto in = inputsFrom(std::string(kTcpSlave) + R"(
[[sources.modbus.slaves]]
name = "bus1"
transport = "rtu"
device = "/dev/ttyUSB0"
baud = 19200
parity = "none"
unit_id = 7
[[sensors]]
name = "t"
unit = "degC"
source = "modbus"
modbus.slave = "plc"
modbus.function = "input"
modbus.address = 65534
modbus.type = "float32"
modbus.order = "CDAB"
modbus.scale = 0.1
modbus.offset = -40.0
poll_interval_ms = 250
[[sensors]]
name = "run"
source = "modbus"
modbus.slave = "bus1"
modbus.function = "coil"
modbus.address = 3
)");
    REQUIRE(in.sources.modbus_slaves.size() == 2);
    const auto& rtu = in.sources.modbus_slaves[1];
    CHECK((rtu.transport == ModbusTransport::kRtu && rtu.parity == 'N' && rtu.baud == 19200 &&
           rtu.unit_id == 7 && rtu.linkKey() == "rtu:/dev/ttyUSB0"));
    const auto& p = in.sensors[0].modbus;
    CHECK((p.function == ModbusFunction::kInput && p.address == 65534 &&
           p.type == ModbusType::kFloat32 && p.order == ModbusOrder::kCDAB && p.scale == 0.1 &&
           p.offset == -40.0));
    CHECK(in.sensors[0].poll_interval_us == 250000);
    CHECK(in.sensors[1].modbus.type == ModbusType::kBool);
  }
  SECTION("bad configs name the key and what is allowed") {
    CHECK_THAT(errorOf(sensor("modbus.address = 65535\nmodbus.type = \"float32\"\n")),
               Catch::Contains("sensors[0].modbus.address = 65535") &&
                   Catch::Contains("allowed: 0 to 65534"));
    CHECK_THAT(errorOf(sensor("modbus.address = 65536\n")),
               Catch::Contains("modbus.address") && Catch::Contains("65535"));
    CHECK_THAT(errorOf(sensor("modbus.address = 1\nmodbus.type = \"float16\"\n")),
               Catch::Contains("modbus.type") && Catch::Contains("float64"));
    CHECK_THAT(errorOf(sensor("modbus.address = 1\nmodbus.order = \"ADCB\"\n")),
               Catch::Contains("modbus.order") && Catch::Contains("CDAB"));
    CHECK_THAT(errorOf(sensor("modbus.address = 1\nmodbus.function = \"holding_register\"\n")),
               Catch::Contains("modbus.function") && Catch::Contains("discrete_input"));
    CHECK_THAT(errorOf(sensor("modbus.slave = \"nope\"\nmodbus.address = 1\n")),
               Catch::Contains("modbus.slave = \"nope\"") && Catch::Contains("\"plc\""));
    CHECK_THAT(errorOf(std::string(kTcpSlave) +
                       "[[sensors]]\nname = \"s\"\nsource = \"modbus\"\nmodbus.address = 1\n"),
               Catch::Contains("sensors[0].modbus.slave is required for source = \"modbus\""));
    CHECK_THAT(errorOf(sensor("modbus.slave = \"plc\"\n")),
               Catch::Contains("sensors[0].modbus.address is required"));
    CHECK_THAT(errorOf(sensor("modbus.slave = \"plc\"\nmodbus.address = 1\nmodbus.function = "
                              "\"coil\"\nmodbus.type = \"int16\"\n")),
               Catch::Contains("modbus.type = \"int16\"") && Catch::Contains("allowed: \"bool\""));
    CHECK_THAT(errorOf(sensor("modbus.slave = \"plc\"\nmodbus.address = 1\nmodbus.function = "
                              "\"discrete_input\"\nmodbus.order = \"DCBA\"\n")),
               Catch::Contains("modbus.order is set but applies only to registers"));
    CHECK_THAT(errorOf(sensor("modbus.slave = \"plc\"\nmodbus.address = 1\nmodbus.unit_id = 3\n")),
               Catch::Contains("unknown key 'sensors[0].modbus.unit_id'"));
    CHECK_THAT(
        errorOf(sensor("modbus.slave = \"plc\"\nmodbus.address = 1\npoll_interval_ms = 5\n")),
        Catch::Contains("poll_interval_ms = 5") && Catch::Contains("10 to 86400000"));
    CHECK_THAT(errorOf(std::string(kTcpSlave) +
                       "[[sensors]]\nname = \"s\"\nmodbus.slave = \"plc\"\n"),
               Catch::Contains("sensors[0].modbus.slave is set but applies only to source = "
                               "\"modbus\""));
  }
  SECTION("bad slaves") {
    const std::string s = "[[sensors]]\nname = \"x\"\n";
    CHECK_THAT(errorOf("[[sources.modbus.slaves]]\nname = \"a\"\nhost = \"h\"\nbogus = 1\n" + s),
               Catch::Contains("unknown key 'sources.modbus.slaves[0].bogus'"));
    CHECK_THAT(errorOf("[[sources.modbus.slaves]]\nname = \"a\"\n" + s),
               Catch::Contains("sources.modbus.slaves[0].host is required"));
    CHECK_THAT(errorOf("[[sources.modbus.slaves]]\nname = \"a\"\nhost = \"h\"\nbaud = 9600\n" + s),
               Catch::Contains("slaves[0].baud is set but applies only to transport = \"rtu\""));
    CHECK_THAT(
        errorOf("[[sources.modbus.slaves]]\nname = \"a\"\ntransport = \"rtu\"\nhost = \"h\"\n" +
                s),
        Catch::Contains("slaves[0].host is set but applies only to transport = \"tcp\""));
    CHECK_THAT(errorOf("[[sources.modbus.slaves]]\nname = \"a\"\ntransport = \"serial\"\n" + s),
               Catch::Contains("transport") && Catch::Contains("rtu"));
    CHECK_THAT(errorOf("[[sources.modbus.slaves]]\nname = \"a\"\ntransport = \"rtu\"\n" + s),
               Catch::Contains("slaves[0].device = \"\" is not usable"));
    CHECK_THAT(errorOf("[[sources.modbus.slaves]]\nname = \"a\"\ntransport = \"rtu\"\ndevice = "
                       "\"/dev/ttyS0\"\nunit_id = 0\n" +
                       s),
               Catch::Contains("unit_id = 0") && Catch::Contains("allowed: 1 to 247"));
    CHECK_THAT(errorOf("[[sources.modbus.slaves]]\nname = \"a\"\nhost = \"h\"\nport = 0\n" + s),
               Catch::Contains("port") && Catch::Contains("65535"));
    CHECK_THAT(errorOf("[[sources.modbus.slaves]]\nname = \"a\"\nhost = \"h\"\nmax_registers = "
                       "126\n" +
                       s),
               Catch::Contains("max_registers") && Catch::Contains("125"));
    CHECK_THAT(
        errorOf("[[sources.modbus.slaves]]\nname = \"a\"\nhost = \"h\"\n[[sources.modbus.slaves]]"
                "\nname = \"a\"\nhost = \"g\"\n" +
                s),
        Catch::Contains("slaves[1].name = \"a\" is used by sources.modbus.slaves[0]"));
    const std::string bus =
        "[[sources.modbus.slaves]]\nname = \"a\"\ntransport = \"rtu\"\ndevice = \"/dev/ttyS0\"\n"
        "[[sources.modbus.slaves]]\nname = \"b\"\ntransport = \"rtu\"\ndevice = \"/dev/ttyS0\"\n";
    CHECK_THAT(errorOf(bus + "unit_id = 1\n" + s),
               Catch::Contains("unit_id = 1 is used by sources.modbus.slaves[0]"));
    CHECK_THAT(errorOf(bus + "unit_id = 2\nbaud = 19200\n" + s),
               Catch::Contains("share device \"/dev/ttyS0\" but differ"));
    CHECK_THAT(errorOf("[[sources.modbus.slaves]]\nname = \"a\"\nhost = \"h\"\nmax_registers = 3\n"
                       "[[sensors]]\nname = \"x\"\nsource = \"modbus\"\nmodbus.slave = \"a\"\n"
                       "modbus.address = 0\nmodbus.type = \"float64\"\n"),
               Catch::Contains("needs 4 registers") && Catch::Contains("max_registers >= 4"));
  }
}

TEST_CASE("modbus: the slaves are reloadable by SIGHUP", "[agent][modbus]") {
  CHECK(isReloadable("sources.modbus.slaves"));
}

TEST_CASE("modbus: an unreachable slave is counted and stops promptly", "[agent][modbus]") {
  // A port nobody listens on (bound, then closed): connection refused.
  auto in = inputsFrom(R"(
[[sources.modbus.slaves]]
name = "dead"
host = "127.0.0.1"
port = 1
reconnect_min_ms = 10
reconnect_max_ms = 20
[[sensors]]
name = "x"
source = "modbus"
modbus.slave = "dead"
modbus.address = 0
)");
  metrics::Registry registry;
  ModbusSource src(in.sources.modbus_slaves, in.sensors, in.sources, SystemClock::instance(),
                   &registry);
  CHECK(src.requestCount() == 1);
  src.start();
  for (int i = 0; i < 500 && src.errors(0, ModbusError::kConnection) < 3; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  CHECK(src.errors(0, ModbusError::kConnection) >= 3);
  CHECK(src.skipped(0) >= 1);
  CHECK_FALSE(src.connected());
  std::vector<wire::Reading> out;
  src.poll(0, out);
  CHECK(out.empty());
  CHECK(registry.counterSum("outpost_agent_modbus_errors_total") >= 3);
}
