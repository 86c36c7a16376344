#pragma once

// Finds and loads one of the agent's modules (the ZeroMQ uplink, zmq_module.h; the MQTT TLS
// client, mqtt_tls_module.h): code the executable maps only when the configuration uses it.
//
// Where: $OUTPOST_AGENT_MODULE_DIR if set, else beside the executable (build tree, tarball), else
// <executable dir>/<bindir-to-libdir>/outpost (installed: /usr/bin -> /usr/lib/outpost).
// Modules are never unloaded. Thread-safety: any thread (dlopen is).

#include <string>

namespace outpost::agent {

struct LoadedModule {
  void* entry = nullptr;  // the address of `symbol` in the module; nullptr on error
  std::string path;       // the file loaded
  std::string error;      // why not: "<path>: <dlerror>", or "not found (tried <paths>)"
};

// dlopens `file` (RTLD_NOW | RTLD_LOCAL) from the first directory above that has it and looks up
// `symbol`.
LoadedModule loadAgentModule(const std::string& file, const char* symbol);

}  // namespace outpost::agent
