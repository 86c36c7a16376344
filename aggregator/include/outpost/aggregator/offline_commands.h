#pragma once

// The offline subcommands of outpost-aggregator, which run the live path's detectors without a
// broker: `detect` (backtest over a CSV file, one output row per input row, no look-ahead) and
// `score` (the device detector over labelled CSV files, its alarms scored; docs/detection.md).
//
// Thread-safety: one thread (main).

#include <optional>
#include <string>
#include <vector>

#include "outpost/common/cli.h"
#include "outpost/common/detect/evaluate.h"

namespace outpost::aggregator {

class OfflineCommands {
 public:
  // Declares the subcommands and their options on `app` (which must outlive this object).
  explicit OfflineCommands(CLI::App& app);

  // After parsing: runs the subcommand chosen, with the [detect] settings of --config / --set
  // (built-in defaults without them), and returns its exit code (2 for a configuration error);
  // std::nullopt when no subcommand was chosen.
  std::optional<int> run(const cli::ProgramOptions& po);

 private:
  CLI::App* detect_cmd_ = nullptr;
  std::string detect_input_, detect_output_, detect_sensor_, detect_device_, detect_ignore_;
  CLI::App* score_cmd_ = nullptr;
  std::vector<std::string> score_files_;
  std::string score_ignore_;
  detect::EvalOptions score_opt_;
  double score_window_s_ = 60.0;
};

}  // namespace outpost::aggregator
