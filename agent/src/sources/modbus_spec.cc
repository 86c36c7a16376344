#include "outpost/agent/modbus_spec.h"

#include <algorithm>
#include <bit>
#include <cstring>

namespace outpost::agent {

const config::EnumNames<ModbusFunction>& modbusFunctionNames() {
  static const config::EnumNames<ModbusFunction> names{
      {ModbusFunction::kCoil, "coil"},
      {ModbusFunction::kDiscreteInput, "discrete_input"},
      {ModbusFunction::kHolding, "holding"},
      {ModbusFunction::kInput, "input"}};
  return names;
}
const char* modbusFunctionName(ModbusFunction f) { return modbusFunctionNames().name(f); }

const config::EnumNames<ModbusType>& modbusTypeNames() {
  static const config::EnumNames<ModbusType> names{
      {ModbusType::kBool, "bool"},       {ModbusType::kInt16, "int16"},
      {ModbusType::kUint16, "uint16"},   {ModbusType::kInt32, "int32"},
      {ModbusType::kUint32, "uint32"},   {ModbusType::kInt64, "int64"},
      {ModbusType::kFloat32, "float32"}, {ModbusType::kFloat64, "float64"}};
  return names;
}
const char* modbusTypeName(ModbusType t) { return modbusTypeNames().name(t); }

size_t modbusTypeWords(ModbusType t) {
  switch (t) {
    case ModbusType::kInt32:
    case ModbusType::kUint32:
    case ModbusType::kFloat32:
      return 2;
    case ModbusType::kInt64:
    case ModbusType::kFloat64:
      return 4;
    default:
      return 1;
  }
}

const config::EnumNames<ModbusOrder>& modbusOrderNames() {
  static const config::EnumNames<ModbusOrder> names{{ModbusOrder::kABCD, "ABCD"},
                                                    {ModbusOrder::kDCBA, "DCBA"},
                                                    {ModbusOrder::kBADC, "BADC"},
                                                    {ModbusOrder::kCDAB, "CDAB"}};
  return names;
}
const char* modbusOrderName(ModbusOrder o) { return modbusOrderNames().name(o); }

const config::EnumNames<ModbusTransport>& modbusTransportNames() {
  static const config::EnumNames<ModbusTransport> names{{ModbusTransport::kTcp, "tcp"},
                                                        {ModbusTransport::kRtu, "rtu"}};
  return names;
}

const config::EnumNames<char>& modbusParityNames() {
  static const config::EnumNames<char> names{{'N', "none"}, {'E', "even"}, {'O', "odd"}};
  return names;
}

std::string ModbusSlaveSpec::linkKey() const {
  return transport == ModbusTransport::kTcp ? "tcp:" + name : "rtu:" + device;
}

double modbusDecode(const uint16_t* words, ModbusType type, ModbusOrder order) {
  const size_t n = modbusTypeWords(type);
  const bool word_swap = order == ModbusOrder::kCDAB || order == ModbusOrder::kDCBA;
  const bool byte_swap = order == ModbusOrder::kBADC || order == ModbusOrder::kDCBA;
  // Put the registers into big-endian order (A first), then join them.
  uint64_t bits = 0;
  for (size_t i = 0; i < n; ++i) {
    uint16_t w = words[word_swap ? n - 1 - i : i];
    if (byte_swap) w = static_cast<uint16_t>((w >> 8) | (w << 8));
    bits = (bits << 16) | w;
  }
  switch (type) {
    case ModbusType::kBool:
      return bits != 0 ? 1.0 : 0.0;
    case ModbusType::kInt16:
      return static_cast<double>(static_cast<int16_t>(bits));
    case ModbusType::kUint16:
      return static_cast<double>(static_cast<uint16_t>(bits));
    case ModbusType::kInt32:
      return static_cast<double>(static_cast<int32_t>(bits));
    case ModbusType::kUint32:
      return static_cast<double>(static_cast<uint32_t>(bits));
    case ModbusType::kInt64:
      return static_cast<double>(static_cast<int64_t>(bits));
    case ModbusType::kFloat32:
      return static_cast<double>(std::bit_cast<float>(static_cast<uint32_t>(bits)));
    case ModbusType::kFloat64:
      return std::bit_cast<double>(bits);
  }
  return 0;
}

std::vector<ModbusRequest> planModbusRequests(std::vector<ModbusPlanItem> items, int max_gap,
                                              int max_registers, int max_bits) {
  std::sort(items.begin(), items.end(), [](const ModbusPlanItem& a, const ModbusPlanItem& b) {
    if (a.function != b.function) return a.function < b.function;
    if (a.address != b.address) return a.address < b.address;
    return a.index < b.index;
  });
  std::vector<ModbusRequest> out;
  uint32_t end = 0;  // exclusive end of the last request
  for (const auto& it : items) {
    const uint32_t limit =
        static_cast<uint32_t>(modbusIsBits(it.function) ? max_bits : max_registers);
    const uint32_t item_end = static_cast<uint32_t>(it.address) + it.width;
    if (!out.empty()) {
      auto& r = out.back();
      const uint32_t new_end = std::max(end, item_end);
      if (r.function == it.function && it.address <= end + static_cast<uint32_t>(max_gap) &&
          new_end - r.address <= limit) {
        r.count = static_cast<uint16_t>(new_end - r.address);
        r.items.push_back(it.index);
        end = new_end;
        continue;
      }
    }
    out.push_back({it.function, it.address, it.width, {it.index}});
    end = item_end;
  }
  return out;
}

}  // namespace outpost::agent
