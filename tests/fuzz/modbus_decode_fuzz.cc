// Fuzz target for the Modbus source's decoding of register words a slave sent (a device on a
// shared bus or network is untrusted): modbusDecode for every type and byte order, checked
// against an independent model of the orders (docs/modbus.md: the wire bytes of the value, most
// significant first, are permuted by the order), and the request planner on fuzzed point maps,
// checked for its contract (every point read exactly once, inside one request, within the limits).
//
// Built like batch_decode_fuzz.cc: a libFuzzer binary with OUTPOST_BUILD_FUZZERS (clang), and
// with replay_main.cc as a plain program that runs the committed corpus in every build.
//
// Input: 8 bytes of register words (4 registers, big-endian as on the wire), then a planner
// description: max_gap, max_registers, max_bits (one byte each) and up to 64 items of 5 bytes
// (function, address hi/lo, width, spare).

#include <bit>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <vector>

#include "outpost/agent/modbus_spec.h"

using namespace outpost::agent;

namespace {

void check(bool ok) {
  if (!ok) std::abort();
}

// The value's bytes, most significant first (A B C D ...), from the transmitted bytes `tx` under
// `order`, per the table in modbus_spec.h.
void valueBytes(const uint8_t* tx, size_t nbytes, ModbusOrder order, uint8_t* out) {
  for (size_t i = 0; i < nbytes; ++i) {
    size_t src = i;  // ABCD: transmitted in value order
    switch (order) {
      case ModbusOrder::kABCD:
        break;
      case ModbusOrder::kDCBA:
        src = nbytes - 1 - i;
        break;
      case ModbusOrder::kBADC:
        src = i ^ 1;
        break;
      case ModbusOrder::kCDAB:  // registers reversed, bytes within a register kept
        src = (nbytes / 2 - 1 - i / 2) * 2 + (i & 1);
        break;
    }
    out[i] = tx[src];
  }
}

uint64_t bigEndian(const uint8_t* b, size_t n) {
  uint64_t v = 0;
  for (size_t i = 0; i < n; ++i) v = v << 8 | b[i];
  return v;
}

double model(const uint8_t* tx, ModbusType type, ModbusOrder order) {
  const size_t nbytes = modbusTypeWords(type) * 2;
  uint8_t b[8];
  valueBytes(tx, nbytes, order, b);
  const uint64_t u = bigEndian(b, nbytes);
  switch (type) {
    case ModbusType::kBool:
      return (tx[0] | tx[1]) != 0 ? 1.0 : 0.0;
    case ModbusType::kInt16:
      return static_cast<int16_t>(u);
    case ModbusType::kUint16:
      return static_cast<uint16_t>(u);
    case ModbusType::kInt32:
      return static_cast<int32_t>(u);
    case ModbusType::kUint32:
      return static_cast<uint32_t>(u);
    case ModbusType::kInt64:
      return static_cast<double>(static_cast<int64_t>(u));
    case ModbusType::kFloat32:
      return std::bit_cast<float>(static_cast<uint32_t>(u));
    case ModbusType::kFloat64:
      return std::bit_cast<double>(u);
  }
  std::abort();
}

bool same(double a, double b) { return (std::isnan(a) && std::isnan(b)) || a == b; }

void fuzzDecode(const uint8_t* tx) {
  uint16_t words[4];  // as libmodbus returns them: the first transmitted byte in the high half
  for (int i = 0; i < 4; ++i) words[i] = static_cast<uint16_t>(tx[2 * i] << 8 | tx[2 * i + 1]);
  for (ModbusType t : {ModbusType::kBool, ModbusType::kInt16, ModbusType::kUint16,
                       ModbusType::kInt32, ModbusType::kUint32, ModbusType::kInt64,
                       ModbusType::kFloat32, ModbusType::kFloat64}) {
    for (ModbusOrder o :
         {ModbusOrder::kABCD, ModbusOrder::kDCBA, ModbusOrder::kBADC, ModbusOrder::kCDAB}) {
      const double got = modbusDecode(words, t, o);
      if (t == ModbusType::kBool) {
        check(got == (words[0] != 0 ? 1.0 : 0.0));
      } else {
        check(same(got, model(tx, t, o)));
      }
    }
  }
}

void fuzzPlan(const uint8_t* data, size_t size) {
  if (size < 3) return;
  const int max_gap = data[0] % 32;
  const int max_registers = 1 + data[1] % 125;  // the Modbus limits: 125 registers,
  const int max_bits = 1 + data[2] * 8;         // 2000 bits
  data += 3;
  size -= 3;
  std::vector<ModbusPlanItem> items;
  for (; size >= 5 && items.size() < 64; data += 5, size -= 5) {
    ModbusPlanItem it;
    it.function = static_cast<ModbusFunction>(data[0] % 4);
    const int limit = modbusIsBits(it.function) ? max_bits : max_registers;
    const int width = 1 + data[3] % std::min(limit, 4);
    // The planner's precondition (the config check guarantees it): the item fits.
    const int address = std::min<int>(data[1] << 8 | data[2], 65536 - width);
    it.address = static_cast<uint16_t>(address);
    it.width = static_cast<uint16_t>(width);
    it.index = items.size();
    items.push_back(it);
  }
  const auto requests = planModbusRequests(items, max_gap, max_registers, max_bits);
  std::vector<int> seen(items.size(), 0);
  for (size_t r = 0; r < requests.size(); ++r) {
    const ModbusRequest& q = requests[r];
    const int limit = modbusIsBits(q.function) ? max_bits : max_registers;
    check(q.count >= 1 && q.count <= limit);
    check(static_cast<int>(q.address) + q.count <= 65536);
    if (r > 0) {  // ordered by function and address
      const ModbusRequest& p = requests[r - 1];
      check(p.function < q.function || (p.function == q.function && p.address <= q.address));
    }
    for (size_t idx : q.items) {
      check(idx < items.size());
      const ModbusPlanItem& it = items[idx];
      check(it.function == q.function);
      check(it.address >= q.address && it.address + it.width <= q.address + q.count);
      ++seen[idx];
    }
  }
  for (int n : seen) check(n == 1);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  uint8_t tx[8] = {};
  std::memcpy(tx, data, size < 8 ? size : 8);
  fuzzDecode(tx);
  if (size > 8) fuzzPlan(data + 8, size - 8);
  return 0;
}
