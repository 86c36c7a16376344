#pragma once

// Polls a condition every 5 ms until it holds or `limit` passes: the bounded wait of the tests
// that talk to a real broker or socket. Returns whether the condition held.

#include <chrono>
#include <thread>

namespace outpost::testing {

template <typename Pred>
bool waitFor(Pred pred, std::chrono::milliseconds limit = std::chrono::seconds(10)) {
  const auto deadline = std::chrono::steady_clock::now() + limit;
  while (!pred()) {
    if (std::chrono::steady_clock::now() > deadline) return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  return true;
}

}  // namespace outpost::testing
