#pragma once

// The ZeroMQ uplink's framing, shared by the agent (DEALER) and the aggregator (ROUTER).
//
// Every message is multipart: a kind frame, then the kind's body.
//   agent -> aggregator:  "batch" <Batch FlatBuffer>     |  "ping"
//   aggregator -> agent:  "ack"   <Ack FlatBuffer>       |  "pong"
// (On the ROUTER side the routing-id frame comes first.) Connections are always CURVE-encrypted,
// and the aggregator authenticates every agent key through its ZAP handler, which sets the
// connection's User-Id to the device id of the allow-list: that, not the batch, is the identity.
// Heartbeats: the agent pings every heartbeat interval; the aggregator answers each ping. An agent
// that hears nothing for `liveness` intervals drops the socket and reconnects with backoff (the
// "Paranoid Pirate" pattern of the ZeroMQ guide); an aggregator forgets a peer it has not heard
// from for as long.

#include <string_view>

namespace outpost::zmqproto {

inline constexpr std::string_view kBatch = "batch";
inline constexpr std::string_view kAck = "ack";
inline constexpr std::string_view kPing = "ping";
inline constexpr std::string_view kPong = "pong";

// The ZAP domain of the aggregator's ROUTER socket, and the metadata property (set by our ZAP
// handler) that carries the Z85 public key the connection authenticated with.
inline constexpr const char* kZapDomain = "outpost";
inline constexpr const char* kKeyProperty = "X-Outpost-Key";

}  // namespace outpost::zmqproto
