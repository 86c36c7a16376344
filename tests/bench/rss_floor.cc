// outpost-rss-floor: the resident memory of the agent's mandated libraries alone, without any
// Outpost code (issue 3's memory figure, docs/benchmarks.md).
//
// It does the least an agent must: a Paho C++ async client connected to the broker publishes one
// QoS 1 message of --payload bytes per second (50 sensors x 10 Hz = one batch of 500 readings per
// second), and each message goes through a SQLite WAL store with synchronous=FULL first (insert,
// then delete once the broker acknowledged it). After --seconds it prints VmRSS, VmHWM, the
// smaps_rollup summary and the largest mappings by RSS. What it shows is the floor below which the
// agent cannot go while it links these libraries; the agent's own figure is `run_agent_bench.sh rss`.
//
//   --openssl-init paho  Paho's default: it initialises OpenSSL (error strings, algorithms) when
//                        the first client is made, even without TLS;
//   --openssl-init none  MQTTAsync_global_init(do_openssl_init = 0): OpenSSL >= 1.1 initialises
//                        itself on first use, so without TLS most of libcrypto is never touched.
//
// Not a test: no assertions on memory (its smoke run only checks that it connects and publishes).

#include <MQTTAsync.h>
#include <sqlite3.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <fstream>
#include <iostream>
#include <map>
#include <mqtt/async_client.h>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

namespace {

bool exec(sqlite3* db, const char* sql) {
  char* err = nullptr;
  if (sqlite3_exec(db, sql, nullptr, nullptr, &err) != SQLITE_OK) {
    std::cerr << "outpost-rss-floor: sqlite: " << (err ? err : "?") << " in: " << sql << "\n";
    sqlite3_free(err);
    return false;
  }
  return true;
}

void printMemory() {
  std::ifstream status("/proc/self/status");
  for (std::string line; std::getline(status, line);) {
    if (line.starts_with("VmRSS") || line.starts_with("VmHWM") || line.starts_with("Threads")) {
      std::cout << line << "\n";
    }
  }
  std::ifstream rollup("/proc/self/smaps_rollup");
  for (std::string line; std::getline(rollup, line);) {
    if (line.starts_with("Pss:") || line.starts_with("Private_Dirty") ||
        line.starts_with("Shared_Clean")) {
      std::cout << line << "\n";
    }
  }
  // RSS by mapped object, largest first.
  std::ifstream smaps("/proc/self/smaps");
  std::map<std::string, long> by_name;
  std::string name;
  for (std::string line; std::getline(smaps, line);) {
    if (line.starts_with("Rss:")) {
      by_name[name] += std::stol(line.substr(4));
    } else if (!line.empty() && std::isxdigit(static_cast<unsigned char>(line[0])) &&
               line.find('-') < line.find(' ')) {
      std::istringstream fields(line);
      std::string range, perms, offset, dev, inode;
      name.clear();
      fields >> range >> perms >> offset >> dev >> inode >> name;
      if (name.empty()) name = "[anon]";
    }
  }
  std::vector<std::pair<long, std::string>> sorted;
  for (const auto& [n, kb] : by_name) sorted.emplace_back(kb, n);
  std::sort(sorted.rbegin(), sorted.rend());
  for (size_t i = 0; i < sorted.size() && i < 14; ++i) {
    std::printf("%8ld kB  %s\n", sorted[i].first, sorted[i].second.c_str());
  }
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"outpost-rss-floor: resident memory of Paho C++ + SQLite alone (no Outpost code)"};
  std::string broker = "tcp://127.0.0.1:1883", db_path = "rss-floor.db", openssl_init = "paho";
  int seconds = 20;
  size_t payload = 8000;
  app.add_option("--broker", broker, "MQTT broker URI");
  app.add_option("--db", db_path, "SQLite store to create (WAL, synchronous=FULL)");
  app.add_option("--seconds", seconds, "How long to publish (one message per second)")
      ->check(CLI::Range(1, 3600));
  app.add_option("--payload", payload, "Bytes per message")->check(CLI::Range(1, 1 << 20));
  app.add_option("--openssl-init", openssl_init, "Who initialises OpenSSL: paho or none")
      ->check(CLI::IsMember({"paho", "none"}));
  CLI11_PARSE(app, argc, argv);

  if (openssl_init == "none") {
    MQTTAsync_init_options init = MQTTAsync_init_options_initializer;
    init.do_openssl_init = 0;
    MQTTAsync_global_init(&init);
  }

  sqlite3* db = nullptr;
  if (sqlite3_open(db_path.c_str(), &db) != SQLITE_OK) {
    std::cerr << "outpost-rss-floor: cannot open " << db_path << ": " << sqlite3_errmsg(db) << "\n";
    return 1;
  }
  if (!exec(db, "PRAGMA journal_mode=WAL") || !exec(db, "PRAGMA synchronous=FULL") ||
      !exec(db, "CREATE TABLE IF NOT EXISTS outbox(seq INTEGER PRIMARY KEY, payload BLOB)")) {
    return 1;
  }
  sqlite3_stmt* insert = nullptr;
  sqlite3_stmt* erase = nullptr;
  sqlite3_prepare_v2(db, "INSERT INTO outbox(payload) VALUES(?)", -1, &insert, nullptr);
  sqlite3_prepare_v2(db, "DELETE FROM outbox WHERE seq = ?", -1, &erase, nullptr);

  int published = 0;
  try {
    mqtt::async_client client(broker, "outpost-rss-floor");
    client.connect(mqtt::connect_options_builder().clean_session(true).finalize())->wait();
    const std::string body(payload, 'x');
    auto next = std::chrono::steady_clock::now();
    for (int i = 0; i < seconds; ++i) {
      sqlite3_bind_blob(insert, 1, body.data(), static_cast<int>(body.size()), SQLITE_STATIC);
      if (sqlite3_step(insert) != SQLITE_DONE) {
        std::cerr << "outpost-rss-floor: insert: " << sqlite3_errmsg(db) << "\n";
        return 1;
      }
      sqlite3_reset(insert);
      const sqlite3_int64 seq = sqlite3_last_insert_rowid(db);
      client.publish("outpost-rss-floor/batch", body.data(), body.size(), 1, false)->wait();
      sqlite3_bind_int64(erase, 1, seq);
      sqlite3_step(erase);
      sqlite3_reset(erase);
      ++published;
      next += std::chrono::seconds(1);
      std::this_thread::sleep_until(next);
    }
    std::cout << "outpost-rss-floor: " << published << " messages of " << payload
              << " bytes published (QoS 1) through SQLite, OpenSSL initialised by "
              << openssl_init << "\n";
    printMemory();
    client.disconnect()->wait();
  } catch (const mqtt::exception& e) {
    std::cerr << "outpost-rss-floor: MQTT: " << e.what() << "\n";
    return 1;
  }
  sqlite3_finalize(insert);
  sqlite3_finalize(erase);
  sqlite3_close(db);
  return published == seconds ? 0 : 1;
}
