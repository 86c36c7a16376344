#pragma once

// librdkafka configuration shared by the aggregator's Kafka clients (kafka.cc, the process
// role): the common properties of KafkaOptions, one property at a time with a clear error, and
// the log callback that routes librdkafka's logs to spdlog.

#include <string>
#include <utility>
#include <vector>

#include <librdkafka/rdkafka.h>

#include "outpost/aggregator/kafka.h"
#include "outpost/common/status.h"

namespace outpost::aggregator {

// Sets one property; the error names it and its value.
Status setConf(rd_kafka_conf_t* conf, const std::string& key, const std::string& value);
// A new configuration with bootstrap.servers, client.id, the log level and `options.extra`.
Result<rd_kafka_conf_t*> baseConf(const KafkaOptions& options);
using KafkaProps = std::vector<std::pair<std::string, std::string>>;
// baseConf(options), then `props` and the log callback. Throws std::runtime_error naming the
// property that librdkafka refused.
rd_kafka_conf_t* clientConf(const KafkaOptions& options, const KafkaProps& props);
// rd_kafka_new(type, conf); on failure destroys `conf` and throws std::runtime_error
// ("kafka <what>: <reason>"). On success the client owns `conf`.
rd_kafka_t* newClient(rd_kafka_type_t type, rd_kafka_conf_t* conf, const std::string& what);

// The message headers of a produce call; owned by the message once produced, else destroy them.
rd_kafka_headers_t* newHeaders(const Headers& headers);

// The last value of header `name` (empty when absent).
std::string headerValue(rd_kafka_headers_t* hdrs, const char* name);
void logCallback(const rd_kafka_t* rk, int level, const char* fac, const char* buf);

}  // namespace outpost::aggregator
