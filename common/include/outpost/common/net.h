#pragma once

#include <string>

namespace outpost::net {

// Turns Nagle's algorithm off (TCP_NODELAY) on this process's TCP sockets connected to the host and
// port of `uri` ("tcp://host:port"). Returns how many sockets it changed.
//
// Why: Paho gives no access to its socket and never sets TCP_NODELAY. A small MQTT message written
// right after another (an ack after a PUBACK) then waits for the peer's delayed ACK: a flat 40 ms
// on Linux, which dominated the batch round trip (docs/bench-notes/aggregator.md). Linux-only
// (/proc/self/fd); call it after each successful connect.
int setTcpNoDelayToPeer(const std::string& uri);

}  // namespace outpost::net
