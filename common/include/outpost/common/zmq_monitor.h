#pragma once

// Reading ZeroMQ socket-monitor events (zmq_socket_monitor's PAIR socket), shared by the agent's
// ZeroMQ uplink and the aggregator's ZeroMQ ingest. Header-only: include it only in targets that
// link libzmq.

#include <cstdint>
#include <cstring>
#include <optional>
#include <string>
#include <zmq.hpp>

namespace outpost::zmqmon {

struct Event {
  uint16_t event = 0;   // ZMQ_EVENT_*
  uint32_t value = 0;   // event-specific (an errno, a protocol error code, a file descriptor)
  std::string address;  // the endpoint or peer address the event is about
};

// The next event waiting on `monitor`, or nothing when none is queued (never blocks). Frames too
// short to hold an event are skipped.
inline std::optional<Event> next(zmq::socket_t& monitor) {
  for (;;) {
    zmq::message_t ev;
    if (!monitor.recv(ev, zmq::recv_flags::dontwait)) return std::nullopt;
    zmq::message_t addr;
    if (ev.more()) (void)monitor.recv(addr, zmq::recv_flags::none);
    if (ev.size() < 6) continue;
    Event out;
    std::memcpy(&out.event, ev.data(), 2);
    std::memcpy(&out.value, static_cast<const char*>(ev.data()) + 2, 4);
    out.address = addr.to_string();
    return out;
  }
}

}  // namespace outpost::zmqmon
