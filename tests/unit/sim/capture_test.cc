#include "outpost/sim/capture.h"

#include <catch2/catch.hpp>
#include <filesystem>
#include <fstream>
#include <iterator>

#include "support/temp_dir.h"

namespace outpost::sim {
namespace {

std::vector<CaptureRecord> sample(int n) {
  std::vector<CaptureRecord> v;
  for (int i = 0; i < n; ++i) {
    CaptureRecord r;
    r.recv_us = 1714521600000000LL + i * 1000;
    r.topic = "outpost/v1/dev-" + std::to_string(i % 3) + "/batch";
    r.payload.resize(static_cast<size_t>(10 + i * 7));
    for (size_t k = 0; k < r.payload.size(); ++k) r.payload[k] = static_cast<uint8_t>(k * 31 + i);
    v.push_back(std::move(r));
  }
  return v;
}

void write(const std::string& path, const std::vector<CaptureRecord>& recs) {
  auto w = CaptureWriter::open(path, R"({"tool":"test"})");
  REQUIRE(w);
  for (const auto& r : recs) REQUIRE((*w)->append(r));
  REQUIRE((*w)->close());
}

std::vector<uint8_t> slurp(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), {}};
}
void spit(const std::string& path, const std::vector<uint8_t>& b) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(reinterpret_cast<const char*>(b.data()), static_cast<std::streamsize>(b.size()));
}

std::vector<CaptureRecord> readAll(CaptureReader& r) {
  std::vector<CaptureRecord> out;
  for (;;) {
    auto rec = r.next();
    REQUIRE(rec);
    if (!*rec) break;
    out.push_back(std::move(**rec));
  }
  return out;
}

bool equal(const CaptureRecord& a, const CaptureRecord& b) {
  return a.recv_us == b.recv_us && a.topic == b.topic && a.payload == b.payload;
}

}  // namespace

TEST_CASE("capture round trip", "[sim][capture]") {
  testing::TempDir tmp("outpost-cap");
  const auto recs = sample(50);
  write(tmp.file("a.cap"), recs);
  auto r = CaptureReader::open(tmp.file("a.cap"));
  REQUIRE(r);
  CHECK((*r)->version() == kCaptureVersion);
  CHECK((*r)->meta() == R"({"tool":"test"})");
  auto got = readAll(**r);
  REQUIRE(got.size() == recs.size());
  for (size_t i = 0; i < got.size(); ++i) CHECK(equal(got[i], recs[i]));
  CHECK_FALSE((*r)->stats().truncated_tail);
  SECTION("rewind reads it again") {
    REQUIRE((*r)->rewind());
    CHECK(readAll(**r).size() == recs.size());
  }
}

TEST_CASE("a truncated last record is tolerated", "[sim][capture]") {
  testing::TempDir tmp("outpost-cap");
  const auto recs = sample(5);
  write(tmp.file("a.cap"), recs);
  const auto full = slurp(tmp.file("a.cap"));
  const size_t last = 4 + 14 + recs[4].topic.size() + recs[4].payload.size() + 4;
  // Every cut inside the last record (including inside its length field).
  for (size_t cut = 1; cut < last; cut += 3) {
    std::vector<uint8_t> b(full.begin(), full.end() - static_cast<long>(cut));
    spit(tmp.file("t.cap"), b);
    auto r = CaptureReader::open(tmp.file("t.cap"));
    REQUIRE(r);
    auto got = readAll(**r);
    REQUIRE(got.size() == 4);
    CHECK(equal(got[3], recs[3]));
    CHECK((*r)->stats().truncated_tail);
  }
}

TEST_CASE("corrupt captures are detected, never misread", "[sim][capture]") {
  testing::TempDir tmp("outpost-cap");
  const auto recs = sample(3);
  write(tmp.file("a.cap"), recs);
  auto full = slurp(tmp.file("a.cap"));
  const size_t first = 16 + std::string(R"({"tool":"test"})").size();

  SECTION("a flipped payload byte: that record is skipped and counted") {
    auto b = full;
    b[first + 4 + 14 + recs[0].topic.size() + 2] ^= 0x40;
    spit(tmp.file("c.cap"), b);
    auto r = CaptureReader::open(tmp.file("c.cap"));
    REQUIRE(r);
    auto got = readAll(**r);
    REQUIRE(got.size() == 2);
    CHECK(equal(got[0], recs[1]));
    CHECK((*r)->stats().bad_crc == 1);
  }
  SECTION("an impossible record length stops reading with kCorrupt") {
    auto b = full;
    b[first + 3] = 0x7f;  // length ~2 GB
    spit(tmp.file("c.cap"), b);
    auto r = CaptureReader::open(tmp.file("c.cap"));
    REQUIRE(r);
    auto rec = (*r)->next();
    REQUIRE_FALSE(rec);
    CHECK(rec.error().code() == ErrorCode::kCorrupt);
  }
  SECTION("inner lengths that do not add up stop reading with kCorrupt") {
    auto b = full;
    b[first + 4 + 8] = 0xff;  // topic length low byte
    b[first + 4 + 9] = 0x00;
    spit(tmp.file("c.cap"), b);
    auto r = CaptureReader::open(tmp.file("c.cap"));
    REQUIRE(r);
    auto rec = (*r)->next();
    REQUIRE_FALSE(rec);
    CHECK(rec.error().code() == ErrorCode::kCorrupt);
  }
  SECTION("bad magic") {
    auto b = full;
    b[0] = 'X';
    spit(tmp.file("c.cap"), b);
    auto r = CaptureReader::open(tmp.file("c.cap"));
    REQUIRE_FALSE(r);
    CHECK(r.error().message().find("not an Outpost capture") != std::string::npos);
  }
  SECTION("a newer version is refused") {
    auto b = full;
    b[8] = 2;
    spit(tmp.file("c.cap"), b);
    auto r = CaptureReader::open(tmp.file("c.cap"));
    REQUIRE_FALSE(r);
    CHECK(r.error().message().find("version 2") != std::string::npos);
  }
  SECTION("header shorter than its metadata length") {
    std::vector<uint8_t> b(full.begin(), full.begin() + 20);
    spit(tmp.file("c.cap"), b);
    CHECK_FALSE(CaptureReader::open(tmp.file("c.cap")));
  }
  SECTION("empty and missing files") {
    spit(tmp.file("e.cap"), {});
    CHECK_FALSE(CaptureReader::open(tmp.file("e.cap")));
    CHECK_FALSE(CaptureReader::open(tmp.file("missing.cap")));
  }
}

TEST_CASE("crc32 matches the standard check value", "[sim][capture]") {
  const std::string s = "123456789";
  CHECK(crc32(reinterpret_cast<const uint8_t*>(s.data()), s.size()) == 0xcbf43926u);
}

}  // namespace outpost::sim
