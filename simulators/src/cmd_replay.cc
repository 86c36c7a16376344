// outpost-sim replay: publishes a capture again at 1x, Nx or maximum speed, once or looped,
// optionally multiplying every recorded device into N devices. Every payload is verified
// (codec::verifyBatch) before it is sent; invalid ones are counted and skipped.
//
// Rewriting (decode, change, re-encode) happens only when needed: copies (--multiply), loops after
// the first (a new epoch per loop, or the aggregator would drop them as duplicates), --shift-time.
// Otherwise the recorded bytes go out unchanged.

#include <mqtt/async_client.h>
#include <spdlog/spdlog.h>

#include <fstream>
#include <iostream>
#include <map>
#include <mutex>
#include <sstream>
#include <thread>
#include <tuple>

#include "commands.h"
#include "outpost/common/codec.h"
#include "outpost/common/json.h"
#include "outpost/common/signals.h"
#include "outpost/sim/capture.h"
#include "outpost/sim/fleet.h"
#include "outpost/sim/util.h"

namespace outpost::sim {
namespace {

struct ReplayCli {
  BrokerOptions broker;
  std::string input;
  std::string speed = "1";
  int loops = 1;
  int multiply = 1;
  bool shift_time = false;
  bool no_wait = false;
  size_t max_inflight = 1000;
  std::string ack_timeout = "10s";
  std::string drain = "10s";
  std::string client_id = "outpost-sim-replay";
  std::string summary_json;
  bool quiet = false;
};

using Key = std::tuple<std::string, uint64_t, uint64_t>;

struct Outstanding {
  std::string topic;
  std::vector<uint8_t> payload;
  int64_t sent_us;
};

struct AckEvent {
  Key key;
  bool accepted;
};

std::string copyName(const std::string& device, int k) {
  std::string n = std::to_string(k);
  if (n.size() < 4) n.insert(0, 4 - n.size(), '0');
  return device + "-" + n;
}

int runReplay(ReplayCli& c) {
  auto speed = parseSpeed(c.speed);
  auto ack_timeout = parseDurationUs(c.ack_timeout);
  auto drain = parseDurationUs(c.drain);
  if (!speed || !ack_timeout || !drain) {
    std::cerr << "outpost-sim replay: "
              << (!speed         ? "--speed: " + speed.error().message()
                  : !ack_timeout ? "--ack-timeout: " + ack_timeout.error().message()
                                 : "--drain-timeout: " + drain.error().message())
              << "\n";
    return kExitUsage;
  }
  auto reader = CaptureReader::open(c.input);
  if (!reader) {
    std::cerr << "outpost-sim replay: " << reader.error().message() << "\n";
    return kExitFailure;
  }
  CaptureReader& r = **reader;

  std::mutex mu;
  std::vector<AckEvent> acks;  // GUARDED_BY(mu)
  uint64_t bad_acks = 0;       // GUARDED_BY(mu)
  mqtt::create_options create(MQTTVERSION_DEFAULT, static_cast<int>(c.max_inflight) * 2 + 1000);
  create.set_send_while_disconnected(false);
  mqtt::async_client cli(c.broker.broker, c.client_id, create);
  cli.set_message_callback([&](mqtt::const_message_ptr m) {
    const std::string& p = m->get_payload_ref().str();
    std::vector<uint8_t> buf(p.begin(), p.end());
    auto a = codec::verifyAck(buf);
    std::lock_guard lock(mu);
    if (!a) {
      ++bad_acks;
      return;
    }
    acks.push_back({{(*a)->device_id()->str(), (*a)->epoch(), (*a)->seq()},
                    (*a)->status() == wire::AckStatus::Accepted});
  });
  try {
    connectBroker(cli, c.broker);
    if (!c.no_wait)
      cli.subscribe(c.broker.topic_prefix + "/+/ack", 1)->wait_for(std::chrono::seconds(10));
  } catch (const mqtt::exception& e) {
    std::cerr << "outpost-sim replay: cannot connect to " << c.broker.broker << ": " << e.what()
              << "\n";
    return kExitUnavailable;
  }

  std::map<Key, Outstanding> outstanding;
  std::map<Key, bool> done;  // acked keys (duplicates in the capture are acked once)
  uint64_t records = 0, invalid = 0, published = 0, resent = 0, readings = 0, accepted = 0,
           rejected = 0, publish_failures = 0;
  std::string error;
  Progress progress(c.quiet);
  const int64_t t0 = monoUs();
  const codec::VerifyLimits limits;

  auto publish = [&](const std::string& topic, const std::vector<uint8_t>& payload) {
    try {
      cli.publish(topic, payload.data(), payload.size(), 1, false);
      return true;
    } catch (const mqtt::exception& e) {
      ++publish_failures;
      spdlog::warn("publish failed: {}", e.what());
      return false;
    }
  };
  int64_t last_scan = 0;
  auto service = [&](int64_t now) {
    std::vector<AckEvent> evs;
    {
      std::lock_guard lock(mu);
      evs.swap(acks);
    }
    for (auto& ev : evs) {
      auto it = outstanding.find(ev.key);
      if (it == outstanding.end()) continue;  // another sender's ack, or a duplicate
      outstanding.erase(it);
      done[ev.key] = ev.accepted;
      (ev.accepted ? accepted : rejected)++;
    }
    if (now - last_scan < 100'000) return;  // the resend scan is O(window): 10 times a second
    last_scan = now;
    for (auto& [k, o] : outstanding) {
      if (now - o.sent_us < *ack_timeout) continue;
      if (publish(o.topic, o.payload)) ++resent;
      o.sent_us = now;
    }
  };

  bool interrupted = false;
  for (int loop = 0; (c.loops == 0 || loop < c.loops) && error.empty() && !interrupted; ++loop) {
    if (loop > 0) {
      if (auto st = r.rewind(); !st) {
        error = st.error().message();
        break;
      }
    }
    int64_t first_recv = -1, loop_origin = monoUs(), shift = 0;
    for (;;) {
      if (signals::stopRequested()) {
        interrupted = true;
        break;
      }
      auto rec = r.next();
      if (!rec) {
        error = rec.error().message();
        break;
      }
      if (!*rec) break;
      CaptureRecord& cr = **rec;
      ++records;
      auto verified = codec::verifyBatch(cr.payload, limits);
      if (!verified || !codec::isValidDeviceId((*verified)->device_id()->string_view())) {
        ++invalid;
        continue;
      }
      if (first_recv < 0) {
        first_recv = cr.recv_us;
        if (c.shift_time) shift = wallUs() - cr.recv_us;
      }
      if (*speed > 0) {
        const int64_t due =
            loop_origin + static_cast<int64_t>(double(cr.recv_us - first_recv) / *speed);
        for (int64_t now = monoUs(); now < due && !signals::stopRequested(); now = monoUs()) {
          service(now);
          std::this_thread::sleep_for(
              std::chrono::microseconds(std::min<int64_t>(due - now, 2000)));
        }
      }
      const wire::Batch& b = **verified;
      const bool rewrite = c.multiply > 1 || loop > 0 || c.shift_time;
      std::vector<std::pair<std::string, std::vector<uint8_t>>> sends;
      std::vector<Key> keys;
      const uint64_t n_readings = b.readings() ? b.readings()->size() : 0;
      if (!rewrite) {
        const std::string dev = b.device_id()->str();
        keys.emplace_back(dev, b.epoch(), b.seq());
        sends.emplace_back(c.broker.topic_prefix + "/" + dev + "/batch", std::move(cr.payload));
      } else {
        codec::BatchContent content = codec::toContent(b);
        const std::string dev = content.device_id;
        if (loop > 0) {
          Rng mix = Rng::derive(content.epoch, static_cast<uint64_t>(loop));
          content.epoch = (content.epoch ^ mix.next()) >> 1;
          if (content.epoch == 0) content.epoch = 1;
        }
        if (shift) {
          content.created_us += shift;
          for (auto& rd : content.readings) {
            rd = wire::Reading(rd.ts_us() + shift, rd.value(), rd.sensor(), rd.quality());
          }
          for (auto& w : content.windows) {
            w = wire::WindowStat(w.start_us() + shift, w.end_us() + shift, w.min(), w.max(),
                                 w.mean(), w.stddev(), w.first(), w.last(), w.count(), w.sensor());
          }
        }
        for (int k = 1; k <= c.multiply; ++k) {
          content.device_id = c.multiply > 1 ? copyName(dev, k) : dev;
          if (!codec::isValidDeviceId(content.device_id)) {
            error =
                "--multiply: '" + content.device_id + "' is not a valid device id (64 chars max)";
            break;
          }
          keys.emplace_back(content.device_id, content.epoch, content.seq);
          sends.emplace_back(c.broker.topic_prefix + "/" + content.device_id + "/batch",
                             codec::encodeBatch(content));
        }
      }
      for (size_t i = 0; i < sends.size() && error.empty(); ++i) {
        // Bounded: wait for acks while the window is full.
        while (!c.no_wait && outstanding.size() >= c.max_inflight && !signals::stopRequested()) {
          service(monoUs());
          std::this_thread::sleep_for(std::chrono::microseconds(500));
        }
        if (!cli.is_connected()) {
          error = "connection to the broker lost";
          break;
        }
        publish(sends[i].first, sends[i].second);
        ++published;
        readings += n_readings;
        if (!c.no_wait && !done.contains(keys[i])) {
          outstanding[keys[i]] = {sends[i].first, std::move(sends[i].second), monoUs()};
        }
      }
      service(monoUs());
      const double el = std::max(1e-9, double(monoUs() - t0) / 1e6);
      progress.update(r.fileSize() ? double(r.offset()) / double(r.fileSize()) : -1,
                      "loop " + std::to_string(loop + 1) + "  " + withCommas(published) +
                          " batches, " + withCommas(readings) + " readings (" +
                          withCommas(static_cast<uint64_t>(double(readings) / el)) + "/s)  acked " +
                          withCommas(accepted) + "  waiting " + std::to_string(outstanding.size()));
      if (!error.empty()) break;
    }
  }
  const int64_t sent_end = monoUs();
  if (!c.no_wait) {
    const int64_t limit = monoUs() + (interrupted ? std::min<int64_t>(*drain, 2'000'000) : *drain);
    while (!outstanding.empty() && monoUs() < limit) {
      service(monoUs());
      std::this_thread::sleep_for(std::chrono::milliseconds(2));
    }
    service(monoUs());
  }
  progress.finish();
  try {
    cli.disconnect(std::chrono::milliseconds(500))->wait_for(std::chrono::seconds(2));
  } catch (const mqtt::exception&) {
  }
  const double el = std::max(1e-9, double(sent_end - t0) / 1e6);
  const auto& st = r.stats();
  std::cerr << "\noutpost-sim replay: " << c.input << (interrupted ? " (stopped by signal)" : "")
            << "\n"
            << "  capture records     " << records << " read, " << invalid << " invalid (skipped), "
            << st.bad_crc << " bad CRC (skipped)"
            << (st.truncated_tail ? ", truncated last record ignored" : "") << "\n"
            << "  published           " << withCommas(published) << " batches, "
            << withCommas(readings) << " readings in " << el
            << " s: " << withCommas(static_cast<uint64_t>(double(readings) / el)) << " readings/s, "
            << static_cast<uint64_t>(double(published) / el) << " batches/s\n";
  if (!c.no_wait) {
    std::cerr << "  acknowledged        " << accepted << " accepted, " << rejected << " rejected, "
              << outstanding.size() << " never acked, " << resent << " resent\n";
  }
  std::string summary;
  json::Writer js(summary);
  auto count = [&js](const json::Name& k, auto v) {
    js.key(k).uinteger(static_cast<uint64_t>(v));
  };
  js.beginObject().member("command", "replay");
  count("records", records);
  count("invalid", invalid);
  count("bad_crc", st.bad_crc);
  js.member("truncated_tail", static_cast<bool>(st.truncated_tail));
  count("batches_published", published);
  count("readings_published", readings);
  js.member("elapsed_s", el)
      .member("readings_per_s", double(readings) / el)
      .member("batches_per_s", double(published) / el);
  count("acked", accepted);
  count("rejected", rejected);
  count("unacked", outstanding.size());
  count("resent", resent);
  count("publish_failures", publish_failures);
  js.member("interrupted", static_cast<bool>(interrupted)).endObject();
  if (!c.summary_json.empty()) std::ofstream(c.summary_json) << summary << "\n";
  if (!error.empty()) {
    std::cerr << "outpost-sim replay: " << error << "\n";
    return kExitFailure;
  }
  return kExitOk;
}

}  // namespace

Command addReplayCommand(CLI::App& app) {
  auto c = std::make_shared<ReplayCli>();
  CLI::App* cmd = app.add_subcommand(
      "replay", "Publish a capture again (1x, Nx, max; once or looped; devices multiplied)");
  cmd->add_option("-r,--input", c->input, "Capture file")->required();
  addBrokerOptions(*cmd, c->broker);
  cmd->add_option("--speed", c->speed, "1 = recorded pace, N = N x faster, max = no pauses")
      ->capture_default_str();
  cmd->add_option("--loops", c->loops,
                  "Times to play the capture; 0 = until stopped. Loops after the first use a new "
                  "epoch per device, so the aggregator does not drop them as duplicates")
      ->capture_default_str()
      ->check(CLI::Range(0, 1000000));
  cmd->add_option("--multiply", c->multiply,
                  "Send every batch as N devices: DEVICE-0001 ... DEVICE-N (re-encoded)")
      ->capture_default_str()
      ->check(CLI::Range(1, 100000));
  cmd->add_flag("--shift-time", c->shift_time,
                "Move all timestamps so the first batch is now (keeps old captures inside the "
                "aggregator's accepted time range)");
  cmd->add_flag("--no-wait-acks", c->no_wait,
                "Fire and forget: do not subscribe to acks, no window, no resend");
  cmd->add_option("--max-inflight", c->max_inflight,
                  "Batches published and not yet acked, in total")
      ->capture_default_str()
      ->check(CLI::Range(1, 1000000));
  cmd->add_option("--ack-timeout", c->ack_timeout, "Resend a batch not acked within this")
      ->capture_default_str();
  cmd->add_option("--drain-timeout", c->drain, "At the end, wait this long for outstanding acks")
      ->capture_default_str();
  cmd->add_option("--client-id", c->client_id, "MQTT client id")->capture_default_str();
  cmd->add_option("--summary-json", c->summary_json, "Also write the final summary as JSON here");
  cmd->add_flag("-q,--quiet", c->quiet, "No progress output");
  return {cmd, [c] { return runReplay(*c); }};
}

}  // namespace outpost::sim
