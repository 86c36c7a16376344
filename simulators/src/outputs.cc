#include "outpost/sim/outputs.h"

#include <cerrno>
#include <cstring>
#include <filesystem>

#include "outpost/sim/util.h"

namespace outpost::sim {

size_t BufferedFiles::add(std::string path, std::string header) {
  files_.push_back({std::move(path), std::move(header), {}, false});
  return files_.size() - 1;
}

Status BufferedFiles::append(size_t file, std::string_view text) {
  File& f = files_[file];
  f.buf.append(text);
  if (f.buf.size() >= flush_bytes_) return flush(file);
  return {};
}

Status BufferedFiles::flush(size_t file) {
  File& f = files_[file];
  if (f.created && f.buf.empty()) return {};
  FILE* fp = std::fopen(f.path.c_str(), f.created ? "ab" : "wb");
  if (!fp) return fail(ErrorCode::kIoError, "cannot write " + f.path + ": " + std::strerror(errno));
  bool ok = true;
  if (!f.created) ok = std::fwrite(f.header.data(), 1, f.header.size(), fp) == f.header.size();
  ok = ok && std::fwrite(f.buf.data(), 1, f.buf.size(), fp) == f.buf.size();
  ok = (std::fclose(fp) == 0) && ok;
  if (!ok) return fail(ErrorCode::kIoError, "cannot write " + f.path + ": " + std::strerror(errno));
  f.created = true;
  f.buf.clear();
  return {};
}

Status BufferedFiles::flushAll() {
  for (size_t i = 0; i < files_.size(); ++i) {
    if (auto st = flush(i); !st) return st;
  }
  return {};
}

namespace {

Status makeDir(const std::filesystem::path& p) {
  std::error_code ec;
  std::filesystem::create_directories(p, ec);
  if (ec) return fail(ErrorCode::kIoError, "cannot create " + p.string() + ": " + ec.message());
  return {};
}

std::string timestampText(int64_t us, LineTimestamp ts) {
  switch (ts) {
    case LineTimestamp::kNone:
      return "";
    case LineTimestamp::kSeconds: {
      char buf[48];
      const int64_t s = us >= 0 ? us / 1'000'000 : (us - 999'999) / 1'000'000;
      std::snprintf(buf, sizeof buf, " %lld.%06lld", static_cast<long long>(s),
                    static_cast<long long>(us - s * 1'000'000));
      return buf;
    }
    case LineTimestamp::kMillis:
      return " " + std::to_string(us / 1000);
    case LineTimestamp::kMicros:
      return " " + std::to_string(us);
  }
  return "";
}

class LinesOutput final : public StepOutput {
 public:
  LinesOutput(std::string dir, const Fleet& fleet, LineTimestamp ts)
      : dir_(std::move(dir)), ts_(ts) {
    if (!dir_.empty()) {
      for (int d = 0; d < fleet.devices(); ++d) {
        files_.add((std::filesystem::path(dir_) / (fleet.deviceName(d) + ".lines")).string(), "");
      }
    }
  }
  Status write(const Fleet& fleet, int device, const DeviceStep& step) override {
    line_.clear();
    const auto& sensors = fleet.sensors();
    for (const auto& r : step.readings) {
      line_ += sensors[r.sensor()].name;
      line_ += ' ';
      line_ += formatValue(r.value());
      line_ += timestampText(r.ts_us(), ts_);
      line_ += '\n';
    }
    if (dir_.empty()) {
      if (std::fwrite(line_.data(), 1, line_.size(), stdout) != line_.size()) {
        return fail(ErrorCode::kIoError,
                    std::string("cannot write stdout: ") + std::strerror(errno));
      }
      return {};
    }
    if (!made_) {
      if (auto st = makeDir(dir_); !st) return st;
      made_ = true;
    }
    return files_.append(static_cast<size_t>(device), line_);
  }
  Status endStep() override {
    if (dir_.empty() && std::fflush(stdout) != 0) {
      return fail(ErrorCode::kIoError, std::string("cannot write stdout: ") + std::strerror(errno));
    }
    return {};
  }
  Status finish() override {
    if (dir_.empty()) return endStep();
    if (!made_) {
      if (auto st = makeDir(dir_); !st) return st;
      made_ = true;
    }
    return files_.flushAll();
  }

 private:
  bool made_ = false;
  std::string dir_;
  LineTimestamp ts_;
  BufferedFiles files_;
  std::string line_;
};

class CsvOutput final : public StepOutput {
 public:
  CsvOutput(const std::string& dir, const Fleet& fleet) : sensors_(fleet.sensors().size()) {
    for (int d = 0; d < fleet.devices(); ++d) {
      const auto ddir = std::filesystem::path(dir) / fleet.deviceName(d);
      dirs_.push_back(ddir);
      for (const auto& s : fleet.sensors()) {
        files_.add((ddir / (s.name + ".csv")).string(), "timestamp,value,label\n");
      }
    }
  }
  Status write(const Fleet& fleet, int device, const DeviceStep& step) override {
    if (!made_) {
      for (const auto& d : dirs_) {
        if (auto st = makeDir(d); !st) return st;
      }
      made_ = true;
    }
    for (size_t i = 0; i < step.readings.size(); ++i) {
      const auto& r = step.readings[i];
      line_ = isoTimeUs(r.ts_us());
      line_ += ',';
      line_ += formatValue(r.value());
      line_ += ',';
      if (step.anomaly[i]) line_ += anomalyKindName(static_cast<AnomalyKind>(step.anomaly[i] - 1));
      line_ += '\n';
      const size_t f = static_cast<size_t>(device) * sensors_ + r.sensor();
      if (auto st = files_.append(f, line_); !st) return st;
    }
    return {};
  }
  Status finish() override {
    if (!made_) {
      for (const auto& d : dirs_) {
        if (auto st = makeDir(d); !st) return st;
      }
      made_ = true;
    }
    return files_.flushAll();
  }

 private:
  size_t sensors_;
  std::vector<std::filesystem::path> dirs_;
  BufferedFiles files_;
  std::string line_;
  bool made_ = false;
};

}  // namespace

std::unique_ptr<StepOutput> makeLinesOutput(const std::string& dir, const Fleet& fleet,
                                            LineTimestamp ts) {
  return std::make_unique<LinesOutput>(dir, fleet, ts);
}

std::unique_ptr<StepOutput> makeCsvOutput(const std::string& dir, const Fleet& fleet) {
  return std::make_unique<CsvOutput>(dir, fleet);
}

}  // namespace outpost::sim
