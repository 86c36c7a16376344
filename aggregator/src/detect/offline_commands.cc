#include "outpost/aggregator/offline_commands.h"

#include <algorithm>
#include <fstream>
#include <iostream>
#include <sstream>

#include "outpost/aggregator/aggregator_config.h"
#include "outpost/aggregator/anomaly_stage.h"
#include "outpost/common/detect/backtest.h"
#include "outpost/common/detect/evaluate.h"

namespace outpost::aggregator {

namespace {

// `outpost-aggregator detect`: the backtest tool. The very same detectors as the live path, over a
// CSV file, one output row per input row, no look-ahead.
int runDetect(const std::string& input, const std::string& output,
              const outpost::detect::DetectorConfig& cfg,
              const outpost::detect::DeviceCsvOptions& device_opt) {
  using namespace outpost;
  std::ifstream in_file;
  std::stringstream in_buf;
  std::istream* in = &in_buf;
  if (input != "-") {
    in_file.open(input, std::ios::binary);
    if (!in_file) {
      std::cerr << "outpost-aggregator detect: cannot open " << input << "\n";
      return 1;
    }
    in = &in_file;
  } else {
    in_buf << std::cin.rdbuf();
  }
  // A header naming a `value` column: one sensor; otherwise one device with N sensor columns.
  bool multi = false;
  {
    std::string first;
    while (first.find_first_not_of(" \t\r") == std::string::npos && std::getline(*in, first)) {
    }
    std::string low;
    for (char ch : first) low += static_cast<char>(std::tolower(static_cast<unsigned char>(ch)));
    const char sep =
        std::count(low.begin(), low.end(), ';') > std::count(low.begin(), low.end(), ',') ? ';'
                                                                                          : ',';
    bool has_value = false;
    size_t cols = 1;
    std::stringstream ss(low);
    for (std::string c; std::getline(ss, c, sep);) {
      ++cols;
      const auto b = c.find_first_not_of(" \"\r"), e = c.find_last_not_of(" \"\r");
      if (b != std::string::npos && c.substr(b, e - b + 1) == "value") has_value = true;
    }
    multi = !has_value && (cols > 3 || sep == ';' || !device_opt.ignore.empty());
    in->clear();
    in->seekg(0);
  }
  std::ofstream out_file;
  std::ostream* out = &std::cout;
  if (!output.empty() && output != "-") {
    out_file.open(output, std::ios::binary | std::ios::trunc);
    if (!out_file) {
      std::cerr << "outpost-aggregator detect: cannot write " << output << "\n";
      return 1;
    }
    out = &out_file;
  }
  if (multi) {
    auto st = detect::backtestDeviceCsv(*in, *out, cfg, device_opt);
    out->flush();
    if (!st) {
      std::cerr << "outpost-aggregator detect: " << st.error().message() << "\n";
      return 1;
    }
    if (!*out) {
      std::cerr << "outpost-aggregator detect: write error\n";
      return 1;
    }
    std::cerr << "detect: " << st->rows << " rows, " << st->sensors.size() << " sensors, "
              << st->bad_rows << " rows and " << st->bad_values << " cells unparseable, "
              << st->device_alarms << " device alarms\n";
    return 0;
  }
  auto stats = detect::backtestCsv(*in, *out, cfg);
  out->flush();
  if (!stats) {
    std::cerr << "outpost-aggregator detect: " << stats.error().message() << "\n";
    return 1;
  }
  if (!*out) {
    std::cerr << "outpost-aggregator detect: write error\n";
    return 1;
  }
  std::cerr << "detect: " << stats->rows << " rows, " << stats->bad_rows
            << " unparseable (scored 0), " << stats->alarms << " alarms\n";
  return 0;
}

// "a,b, c" -> {"a", "b", "c"}.
std::vector<std::string> splitNames(const std::string& list) {
  std::vector<std::string> out;
  std::stringstream ss(list);
  for (std::string n; std::getline(ss, n, ',');) {
    const auto b = n.find_first_not_of(' '), e = n.find_last_not_of(' ');
    if (b != std::string::npos) out.push_back(n.substr(b, e - b + 1));
  }
  return out;
}

// `outpost-aggregator score`: the device detector over labelled multi-sensor CSV files, its own
// alarms scored (NAB on changepoints, point-wise on anomalies); docs/detection.md.
int runScore(const std::vector<std::string>& files, const outpost::detect::DetectorConfig& cfg,
             const outpost::detect::EvalOptions& opt) {
  auto groups = outpost::detect::evaluateFiles(files, cfg, opt);
  if (!groups) {
    std::cerr << "outpost-aggregator score: " << groups.error().message() << "\n";
    return 1;
  }
  outpost::detect::writeEvalTable(*groups, std::cout);
  return 0;
}

}  // namespace

OfflineCommands::OfflineCommands(CLI::App& app) {
  detect_cmd_ = app.add_subcommand(
      "detect",
      "Backtest the anomaly detectors on a CSV file with columns timestamp,value (extra columns "
      "ignored; writes timestamp,value,anomaly_score,alarm,kind), or on one device's CSV (',' or "
      "';', a time column and one column per sensor; writes per-sensor scores and the device "
      "score); one row per input row");
  detect_cmd_->add_option("-i,--input", detect_input_, "Input CSV file, or - for stdin")->required();
  detect_cmd_->add_option("-o,--output", detect_output_, "Output CSV file (default: stdout)");
  detect_cmd_->add_option("--sensor", detect_sensor_,
                          "Sensor name: selects the [[detect.classes]] entry of --config that the "
                          "live aggregator would use (default: the [detect] settings)");
  detect_cmd_->add_option("--device", detect_device_, "Device id, for classes matched by device");
  detect_cmd_->add_option("--ignore", detect_ignore_,
                          "Columns that are not sensors (names, comma-separated), e.g. labels; "
                          "a CSV without a `value` column is one device with a sensor per column");

  score_cmd_ = app.add_subcommand(
      "score",
      "Run the device detector over labelled multi-sensor CSV files (',' or ';') and score its "
      "own alarms: NAB (changepoint label, windows to the right) and point-wise F1/FAR/MAR "
      "(anomaly label); one Markdown row per directory and one for all");
  score_cmd_->add_option("files", score_files_, "CSV files")->required()->check(CLI::ExistingFile);
  score_cmd_->add_option("--ignore", score_ignore_,
                         "Columns that are not sensors (comma-separated names)");

  score_cmd_->add_option("--anomaly-label", score_opt_.anomaly_label,
                         "Point-wise label column (default anomaly)");
  score_cmd_->add_option("--changepoint-label", score_opt_.changepoint_label,
                         "Changepoint label column for NAB (default changepoint)");
  score_cmd_->add_option("--window-s", score_window_s_,
                         "NAB window to the right of each changepoint, seconds (default 60)")
      ->check(CLI::Range(0.001, 1e9));
}

std::optional<int> OfflineCommands::run(const cli::ProgramOptions& po) {
  if (*score_cmd_) {
    try {
      const AnomalyOptions ao = anomalyOptionsFrom(cli::loadConfig(po, aggregatorSchema()));
      score_opt_.csv.ignore = splitNames(score_ignore_);
      score_opt_.window_ms = static_cast<int64_t>(score_window_s_ * 1000.0);
      score_opt_.csv.sensor_cfg = [&ao](std::string_view sensor) {
        return detectorConfigFor(ao, "", sensor);
      };
      return runScore(score_files_, ao.defaults, score_opt_);
    } catch (const config::ConfigError& e) {
      std::cerr << "outpost-aggregator: configuration error: " << e.what() << "\n";
      return 2;
    }
  }
  if (*detect_cmd_) {
    try {
      // The [detect] table of --config / --set (built-in defaults without them).
      const AnomalyOptions ao = anomalyOptionsFrom(cli::loadConfig(po, aggregatorSchema()));
      detect::DeviceCsvOptions dopt;
      dopt.ignore = splitNames(detect_ignore_);
      dopt.sensor_cfg = [&ao, this](std::string_view sensor) {
        return detectorConfigFor(ao, detect_device_, sensor);
      };
      return runDetect(detect_input_, detect_output_,
                       *detectorConfigFor(ao, detect_device_, detect_sensor_), dopt);
    } catch (const config::ConfigError& e) {
      std::cerr << "outpost-aggregator: configuration error: " << e.what() << "\n";
      return 2;
    }
  }
  return std::nullopt;
}

}  // namespace outpost::aggregator
