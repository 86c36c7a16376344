#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace outpost::aggregator {

// Where acknowledgements for a device go (the transport the batch came in on).
// Thread-safety: sendAck may be called from any thread. It must not wait for the transport: it
// is called from the publisher's delivery thread, which must keep serving delivery reports for
// the producer queue to drain (MqttIngest hands acks to its own publishing thread).
class AckSink {
 public:
  virtual ~AckSink() = default;
  // Returns false if the ack could not be handed to the transport (the agent will resend).
  virtual bool sendAck(const std::string& device, std::vector<uint8_t> ack) = 0;
};

}  // namespace outpost::aggregator
