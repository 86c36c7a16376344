#pragma once

// A batch encoded and verified as the aggregator receives it: the bytes and the verified view
// into them (valid while the bytes live). Fails the test if verification fails.

#include <cstdint>
#include <span>
#include <vector>

#include <catch2/catch.hpp>

#include "outpost/common/codec.h"

namespace outpost::testing {

struct EncodedBatch {
  std::vector<uint8_t> bytes;
  const wire::Batch* batch = nullptr;
};

inline EncodedBatch encodeVerified(const codec::BatchContent& content) {
  EncodedBatch e;
  e.bytes = codec::encodeBatch(content);
  auto v = codec::verifyBatch(std::span<const uint8_t>(e.bytes.data(), e.bytes.size()),
                              codec::VerifyLimits{});
  if (!v) FAIL("verifyBatch: " << v.error().toString());
  e.batch = *v;
  return e;
}

}  // namespace outpost::testing
