// A Modbus slave for the integration tests, built on libmodbus's own server functions
// (modbus_mapping_new, modbus_receive, modbus_reply): the agent talks to a real protocol
// implementation, not to a mock of one.
//
//   outpost-modbus-testserver (--tcp PORT | --rtu DEVICE) [--unit N[,N...]] [--size N]
//       [--set TABLE:ADDR=V[,V...]]... [--corrupt-crc-every N] [--ready-file PATH]
//
// TABLE is coil, discrete_input, holding or input; values are decimal or 0x hex 16-bit words
// (0/1 for bits). Every table has --size entries (default 200): reads beyond answer exception 2
// (illegal data address). TCP listens on 127.0.0.1:PORT and serves several clients; RTU answers
// as units --unit (default 1; one register map shared by them) on DEVICE (9600 8E1) and ignores
// requests for other units, as real bus members do. --corrupt-crc-every N (RTU): every Nth
// read-registers answer carries a wrong CRC. Runs until SIGTERM/SIGINT.

#include <modbus.h>
#include <poll.h>
#include <sys/select.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

namespace {

volatile std::sig_atomic_t g_stop = 0;

[[noreturn]] void usage(const char* msg) {
  std::fprintf(stderr,
               "outpost-modbus-testserver: %s\nusage: outpost-modbus-testserver (--tcp PORT | "
               "--rtu DEVICE) [--unit N[,N...]] [--size N] [--set TABLE:ADDR=V[,V...]]... "
               "[--corrupt-crc-every N] [--ready-file PATH]\n",
               msg);
  std::exit(2);
}

uint16_t crc16(const uint8_t* p, size_t n) {
  uint16_t crc = 0xFFFF;
  for (size_t i = 0; i < n; ++i) {
    crc ^= p[i];
    for (int b = 0; b < 8; ++b) {
      const uint16_t shifted = static_cast<uint16_t>(crc >> 1);
      crc = (crc & 1) ? static_cast<uint16_t>(shifted ^ 0xA001) : shifted;
    }
  }
  return crc;
}

struct Set {
  std::string table;
  long addr;
  std::vector<long> values;
};

Set parseSet(const std::string& s) {
  const auto colon = s.find(':');
  const auto eq = s.find('=');
  if (colon == std::string::npos || eq == std::string::npos || eq < colon) usage("bad --set");
  Set out{s.substr(0, colon), std::strtol(s.substr(colon + 1, eq - colon - 1).c_str(), nullptr, 0),
          {}};
  std::string rest = s.substr(eq + 1);
  size_t pos = 0;
  while (pos <= rest.size()) {
    const size_t comma = rest.find(',', pos);
    const size_t len = comma == std::string::npos ? std::string::npos : comma - pos;
    const std::string v = rest.substr(pos, len);
    out.values.push_back(std::strtol(v.c_str(), nullptr, 0));
    if (comma == std::string::npos) break;
    pos = comma + 1;
  }
  return out;
}

}  // namespace

int main(int argc, char** argv) {
  int port = 0;
  std::string device, ready_file;
  std::vector<int> units;
  int size = 200;
  long corrupt_every = 0;
  std::vector<Set> sets;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if (i + 1 >= argc) usage(("missing value after " + a).c_str());
    const std::string v = argv[++i];
    if (a == "--tcp") port = std::atoi(v.c_str());
    else if (a == "--rtu") device = v;
    else if (a == "--unit") {
      for (size_t p = 0; p < v.size();) {
        units.push_back(std::atoi(v.c_str() + p));
        const size_t c = v.find(',', p);
        if (c == std::string::npos) break;
        p = c + 1;
      }
    }
    else if (a == "--size") size = std::atoi(v.c_str());
    else if (a == "--set") sets.push_back(parseSet(v));
    else if (a == "--corrupt-crc-every") corrupt_every = std::atol(v.c_str());
    else if (a == "--ready-file") ready_file = v;
    else usage(("unknown option " + a).c_str());
  }
  if ((port > 0) == !device.empty()) usage("give exactly one of --tcp and --rtu");
  if (size < 1 || size > 65536) usage("--size must be 1..65536");
  if (units.empty()) units.push_back(1);

  modbus_mapping_t* map = modbus_mapping_new(size, size, size, size);
  if (!map) usage("modbus_mapping_new failed");
  for (const auto& s : sets) {
    for (size_t k = 0; k < s.values.size(); ++k) {
      const long a = s.addr + static_cast<long>(k);
      if (a < 0 || a >= size) usage("--set address outside --size");
      const long v = s.values[k];
      if (s.table == "coil") map->tab_bits[a] = v ? 1 : 0;
      else if (s.table == "discrete_input") map->tab_input_bits[a] = v ? 1 : 0;
      else if (s.table == "holding") map->tab_registers[a] = static_cast<uint16_t>(v);
      else if (s.table == "input") map->tab_input_registers[a] = static_cast<uint16_t>(v);
      else usage("--set table must be coil, discrete_input, holding or input");
    }
  }

  struct sigaction sa {};
  sa.sa_handler = [](int) { g_stop = 1; };
  sigaction(SIGTERM, &sa, nullptr);
  sigaction(SIGINT, &sa, nullptr);

  uint8_t query[MODBUS_TCP_MAX_ADU_LENGTH];
  auto ready = [&] {
    if (ready_file.empty()) return;
    if (FILE* f = std::fopen(ready_file.c_str(), "w")) {
      std::fprintf(f, "%d\n", static_cast<int>(getpid()));
      std::fclose(f);
    }
  };

  if (!device.empty()) {
    // Framing is done here, not by modbus_receive(): libmodbus 3.1.6's RTU server expects the
    // addressed unit to answer a request meant for another unit and reads the next frame as that
    // answer, so an absent unit on the bus would make it misread every later request. A real bus
    // member resynchronises on the next valid frame, as this loop does (requests of function
    // codes 1-4 are 8 bytes: unit, function, address, count, CRC).
    modbus_t* ctx = modbus_new_rtu(device.c_str(), 9600, 'E', 8, 1);
    if (ctx && std::getenv("OUTPOST_MODBUS_DEBUG")) modbus_set_debug(ctx, TRUE);
    if (!ctx || modbus_set_slave(ctx, units.front()) == -1 || modbus_connect(ctx) == -1) {
      std::fprintf(stderr, "outpost-modbus-testserver: %s: %s\n", device.c_str(),
                   modbus_strerror(errno));
      return 1;
    }
    ready();
    const int fd = modbus_get_socket(ctx);
    std::vector<uint8_t> buf;
    long answered = 0;
    while (!g_stop) {
      pollfd pfd{fd, POLLIN, 0};
      if (poll(&pfd, 1, 200) <= 0) continue;
      uint8_t in[256];
      const ssize_t got = read(fd, in, sizeof in);
      if (got <= 0) {
        if (got == -1 && errno == EINTR) continue;
        std::fprintf(stderr, "outpost-modbus-testserver: read: %s\n", std::strerror(errno));
        break;
      }
      buf.insert(buf.end(), in, in + got);
      while (buf.size() >= 8) {
        const uint16_t crc = static_cast<uint16_t>(buf[6] | (buf[7] << 8));
        if (buf[1] < 1 || buf[1] > 4 || crc16(buf.data(), 6) != crc) {
          buf.erase(buf.begin());  // resynchronise
          continue;
        }
        uint8_t query[8];
        std::copy(buf.begin(), buf.begin() + 8, query);
        buf.erase(buf.begin(), buf.begin() + 8);
        if (std::find(units.begin(), units.end(), query[0]) == units.end()) continue;  // not us
        modbus_set_slave(ctx, query[0]);
        const int fc = query[1];
        if (corrupt_every > 0 && (fc == 3 || fc == 4) && ++answered % corrupt_every == 0) {
          const int addr = (query[2] << 8) | query[3], count = (query[4] << 8) | query[5];
          if (addr + count <= size && count <= MODBUS_MAX_READ_REGISTERS) {
            const uint16_t* tab = fc == 3 ? map->tab_registers : map->tab_input_registers;
            uint8_t rsp[MODBUS_RTU_MAX_ADU_LENGTH];
            size_t n = 0;
            rsp[n++] = query[0];
            rsp[n++] = static_cast<uint8_t>(fc);
            rsp[n++] = static_cast<uint8_t>(count * 2);
            for (int k = 0; k < count; ++k) {
              rsp[n++] = static_cast<uint8_t>(tab[addr + k] >> 8);
              rsp[n++] = static_cast<uint8_t>(tab[addr + k] & 0xFF);
            }
            const uint16_t bad = static_cast<uint16_t>(crc16(rsp, n) ^ 0x5A5A);
            rsp[n++] = static_cast<uint8_t>(bad & 0xFF);
            rsp[n++] = static_cast<uint8_t>(bad >> 8);
            if (write(fd, rsp, n) < 0) g_stop = 1;
            continue;
          }
        }
        modbus_reply(ctx, query, 8, map);
      }
    }
    modbus_close(ctx);
    modbus_free(ctx);
  } else {
    modbus_t* ctx = modbus_new_tcp("127.0.0.1", port);
    const int server = ctx ? modbus_tcp_listen(ctx, 8) : -1;
    if (server == -1) {
      std::fprintf(stderr, "outpost-modbus-testserver: listen on %d: %s\n", port,
                   modbus_strerror(errno));
      return 1;
    }
    ready();
    fd_set refset;
    FD_ZERO(&refset);
    FD_SET(server, &refset);
    int fdmax = server;
    while (!g_stop) {
      fd_set rd = refset;
      if (select(fdmax + 1, &rd, nullptr, nullptr, nullptr) == -1) continue;  // EINTR: g_stop
      for (int fd = 0; fd <= fdmax; ++fd) {
        if (!FD_ISSET(fd, &rd)) continue;
        if (fd == server) {
          const int c = accept(server, nullptr, nullptr);
          if (c == -1 || c >= FD_SETSIZE) {
            if (c != -1) close(c);
            continue;
          }
          FD_SET(c, &refset);
          if (c > fdmax) fdmax = c;
          continue;
        }
        modbus_set_socket(ctx, fd);
        const int rc = modbus_receive(ctx, query);
        if (rc > 0) {
          modbus_reply(ctx, query, rc, map);
        } else if (rc == -1) {
          close(fd);
          FD_CLR(fd, &refset);
        }
      }
    }
    close(server);
    modbus_free(ctx);
  }
  modbus_mapping_free(map);
  return 0;
}
