// outpost-sim export-csv: a capture as CSV per device and sensor (DIR/<device>/<sensor>.csv,
// `timestamp,value`), the input of `outpost-aggregator detect`. Every payload is verified
// (verifyBatch + checkBatchSemantics); re-sent batches (same device, epoch, seq) are written once;
// rows are sorted by timestamp. Holds the readings in memory (about 40 bytes each).

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <map>
#include <set>
#include <tuple>

#include "commands.h"
#include "outpost/common/codec.h"
#include "outpost/sim/capture.h"
#include "outpost/sim/outputs.h"
#include "outpost/sim/util.h"

namespace outpost::sim {
namespace {

struct ExportCli {
  std::string input;
  std::string out;
  std::string timestamp = "iso";
  bool quiet = false;
};

// Sensor names come from the network: only [A-Za-z0-9._-] reach the file system.
std::string safeName(const std::string& s) {
  std::string o;
  for (char ch : s) {
    const bool ok = (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') ||
                    (ch >= '0' && ch <= '9') || ch == '.' || ch == '_' || ch == '-';
    o += ok ? ch : '_';
  }
  if (o.empty() || o[0] == '.') o.insert(0, "_");
  return o;
}

int runExport(ExportCli& c) {
  auto reader = CaptureReader::open(c.input);
  if (!reader) {
    std::cerr << "outpost-sim export-csv: " << reader.error().message() << "\n";
    return kExitFailure;
  }
  CaptureReader& r = **reader;
  std::map<std::pair<std::string, std::string>, std::vector<std::pair<int64_t, double>>> series;
  std::set<std::tuple<std::string, uint64_t, uint64_t>> seen;
  uint64_t records = 0, invalid = 0, duplicates = 0, readings = 0;
  const codec::VerifyLimits limits;
  const int64_t now = wallUs();
  Progress progress(c.quiet);
  for (;;) {
    auto rec = r.next();
    if (!rec) {
      std::cerr << "outpost-sim export-csv: " << rec.error().message() << "\n";
      return kExitFailure;
    }
    if (!*rec) break;
    ++records;
    auto b = codec::verifyBatch((*rec)->payload, limits);
    if (!b || !codec::checkBatchSemantics(**b, limits, now, "")) {
      ++invalid;
      continue;
    }
    const wire::Batch& batch = **b;
    const std::string dev = batch.device_id()->str();
    if (!seen.emplace(dev, batch.epoch(), batch.seq()).second) {
      ++duplicates;
      continue;
    }
    std::map<uint16_t, std::string> names;
    for (const auto* s : *batch.sensors()) names[s->id()] = s->name()->str();
    if (batch.readings()) {
      for (const auto* rd : *batch.readings()) {
        series[{dev, names[rd->sensor()]}].emplace_back(rd->ts_us(), rd->value());
        ++readings;
      }
    }
    progress.update(r.fileSize() ? double(r.offset()) / double(r.fileSize()) : -1,
                    withCommas(records) + " batches, " + withCommas(readings) + " readings");
  }
  progress.finish();
  BufferedFiles files;
  for (auto& [key, rows] : series) {
    const auto dir = std::filesystem::path(c.out) / key.first;
    std::error_code ec;
    std::filesystem::create_directories(dir, ec);
    if (ec) {
      std::cerr << "outpost-sim export-csv: cannot create " << dir << ": " << ec.message() << "\n";
      return kExitFailure;
    }
    std::stable_sort(rows.begin(), rows.end(),
                     [](const auto& a, const auto& b) { return a.first < b.first; });
    const size_t f =
        files.add((dir / (safeName(key.second) + ".csv")).string(), "timestamp,value\n");
    std::string line;
    for (const auto& [ts, v] : rows) {
      line = c.timestamp == "us"   ? std::to_string(ts)
             : c.timestamp == "ms" ? std::to_string(ts / 1000)
                                   : isoTimeUs(ts);
      line += ',';
      line += formatValue(v);
      line += '\n';
      if (auto st = files.append(f, line); !st) {
        std::cerr << "outpost-sim export-csv: " << st.error().message() << "\n";
        return kExitFailure;
      }
    }
  }
  if (auto st = files.flushAll(); !st) {
    std::cerr << "outpost-sim export-csv: " << st.error().message() << "\n";
    return kExitFailure;
  }
  const auto& st = r.stats();
  std::cerr << "outpost-sim export-csv: " << records << " records (" << invalid << " invalid, "
            << duplicates << " duplicate batches, " << st.bad_crc << " bad CRC skipped"
            << (st.truncated_tail ? ", truncated last record ignored" : "")
            << "): " << withCommas(readings) << " readings into " << series.size()
            << " files under " << c.out << "\n";
  return kExitOk;
}

}  // namespace

Command addExportCsvCommand(CLI::App& app) {
  auto c = std::make_shared<ExportCli>();
  CLI::App* cmd = app.add_subcommand(
      "export-csv",
      "Export a capture as CSV per device and sensor (for outpost-aggregator detect)");
  cmd->add_option("-r,--input", c->input, "Capture file")->required();
  cmd->add_option("--out", c->out, "Output directory (DIR/<device>/<sensor>.csv)")->required();
  cmd->add_option("--timestamp", c->timestamp, "iso (2024-05-01T00:00:00.000000Z), us or ms")
      ->capture_default_str()
      ->check(CLI::IsMember({"iso", "us", "ms"}));
  cmd->add_flag("-q,--quiet", c->quiet, "No progress output");
  return {cmd, [c] { return runExport(*c); }};
}

}  // namespace outpost::sim
