#pragma once

// The agent's ZeroMQ module (outpost-agent-zmq.so): the ZeroMQ uplink and the CURVE key tools,
// kept out of the executable so that an agent using MQTT never loads libzmq and its dependencies
// (libsodium, libpgm, libnorm, Kerberos: ~1.5 MB of resident memory). The executable loads it with
// dlopen only when uplink.transport = "zmq" or for `outpost-agent keygen` (zmq_module_loader.h).
//
// The boundary is this one C function and plain structs: no exception crosses it (errors come
// back as text in `err`), and the module keeps no state of its own that the executable also has.
// The objects it needs from the executable (the OutboxSender, the clock, the metric counters, the
// logger) are passed in and used through virtual calls or inline atomics, never through a second
// copy of the executable's code. The module is built with hidden symbols; only
// outpost_agent_zmq_module() is exported. Module and executable come from the same build:
// abi_version and the struct sizes are checked on load.

#include <cstddef>
#include <cstdint>
#include <memory>

namespace spdlog {
class logger;
}
namespace outpost {
class Clock;
namespace metrics {
class Counter;
}
namespace agent {
class Uplink;
class UplinkSender;
}  // namespace agent
}  // namespace outpost

extern "C" {

#define OUTPOST_ZMQ_MODULE_ABI 1u
#define OUTPOST_ZMQ_MODULE_SYMBOL "outpost_agent_zmq_module"

// The uplink.zmq.* settings the module needs (the executable reads and validates the config).
// Strings are NUL-terminated and only read during the call.
struct OutpostZmqSettings {
  const char* endpoint;
  const char* device_id;
  const char* server_public_key_file;  // uplink.zmq.server_public_key_file
  const char* key_file;                // uplink.zmq.key_file (mode 0600)
  uint64_t max_inflight;
  int64_t heartbeat_ms;
  int64_t heartbeat_liveness;
  int64_t reconnect_min_ms;
  int64_t reconnect_max_ms;
};

// The executable's objects the uplink uses; all must outlive the uplink.
struct OutpostZmqHost {
  outpost::agent::UplinkSender* sender;  // in-flight window, acks, drain (sender thread only)
  const outpost::Clock* clock;
  outpost::metrics::Counter* connects;
  outpost::metrics::Counter* heartbeat_timeouts;
  outpost::metrics::Counter* disconnects;
  outpost::metrics::Counter* handshake_failures;
  outpost::metrics::Counter* bad_acks;
  const std::shared_ptr<spdlog::logger>* logger;  // the executable's default logger
  bool metrics_collect;                           // metrics::collectionEnabled()
};

struct OutpostZmqModule {
  uint32_t abi_version;  // OUTPOST_ZMQ_MODULE_ABI
  uint32_t settings_size;
  uint32_t host_size;
  // Reads and checks the key files. 0 if good; otherwise 1 and a message naming the setting.
  int (*check)(const OutpostZmqSettings* settings, char* err, size_t err_size);
  // A new (not started) uplink, to be freed with destroy(); nullptr and a message on error.
  outpost::agent::Uplink* (*create)(const OutpostZmqSettings* settings, const OutpostZmqHost* host,
                                    char* err, size_t err_size);
  void (*destroy)(outpost::agent::Uplink* uplink);
  // outpost-agent keygen: writes DIR/NAME.key (0600) and DIR/NAME.pub; the public key (Z85, 41
  // bytes with the NUL) in public_key. 0 if good; otherwise 1 and a message.
  int (*keygen)(const char* dir, const char* name, char* public_key, size_t public_key_size,
                char* err, size_t err_size);
};

// The module's only exported symbol.
const OutpostZmqModule* outpost_agent_zmq_module(void);

}  // extern "C"
