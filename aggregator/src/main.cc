// outpost-aggregator: receives batches from agents, verifies and deduplicates them, publishes them
// to Kafka and acknowledges each batch once Kafka has it.

#include <algorithm>
#include <fstream>
#include <iostream>
#include <sstream>

#include "outpost/aggregator/aggregator.h"
#include "outpost/aggregator/aggregator_config.h"
#include "outpost/aggregator/mqtt_ingest.h"
#include "outpost/aggregator/zmq_ingest.h"
#include "outpost/aggregator/ops.h"
#include "outpost/common/cli.h"
#include "outpost/common/detect/backtest.h"
#include "outpost/common/detect/evaluate.h"
#include "outpost/common/http_server.h"
#include "outpost/common/log.h"
#include "outpost/common/mqtt_security.h"
#include "outpost/common/signals.h"
#include "outpost/common/version.h"

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

int main(int argc, char** argv) {
  using namespace outpost;
  using namespace outpost::aggregator;
  CLI::App app{"outpost-aggregator " + std::string(kVersion) +
               ": receives agent batches over MQTT and/or ZeroMQ, verifies and deduplicates them, publishes to "
               "Kafka, acks after delivery"};
  cli::ProgramOptions po{.program = "outpost-aggregator",
                         .default_path = "/etc/outpost/aggregator.toml"};
  cli::addProgramOptions(app, po);
  std::string detect_input, detect_output;
  CLI::App* detect_cmd = app.add_subcommand(
      "detect",
      "Backtest the anomaly detectors on a CSV file with columns timestamp,value (extra columns "
      "ignored; writes timestamp,value,anomaly_score,alarm,kind), or on one device's CSV (',' or "
      "';', a time column and one column per sensor; writes per-sensor scores and the device "
      "score); one row per input row");
  detect_cmd->add_option("-i,--input", detect_input, "Input CSV file, or - for stdin")->required();
  detect_cmd->add_option("-o,--output", detect_output, "Output CSV file (default: stdout)");
  std::string detect_sensor, detect_device;
  detect_cmd->add_option("--sensor", detect_sensor,
                         "Sensor name: selects the [[detect.classes]] entry of --config that the "
                         "live aggregator would use (default: the [detect] settings)");
  detect_cmd->add_option("--device", detect_device, "Device id, for classes matched by device");
  std::string detect_ignore;
  detect_cmd->add_option("--ignore", detect_ignore,
                         "Columns that are not sensors (names, comma-separated), e.g. labels; "
                         "a CSV without a `value` column is one device with a sensor per column");

  std::vector<std::string> score_files;
  std::string score_ignore;
  detect::EvalOptions score_opt;
  double score_window_s = 60.0;
  CLI::App* score_cmd = app.add_subcommand(
      "score",
      "Run the device detector over labelled multi-sensor CSV files (',' or ';') and score its "
      "own alarms: NAB (changepoint label, windows to the right) and point-wise F1/FAR/MAR "
      "(anomaly label); one Markdown row per directory and one for all");
  score_cmd->add_option("files", score_files, "CSV files")->required()->check(CLI::ExistingFile);
  score_cmd->add_option("--ignore", score_ignore,
                        "Columns that are not sensors (comma-separated names)");

  score_cmd->add_option("--anomaly-label", score_opt.anomaly_label,
                        "Point-wise label column (default anomaly)");
  score_cmd->add_option("--changepoint-label", score_opt.changepoint_label,
                        "Changepoint label column for NAB (default changepoint)");
  score_cmd->add_option("--window-s", score_window_s,
                        "NAB window to the right of each changepoint, seconds (default 60)")
      ->check(CLI::Range(0.001, 1e9));
  CLI11_PARSE(app, argc, argv);
  if (*score_cmd) {
    try {
      const AnomalyOptions ao = anomalyOptionsFrom(cli::loadConfig(po, aggregatorSchema()));
      score_opt.csv.ignore = splitNames(score_ignore);
      score_opt.window_ms = static_cast<int64_t>(score_window_s * 1000.0);
      score_opt.csv.sensor_cfg = [&ao](std::string_view sensor) {
        return detectorConfigFor(ao, "", sensor);
      };
      return runScore(score_files, ao.defaults, score_opt);
    } catch (const config::ConfigError& e) {
      std::cerr << "outpost-aggregator: configuration error: " << e.what() << "\n";
      return 2;
    }
  }
  if (*detect_cmd) {
    try {
      // The [detect] table of --config / --set (built-in defaults without them).
      const AnomalyOptions ao = anomalyOptionsFrom(cli::loadConfig(po, aggregatorSchema()));
      detect::DeviceCsvOptions dopt;
      dopt.ignore = splitNames(detect_ignore);
      dopt.sensor_cfg = [&ao, &detect_device](std::string_view sensor) {
        return detectorConfigFor(ao, detect_device, sensor);
      };
      return runDetect(detect_input, detect_output,
                       *detectorConfigFor(ao, detect_device, detect_sensor), dopt);
    } catch (const config::ConfigError& e) {
      std::cerr << "outpost-aggregator: configuration error: " << e.what() << "\n";
      return 2;
    }
  }

  const auto& schema = aggregatorSchema();
  if (po.print_reference) {
    std::cout << cli::configReference(po, schema);
    return 0;
  }
  signals::installSignalHandlers();
  try {
    config::Config cfg = cli::loadConfig(po, schema);
    // Typed settings; invalid combinations (no ingest at all, a maximum below its minimum) throw.
    const AggregatorSettings settings = readAggregatorSettings(cfg);
    AggregatorOptions options = settings.pipeline;
    const bool with_mqtt = settings.ingest.mqtt_enabled;
    const bool with_zmq = !settings.ingest.zmq.listen.empty();
    MqttIngestOptions mo = settings.ingest.mqtt;
    if (with_mqtt) {
      auto sec = mqttsec::load(cfg, "mqtt.", mo.broker);
      if (!sec) throw config::ConfigError(sec.error().message());
      mo.security = std::move(*sec);
    }
    ZmqIngestOptions zo = settings.ingest.zmq;
    if (po.check_only) {
      std::cout << "configuration OK\n";
      return 0;
    }
    initLogging(cli::readProcessSettings(cfg).log_level, "outpost-aggregator");

    metrics::Registry registry;
    metrics::setCollectionEnabled(settings.metrics_collect);
    Aggregator aggregator(options, registry, SystemClock::instance());
    std::function<bool()> mqtt_up = [] { return false; };
    auto readiness = [&] {
      auto why = aggregator.notReadyReasons();
      if (!mqtt_up()) why.push_back("mqtt: not connected to the broker");
      return why;
    };
    std::unique_ptr<OpsCenter> ops;  // the ops layer (ops.h); off with metrics.collect=false
    if (metrics::collectionEnabled()) {
      ops = std::make_unique<OpsCenter>(
          settings.ops, registry, SystemClock::instance(),
          [&](const std::string& t, const std::string& k, const std::string& v) {
            return aggregator.publishEvent(t, k, v);
          },
          readiness);
      aggregator.setObserver(ops.get());
      // Alarms that open go to the dashboard and the webhook (ended ones only close them on Kafka).
      aggregator.anomalies().addObserver([&ops](const AnomalyRecord& r, std::string_view json) {
        if (r.ended) return;
        AnomalyEvent e;
        e.device = r.device;
        e.sensor = r.sensor;
        e.kind = detect::kindName(r.kind);
        e.value = r.value;
        e.score = r.score;
        e.ts_us = r.timestamp_us;
        e.recent = r.recent;
        e.json.assign(json);
        ops->onAnomaly(e);
      });
    }
    aggregator.start();
    std::unique_ptr<ZmqIngest> zmq_ingest;
    if (with_zmq) {
      zmq_ingest = std::make_unique<ZmqIngest>(zo, aggregator, registry, SystemClock::instance());
      if (auto st = zmq_ingest->start(); !st) {
        spdlog::error("ZeroMQ ingest: {}", st.error().message());
        aggregator.stop();
        return 1;
      }
    }
    std::unique_ptr<MqttIngest> ingest;
    if (with_mqtt) {
      ingest = std::make_unique<MqttIngest>(mo, aggregator, registry, SystemClock::instance());
      mqtt_up = [&ingest] { return ingest->connected(); };
    } else {
      mqtt_up = [] { return true; };  // no broker configured: nothing to be connected to
    }
    if (ops) {
      if (ingest) {
        ingest->setStatusHandler([&](const std::string& d, std::string_view p, bool retained) {
          ops->onStatus(d, p, retained);
        });
      }
      ops->start();
    }

    // /healthz: started and connected to the broker (if any); /readyz adds Kafka and backlog.
    HttpServer http(
        registry,
        [&](std::string& d) {
          bool ok = aggregator.healthy(d);
          if (ingest) {
            ok = ok && ingest->connected();
            d += ingest->connected() ? ", mqtt connected" : ", mqtt disconnected";
          }
          if (zmq_ingest) d += ", zmq listening";
          return ok;
        },
        readiness, ops ? settings.ops.max_stream_clients + 4 : 2);
    if (ops) ops->addRoutes(http);
    if (aggregator.latest()) aggregator.latest()->addRoutes(http, SystemClock::instance());
    if (auto st = cli::serveOps(http, cfg); !st) {
      spdlog::error("http: {}", st.error().toString());
      aggregator.stop();
      return 1;
    }
    if (!ingest || ingest->start([] { return signals::stopRequested(); })) {
      spdlog::info("aggregator running: {}{}{} -> kafka {} ({})", with_mqtt ? mo.broker : "",
                   with_mqtt && with_zmq ? " + " : "", with_zmq ? zo.listen : "",
                   options.kafka.bootstrap_servers, options.readings_topic);
      while (!signals::waitForStop(std::chrono::seconds(1))) {
        if (signals::takeReloadRequest()) {
          if (zmq_ingest) {
            (void)zmq_ingest->reloadAllowList();  // logs and counts its outcome
          } else {
            spdlog::warn("configuration reload (SIGHUP) is not implemented; restart to apply a "
                         "new configuration");
          }
        }
      }
    }
    // Drain first (acks still go out), then disconnect.
    if (ops) ops->stop();  // last status events go out before the producer stops
    aggregator.stop();
    if (zmq_ingest) zmq_ingest->stop();
    if (ingest) ingest->stop();
    http.stop();
    return 0;
  } catch (const config::ConfigError& e) {
    std::cerr << "outpost-aggregator: configuration error: " << e.what() << "\n";
    return 2;
  } catch (const std::exception& e) {
    std::cerr << "outpost-aggregator: " << e.what() << "\n";
    return 1;
  }
}
