#pragma once

// Modbus (TCP and RTU) as the agent's configuration sees it, and the pure parts of the Modbus
// source: decoding register contents into values, and grouping a register map into as few read
// requests as the protocol allows. No I/O here (modbus_source.h does the talking), so every
// decoding and grouping rule is unit-tested without a device.

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "outpost/common/settings.h"

namespace outpost::agent {

// The four Modbus data tables. Coils and discrete inputs are bits; holding and input registers
// 16-bit words.
enum class ModbusFunction : uint8_t { kCoil, kDiscreteInput, kHolding, kInput };
const config::EnumNames<ModbusFunction>& modbusFunctionNames();
const char* modbusFunctionName(ModbusFunction f);
inline bool modbusIsBits(ModbusFunction f) {
  return f == ModbusFunction::kCoil || f == ModbusFunction::kDiscreteInput;
}

enum class ModbusType : uint8_t {
  kBool,
  kInt16,
  kUint16,
  kInt32,
  kUint32,
  kInt64,
  kFloat32,
  kFloat64
};
const config::EnumNames<ModbusType>& modbusTypeNames();
const char* modbusTypeName(ModbusType t);
// Registers the type occupies (bool: 1 register, or 1 bit of a bit table).
size_t modbusTypeWords(ModbusType t);

// Where the bytes of a value are on the wire. A is the most significant byte of the value; the
// letters list the bytes in the order they are transmitted. For 64-bit types the same rule is
// applied to 8 bytes (ABCD = ABCDEFGH, DCBA = HGFEDCBA, BADC = BADCFEHG, CDAB = GHEFCDAB), and for
// 16-bit types only the byte swap matters (ABCD, CDAB = AB; DCBA, BADC = BA).
//   ABCD: big-endian (the Modbus standard); DCBA: little-endian;
//   BADC: bytes swapped within each register; CDAB: registers in reverse order ("word swap").
enum class ModbusOrder : uint8_t { kABCD, kDCBA, kBADC, kCDAB };
const config::EnumNames<ModbusOrder>& modbusOrderNames();
const char* modbusOrderName(ModbusOrder o);

// One sensor's place in a slave's register map: value = decoded * scale + offset.
struct ModbusPoint {
  std::string slave;  // name of a [[sources.modbus.slaves]] entry
  ModbusFunction function = ModbusFunction::kHolding;
  uint16_t address = 0;  // 0-based protocol address of the first register or bit
  ModbusType type = ModbusType::kUint16;
  ModbusOrder order = ModbusOrder::kABCD;
  double scale = 1.0;
  double offset = 0.0;
  bool operator==(const ModbusPoint&) const = default;
};

enum class ModbusTransport : uint8_t { kTcp, kRtu };
const config::EnumNames<ModbusTransport>& modbusTransportNames();  // "tcp", "rtu"
// Serial parity as libmodbus wants it ('N', 'E', 'O') and its setting names ("none", ...).
const config::EnumNames<char>& modbusParityNames();

// One slave (server) the agent polls. Slaves on the same serial device share one bus (one
// connection and one thread; their serial settings must agree); every TCP slave has its own
// connection and thread.
struct ModbusSlaveSpec {
  std::string name;
  std::string where;  // "sources.modbus.slaves[2]" for messages
  ModbusTransport transport = ModbusTransport::kTcp;
  std::string host;
  int port = 502;
  std::string device;
  int baud = 9600;
  char parity = 'N';  // 'N', 'E', 'O'
  int data_bits = 8;
  int stop_bits = 1;
  int unit_id = 1;
  int64_t timeout_us = 1000000;
  int retries = 1;
  int64_t poll_interval_us = 1000000;
  int64_t reconnect_min_us = 500000;
  int64_t reconnect_max_us = 30000000;
  int max_gap = 0;  // registers/bits read but not used, to join two requests into one
  int max_registers = 125;
  int max_bits = 2000;
  bool operator==(const ModbusSlaveSpec&) const = default;
  // The connection this slave is reached over: "tcp:<name>" or "rtu:<device>".
  std::string linkKey() const;
};

// Decodes the value of a register type from `words` (modbusTypeWords(type) registers as
// libmodbus returns them: first transmitted byte in the high half). kBool: the register != 0.
double modbusDecode(const uint16_t* words, ModbusType type, ModbusOrder order);

// A point as the planner sees it: `index` is returned in ModbusRequest::items.
struct ModbusPlanItem {
  ModbusFunction function;
  uint16_t address;
  uint16_t width;  // registers or bits
  size_t index;
};

struct ModbusRequest {
  ModbusFunction function;
  uint16_t address;
  uint16_t count;
  std::vector<size_t> items;  // ModbusPlanItem::index of every point inside [address, +count)
};

// Groups `items` into as few read requests as allowed: items of one function whose ranges are
// contiguous, overlapping or at most `max_gap` apart share a request as long as it spans at most
// `max_registers` registers (`max_bits` bits for coils and discrete inputs). Requests are ordered
// by function and address. Precondition: every item fits (address + width <= 65536, width <= the
// limit), which the config check guarantees.
std::vector<ModbusRequest> planModbusRequests(std::vector<ModbusPlanItem> items, int max_gap,
                                              int max_registers, int max_bits);

}  // namespace outpost::agent
