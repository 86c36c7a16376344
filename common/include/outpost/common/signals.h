#pragma once

// Process signals for long-running programs: SIGTERM/SIGINT request a clean stop, SIGHUP a reload.
// installSignalHandlers() blocks those signals in the calling thread (call it in main before
// starting any thread, so every thread inherits the mask) and starts one thread that waits for them.

#include <atomic>
#include <chrono>

namespace outpost::signals {

void installSignalHandlers();
bool stopRequested();
// Returns true once per SIGHUP received.
bool takeReloadRequest();
// Sleeps up to `d`, returning early (true) when a stop is requested.
bool waitForStop(std::chrono::milliseconds d);
// Requests a stop from inside the program (e.g. a fatal condition, --duration elapsed).
void requestStop();
// Requests a stop because of a failure the process cannot recover from in place: the program
// stops cleanly and then exits with a non-zero status (failedStop()), so that its supervisor
// (systemd's Restart=on-failure) starts it again.
void requestFailureStop();
bool failedStop();

}  // namespace outpost::signals
