#pragma once

#include <pthread.h>

#include <string>

namespace outpost {

// Names the calling thread (visible in top -H, /proc/PID/task/*/comm, gdb, perf), so CPU can be
// attributed per pipeline stage. Linux keeps at most 15 characters.
inline void setThreadName(const std::string& name) {
  pthread_setname_np(pthread_self(), name.substr(0, 15).c_str());
}

}  // namespace outpost
