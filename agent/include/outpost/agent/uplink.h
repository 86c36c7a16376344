#pragma once

#include <cstddef>
#include <cstdint>

#include "outpost/agent/outbox_sender.h"

namespace outpost::agent {

// Sends batches from the outbox to the aggregator and deletes them on its acknowledgement.
// Implementations run their own thread(s); these methods may be called from any thread.
class Uplink {
 public:
  virtual ~Uplink() = default;
  virtual void start() = 0;
  // Wakes the sender: a new batch was committed to the outbox.
  virtual void notify() = 0;
  // Stops sending; un-acknowledged batches stay in the outbox for the next run.
  virtual void stop() = 0;
  virtual bool connected() const = 0;
  // New backlog drain order/rate (SIGHUP reload), applied by the sender thread. Uplinks that do
  // not drain through OutboxSender keep their settings (default).
  virtual void setDrain(const DrainSettings& /*drain*/) {}
  // Batches sent and not yet acknowledged.
  virtual size_t inFlight() const = 0;
};

}  // namespace outpost::agent
