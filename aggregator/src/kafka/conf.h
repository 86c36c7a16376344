#pragma once

// librdkafka configuration shared by the aggregator's Kafka clients (kafka.cc, the process
// role): the common properties of KafkaOptions, one property at a time with a clear error, and
// the log callback that routes librdkafka's logs to spdlog.

#include <string>

#include <librdkafka/rdkafka.h>

#include "outpost/aggregator/kafka.h"
#include "outpost/common/status.h"

namespace outpost::aggregator {

// Sets one property; the error names it and its value.
Status setConf(rd_kafka_conf_t* conf, const std::string& key, const std::string& value);
// A new configuration with bootstrap.servers, client.id, the log level and `options.extra`.
Result<rd_kafka_conf_t*> baseConf(const KafkaOptions& options);
// The last value of header `name` (empty when absent).
std::string headerValue(rd_kafka_headers_t* hdrs, const char* name);
void logCallback(const rd_kafka_t* rk, int level, const char* fac, const char* buf);

}  // namespace outpost::aggregator
