#pragma once

#include <expected>
#include <string>
#include <utility>

namespace outpost {

// Error kinds on the data path. Whether a failure is worth retrying is a property of the kind, so
// callers can decide between Retry and Drop without parsing messages (cf. librdkafka's
// rd_kafka_error_is_retriable).
enum class ErrorCode {
  kInvalidArgument,    // the input is wrong; retrying the same input fails again
  kCorrupt,            // stored or received bytes are damaged
  kNotFound,
  kIoError,            // disk or OS error; may clear (e.g. disk full)
  kResourceExhausted,  // a bound was hit (queue full, byte limit); retry later
  kUnavailable,        // a peer (broker, Kafka) is unreachable; retry later
  kInternal,           // a broken invariant
};

const char* errorCodeName(ErrorCode code);

class Error {
 public:
  Error(ErrorCode code, std::string message) : code_(code), message_(std::move(message)) {}

  ErrorCode code() const { return code_; }
  const std::string& message() const { return message_; }
  bool retriable() const {
    return code_ == ErrorCode::kIoError || code_ == ErrorCode::kResourceExhausted ||
           code_ == ErrorCode::kUnavailable;
  }
  std::string toString() const { return std::string(errorCodeName(code_)) + ": " + message_; }

 private:
  ErrorCode code_;
  std::string message_;
};

template <typename T>
using Result = std::expected<T, Error>;
using Status = std::expected<void, Error>;

inline std::unexpected<Error> fail(ErrorCode code, std::string message) {
  return std::unexpected<Error>(Error(code, std::move(message)));
}

}  // namespace outpost
