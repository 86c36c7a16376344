#include "outpost/agent/outbox_salvage.h"

#include <sqlite3.h>

#include <algorithm>
#include <bit>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <limits>
#include <map>
#include <optional>
#include <span>
#include <vector>

#include "outbox_sql.h"
#include "outpost/common/codec.h"
#include "outpost/common/sqlite.h"

namespace outpost::agent {
namespace {

using sqlite::Stmt;
using SteadyClock = std::chrono::steady_clock;

// sqlite3_progress_handler: interrupts any statement once the deadline has passed
// (SQLITE_INTERRUPT).
struct Budget {
  SteadyClock::time_point deadline;
  bool hit = false;
};
int onProgress(void* p) {
  auto* b = static_cast<Budget*>(p);
  if (SteadyClock::now() >= b->deadline) b->hit = true;
  return b->hit ? 1 : 0;
}

// One waiting batch as far as it could be read (-1: unknown).
struct Row {
  int64_t readings = -1;
  int64_t dropped = -1;
};

void note(std::string& detail, const char* what, sqlite3* db, int rc) {
  if (!detail.empty()) detail += "; ";
  detail += what;
  detail += ": ";
  detail += sqlite3_errstr(rc);
  const char* msg = sqlite3_errmsg(db);
  if (msg != nullptr && std::string(msg) != sqlite3_errstr(rc)) {
    detail += " (";
    detail += msg;
    detail += ")";
  }
}

// A stored readings count that fits the payload's size: every reading or window takes more than
// one byte of the encoded batch, so a count above the size is damaged bytes, not a count.
bool plausible(int64_t readings, int64_t bytes) {
  return readings >= 0 && bytes > 0 && readings <= bytes;
}

// The SQLite header (bytes 16-17 page size, 24-27 change counter, 28-31 page count, 92-95 the
// change counter the page count is valid for) against the file's size.
bool fileTruncated(const std::string& path) {
  std::error_code ec;
  const auto size = std::filesystem::file_size(path, ec);
  if (ec) return true;
  std::FILE* f = std::fopen(path.c_str(), "rb");
  if (f == nullptr) return true;
  unsigned char h[100] = {};
  const bool read = std::fread(h, 1, sizeof h, f) == sizeof h;
  std::fclose(f);
  if (!read) return true;
  auto be32 = [&](int at) {
    return (uint32_t{h[at]} << 24) | (uint32_t{h[at + 1]} << 16) | (uint32_t{h[at + 2]} << 8) |
           uint32_t{h[at + 3]};
  };
  uint64_t page = (uint64_t{h[16]} << 8) | h[17];
  if (page == 1) page = 65536;
  if (page < 512 || (page & (page - 1)) != 0) return true;
  if (size % page != 0) return true;
  if (be32(24) == be32(92) && be32(28) != 0) return size < be32(28) * page;
  return false;
}


// ---- The write-ahead log ----------------------------------------------------------------------
// Format: https://www.sqlite.org/fileformat2.html#walformat (4.1-4.3) and SQLite's src/wal.c
// (walChecksumBytes, walDecodeFrame, walIndexRecover), checked against SQLite 3.40.1 here. A
// 32-byte header (big-endian: magic 0x377f0682/3, version 3007000, page size, checkpoint seq,
// salt-1, salt-2, checksum-1, checksum-2 over the first 24 bytes), then frames: a 24-byte header
// (page number, database size after a commit or 0, salt-1, salt-2, checksum-1, checksum-2) and the
// page. A frame's checksum runs over its first 8 header bytes and its page, seeded with the
// previous frame's (the header's for frame 1). Recovery (walIndexRecover) takes frames in order
// while their salts equal the header's, the page number is not 0 and the checksum matches, and
// keeps them up to the last commit frame among them; a header with a bad magic, page size or
// checksum makes it ignore the whole log.

constexpr uint32_t kWalMagic = 0x377f0682;  // | 1: checksums over big-endian 32-bit words
constexpr uint32_t kWalVersion = 3007000;
constexpr size_t kWalHeaderBytes = 32;
constexpr size_t kFrameHeaderBytes = 24;
constexpr uint64_t kMaxWalBytes = 64ull << 20;  // a normal log is ~4 MB (1000-page checkpoints)
constexpr uint32_t kDefaultPage = 4096;         // the outbox's page size

uint32_t be32(const uint8_t* p) {
  return (uint32_t{p[0]} << 24) | (uint32_t{p[1]} << 16) | (uint32_t{p[2]} << 8) | uint32_t{p[3]};
}
uint32_t le32(const uint8_t* p) {
  return (uint32_t{p[3]} << 24) | (uint32_t{p[2]} << 16) | (uint32_t{p[1]} << 8) | uint32_t{p[0]};
}
void putBe32(uint8_t* p, uint32_t v) {
  p[0] = static_cast<uint8_t>(v >> 24);
  p[1] = static_cast<uint8_t>(v >> 16);
  p[2] = static_cast<uint8_t>(v >> 8);
  p[3] = static_cast<uint8_t>(v);
}
uint64_t raw64(const uint8_t* p) {  // salts are compared as raw bytes (memcmp in walDecodeFrame)
  uint64_t v = 0;
  std::memcpy(&v, p, sizeof v);
  return v;
}
bool validPageSize(uint32_t n) { return n >= 512 && n <= 65536 && (n & (n - 1)) == 0; }

struct Sum {
  uint32_t s1 = 0, s2 = 0;
  bool operator==(const Sum&) const = default;
};

// walChecksumBytes: over pairs of 32-bit words (n a multiple of 8), s1 += x0 + s2; s2 += x1 + s1.
Sum walSum(bool big_endian, const uint8_t* p, size_t n, Sum s) {
  for (size_t i = 0; i + 8 <= n; i += 8) {
    const uint32_t x0 = big_endian ? be32(p + i) : le32(p + i);
    const uint32_t x1 = big_endian ? be32(p + i + 4) : le32(p + i + 4);
    s.s1 += x0 + s.s2;
    s.s2 += x1 + s.s1;
  }
  return s;
}

// One step of the sum maps (s1, s2) to M (s1, s2) + (x0, x0 + x1) with M = [[1, 1], [1, 2]] (mod
// 2^32), so a frame's sum from any seed is M^k seed + its sum from (0, 0), k = its words / 2: one
// pass over each frame's bytes serves every seed tried below.
struct Mat {
  uint32_t a, b, c, d;
};
Mat mul(const Mat& x, const Mat& y) {
  return {x.a * y.a + x.b * y.c, x.a * y.b + x.b * y.d, x.c * y.a + x.d * y.c,
          x.c * y.b + x.d * y.d};
}
Mat stepPower(uint64_t k) {
  Mat r{1, 0, 0, 1}, m{1, 1, 1, 2};
  for (; k != 0; k >>= 1) {
    if (k & 1) r = mul(r, m);
    m = mul(m, m);
  }
  return r;
}
Sum reseed(const Mat& m, Sum seed, Sum from_zero) {
  return {m.a * seed.s1 + m.b * seed.s2 + from_zero.s1,
          m.c * seed.s1 + m.d * seed.s2 + from_zero.s2};
}

struct Frame {
  uint32_t pgno = 0;
  uint32_t commit = 0;  // database size in pages after a commit; 0 in other frames
  uint64_t salts = 0;
  Sum stored;
  Sum zero[2];  // the sum over header bytes 0..7 and the page from (0, 0): little-, big-endian
};

// How a frame of the current generation reads (the "gen" of a log: the frames written since its
// header's salts were set, from frame 1 on, in order).
enum class Cls : uint8_t {
  kIntact,   // its content (page number, commit size, page) proven by the checksum chain
  kDamaged,  // carries the generation's salts but its content fails the chain
  kOther,    // neither: a frame of an older generation, or one whose header is unreadable
};

struct WalScan {
  bool present = false;
  bool capped = false;
  uint8_t header[kWalHeaderBytes] = {};
  bool header_valid = false;
  uint32_t page_size = kDefaultPage;
  bool big_endian = false;
  bool has_gen = false;
  uint64_t salts = 0;  // the generation's
  Sum seed;            // frame 1's checksum seed
  Mat step{1, 0, 0, 1};
  std::vector<Frame> frames;
  std::vector<Cls> cls;
  uint64_t recovered = 0;  // frames walIndexRecover keeps
  uint64_t first_bad = 0;  // 1-based; 0: none
  uint64_t shm_committed = 0;
  bool shm_usable = false;     // the -shm's header is intact and names the generation's salts
  bool shm_this_boot = false;  // ... and the file was modified since this boot
  std::string error;
};

// The -shm wal-index header (fileformat2.html, 4.5.1 "The WAL-Index Header"; wal.c WalIndexHdr):
// two 48-byte copies in native byte order: iVersion, unused, iChange, isInit, bigEndCksum,
// szPage, mxFrame, nPage, aFrameCksum[2], aSalt[2], aCksum[2] (walIndexTryHdr: both copies equal,
// isInit set, aCksum the native-order checksum of the first 40 bytes). mxFrame is the last frame
// of the last commit the writer finished. Empty when the file is missing or not usable.
std::optional<uint64_t> shmCommitted(const std::string& shm, uint64_t wal_salts) {
  std::FILE* f = std::fopen(shm.c_str(), "rb");
  if (f == nullptr) return std::nullopt;
  uint8_t h[96] = {};
  const bool read = std::fread(h, 1, sizeof h, f) == sizeof h;
  std::fclose(f);
  if (!read || std::memcmp(h, h + 48, 48) != 0) return std::nullopt;
  uint32_t version = 0, mx_frame = 0, cksum[2] = {};
  std::memcpy(&version, h, 4);
  std::memcpy(&mx_frame, h + 16, 4);
  std::memcpy(cksum, h + 40, 8);
  if (version != kWalVersion || h[12] != 1) return std::nullopt;
  const bool native_big = std::endian::native == std::endian::big;
  const Sum s = walSum(native_big, h, 40, {});
  if (s.s1 != cksum[0] || s.s2 != cksum[1]) return std::nullopt;
  if (raw64(h + 32) != wal_salts) return std::nullopt;
  return mx_frame;
}

// Whether `path` was modified since the machine booted (Linux: /proc/stat's btime). A -shm
// written since this boot is the last writer's own state (a killed process's shared memory is in
// the page cache the file reads back); one from before a reboot or power cut may be stale.
// False when either time cannot be read.
bool modifiedThisBoot(const std::string& path) {
  std::error_code ec;
  const auto mtime = std::filesystem::last_write_time(path, ec);
  if (ec) return false;
  std::ifstream stat("/proc/stat");
  std::string key;
  long long btime = -1;
  while (stat >> key) {
    if (key == "btime") {
      stat >> btime;
      break;
    }
    stat.ignore(std::numeric_limits<std::streamsize>::max(), '\n');
  }
  if (btime <= 0) return false;
  const auto sys = std::chrono::file_clock::to_sys(mtime);
  return std::chrono::duration_cast<std::chrono::seconds>(sys.time_since_epoch()).count() >=
         btime;
}

WalScan scanWal(const std::string& db_path) {
  WalScan w;
  const std::string path = db_path + "-wal";
  std::FILE* f = std::fopen(path.c_str(), "rb");
  if (f == nullptr) return w;
  w.present = true;
  if (std::fread(w.header, 1, kWalHeaderBytes, f) != kWalHeaderBytes) {
    if (std::ferror(f) != 0) w.error = "read error in " + path;
    std::fclose(f);
    return w;  // shorter than a header: SQLite reads it as an empty log
  }
  const uint8_t* h = w.header;
  const uint32_t magic = be32(h);
  const bool magic_ok = (magic & 0xFFFFFFFEu) == kWalMagic;
  const uint32_t page = be32(h + 8);
  w.page_size = validPageSize(page) ? page : kDefaultPage;
  const size_t frame_bytes = kFrameHeaderBytes + w.page_size;
  std::vector<uint8_t> buf(frame_bytes);
  uint64_t offset = kWalHeaderBytes;
  while (std::fread(buf.data(), 1, frame_bytes, f) == frame_bytes) {
    offset += frame_bytes;
    Frame fr;
    fr.pgno = be32(buf.data());
    fr.commit = be32(buf.data() + 4);
    fr.salts = raw64(buf.data() + 8);
    fr.stored = {be32(buf.data() + 16), be32(buf.data() + 20)};
    for (int order = 0; order < 2; ++order) {
      const Sum head = walSum(order == 1, buf.data(), 8, {});
      fr.zero[order] = walSum(order == 1, buf.data() + kFrameHeaderBytes, w.page_size, head);
    }
    w.frames.push_back(fr);
    if (offset + frame_bytes > kMaxWalBytes) {
      w.capped = true;
      break;
    }
  }
  const bool read_error = std::ferror(f) != 0;
  std::fclose(f);
  if (read_error) {
    // An I/O error is not damage: SQLite meets it too and the open fails (retried).
    w.error = "read error in " + path;
    w.frames.clear();
    return w;
  }
  w.step = stepPower((8 + w.page_size) / 8);
  const auto& fr = w.frames;
  const size_t n = fr.size();
  // Frame i+1 chains from frame i's stored checksum (whatever the header says).
  auto chains = [&](size_t i, int order) {
    return fr[i + 1].salts == fr[i].salts &&
           reseed(w.step, fr[i].stored, fr[i + 1].zero[order]) == fr[i + 1].stored;
  };
  if (magic_ok) {
    w.big_endian = (magic & 1) != 0;
  } else {
    size_t votes[2] = {0, 0};
    for (size_t i = 0; i + 1 < n; ++i) {
      for (int order = 0; order < 2; ++order) votes[order] += chains(i, order) ? 1 : 0;
    }
    w.big_endian = votes[1] > votes[0];  // SQLite writes little-endian sums on ARM and x86
  }
  const int order = w.big_endian ? 1 : 0;
  const Sum head_sum = walSum(w.big_endian, h, 24, {});
  const Sum head_stored{be32(h + 24), be32(h + 28)};
  w.header_valid = magic_ok && validPageSize(page) && head_sum == head_stored &&
                   be32(h + 4) == kWalVersion;
  // The generation's salts: the header's when it is valid (or when the first frames carry them),
  // else those of the first frame that the next one chains from.
  const uint64_t head_salts = raw64(h + 16);
  if (w.header_valid || (n > 0 && fr[0].salts == head_salts) ||
      (n > 1 && fr[1].salts == head_salts)) {
    w.has_gen = true;
    w.salts = head_salts;
  } else {
    for (size_t i = 0; i + 1 < n && !w.has_gen; ++i) {
      if (chains(i, order)) {
        w.has_gen = true;
        w.salts = fr[i].salts;
      }
    }
  }
  // Frame 1's seed: the header's stored sum, unless only that field was damaged.
  w.seed = head_stored;
  if (head_sum != head_stored &&
      (n == 0 || reseed(w.step, head_sum, fr[0].zero[order]) == fr[0].stored)) {
    w.seed = head_sum;
  }

  // What walIndexRecover keeps.
  if (w.header_valid) {
    Sum run = head_sum;
    for (size_t i = 0; i < n; ++i) {
      const Sum c = reseed(w.step, run, fr[i].zero[order]);
      if (fr[i].salts != head_salts || fr[i].pgno == 0 || c != fr[i].stored) {
        w.first_bad = i + 1;
        break;
      }
      run = c;
      if (fr[i].commit != 0) w.recovered = i + 1;
    }
  }

  // Each frame against the generation's chain. A frame is intact when its sum matches from the
  // running value (its salts may be damaged: the content is still proven), or, with the
  // generation's salts, from the previous frame's stored sum (that frame was damaged), or when
  // the next frame chains from the sum computed for it (only its checksum field was damaged).
  w.cls.assign(n, Cls::kOther);
  Sum run = w.seed, prev = w.seed;
  for (size_t i = 0; i < n && w.has_gen; ++i) {
    const bool same = fr[i].salts == w.salts;
    const Sum c = reseed(w.step, run, fr[i].zero[order]);
    if (fr[i].pgno == 0) {
      w.cls[i] = same ? Cls::kDamaged : Cls::kOther;
      run = fr[i].stored;
    } else if (c == fr[i].stored) {
      w.cls[i] = Cls::kIntact;
      run = c;
    } else if (same && i > 0 && reseed(w.step, prev, fr[i].zero[order]) == fr[i].stored) {
      w.cls[i] = Cls::kIntact;
      run = fr[i].stored;
    } else if (i + 1 < n && (same || fr[i + 1].salts == w.salts) &&
               reseed(w.step, c, fr[i + 1].zero[order]) == fr[i + 1].stored) {
      w.cls[i] = Cls::kIntact;
      run = c;
    } else {
      w.cls[i] = same ? Cls::kDamaged : Cls::kOther;
      run = fr[i].stored;
    }
    prev = fr[i].stored;
  }
  if (w.has_gen) {
    if (const auto shm = shmCommitted(db_path + "-shm", w.salts)) {
      w.shm_usable = true;
      w.shm_committed = *shm;
      w.shm_this_boot = modifiedThisBoot(db_path + "-shm");
    }
  }
  return w;
}

// The last commit frame of the generation whose content is proven (1-based; 0: none).
uint64_t lastIntactCommit(const WalScan& w) {
  for (size_t i = w.frames.size(); i > 0; --i) {
    if (w.cls[i - 1] == Cls::kIntact && w.frames[i - 1].commit != 0) return i;
  }
  return 0;
}

}  // namespace

const char* salvageFoundName(SalvageResult::Found f) {
  switch (f) {
    case SalvageResult::Found::kNothing:
      return "nothing";
    case SalvageResult::Found::kPartial:
      return "partial";
    case SalvageResult::Found::kComplete:
      return "complete";
  }
  return "?";
}

SalvageResult salvageStore(const std::string& path, const SalvageLimits& limits) {
  SalvageResult r;
  std::error_code ec;
  if (!std::filesystem::exists(path, ec)) {
    r.detail = "no such file";
    return r;
  }
  sqlite3* db = nullptr;
  // READONLY: the moved copy is evidence for the operator and is never written (SQLite may create
  // an empty -wal/-shm beside it to read it).
  int rc = sqlite3_open_v2(path.c_str(), &db, SQLITE_OPEN_READONLY | SQLITE_OPEN_NOMUTEX, nullptr);
  if (rc != SQLITE_OK) {
    note(r.detail, "open", db, rc);
    sqlite3_close_v2(db);
    return r;
  }
  // writable_schema: a file shorter than its header says (truncated) is then read up to its end
  // instead of refused as a whole; the connection is read-only, so nothing is written either way.
  sqlite3_exec(db, "PRAGMA cell_size_check = ON; PRAGMA writable_schema = ON", nullptr, nullptr,
               nullptr);
  Budget budget{SteadyClock::now() + std::chrono::milliseconds(limits.max_ms)};
  sqlite3_progress_handler(db, 1000, onProgress, &budget);

  {
    Stmt s(db, sql::kGetMeta);
    if (s.ok()) {
      s.bind(1, sql::kMetaEpoch);
      if (s.step() == SQLITE_ROW) r.epoch = s.col(0);
      s.reset();
      s.bind(1, sql::kMetaPendingDropped);
      rc = s.step();
      if (rc == SQLITE_ROW || rc == SQLITE_DONE) {
        r.pending = rc == SQLITE_ROW ? static_cast<uint64_t>(std::max<int64_t>(0, s.col(0))) : 0;
        r.pending_known = true;
      } else {
        note(r.detail, "meta", db, rc);
      }
    } else {
      note(r.detail, "meta", db, sqlite3_errcode(db));
    }
  }
  int64_t last_seq = -1;
  {
    Stmt s(db, sql::kSalvageLastSeq);
    if (s.ok() && s.step() == SQLITE_ROW) last_seq = s.col(0);
  }

  std::map<int64_t, Row> rows;
  // 1. The covering index: small, separate pages; it may survive damage to the table's pages.
  {
    Stmt s(db, sql::kSalvageIndex);
    if (!s.ok()) {
      note(r.detail, "index", db, sqlite3_errcode(db));
    } else {
      uint64_t n = 0;
      while ((rc = s.step()) == SQLITE_ROW && ++n <= limits.max_rows) {
        Row& found = rows[s.col(0)];  // the seq is known even where its readings are not
        if (plausible(s.col(1), s.col(2))) found.readings = s.col(1);
      }
      if (rc == SQLITE_DONE) {
        r.index_complete = true;
      } else if (rc == SQLITE_ROW) {
        r.capped = true;
      } else {
        note(r.detail, "index", db, rc);
      }
    }
  }
  // 2. The table, one row at a time from a seq on: each found seq's readings and `dropped`. A
  // damaged page fails the statements that touch it; the walk then steps over it (1, 2, 4, ...
  // seqs on, up to the last seq assigned, at most 64 times).
  if (!budget.hit) {
    Stmt next(db, sql::kSalvageNextSeq);
    Stmt row(db, sql::kSalvageRow);
    if (!next.ok() || !row.ok()) {
      note(r.detail, "table", db, sqlite3_errcode(db));
    } else {
      bool errors = false;
      int64_t from = 1, skip = 1;
      int resumes = 0;
      uint64_t n = 0;
      for (;;) {
        if (budget.hit || ++n > limits.max_rows) {
          r.capped = true;
          break;
        }
        next.reset();
        next.bind(1, from);
        rc = next.step();
        if (rc == SQLITE_DONE) {
          r.table_complete = !errors;
          break;
        }
        if (rc != SQLITE_ROW) {
          if (!errors) note(r.detail, "table", db, rc);
          errors = true;
          if (budget.hit || ++resumes > 64 || (last_seq >= 0 && from > last_seq)) break;
          from += skip;
          skip = std::min<int64_t>(skip * 2, int64_t{1} << 20);
          continue;
        }
        const int64_t seq = next.col(0);
        skip = 1;
        from = seq + 1;
        Row& found = rows[seq];
        row.reset();
        row.bind(1, seq);
        const int rrc = row.step();
        if (rrc == SQLITE_ROW) {
          // The table's value where it is plausible for the payload's size (damaged bytes that
          // SQLite cannot notice may sit in either copy).
          if (plausible(row.col(0), sqlite3_column_bytes(row.get(), 2))) {
            found.readings = row.col(0);
          }
          found.dropped = std::max<int64_t>(0, row.col(1));
          if (r.epoch == 0) {
            // The meta row is gone: every stored payload carries the epoch too (verified first:
            // the bytes come from a damaged file).
            const auto* p = static_cast<const uint8_t*>(sqlite3_column_blob(row.get(), 2));
            const int len = sqlite3_column_bytes(row.get(), 2);
            if (p != nullptr && len > 0) {
              auto b = codec::verifyBatch(std::span<const uint8_t>(p, static_cast<size_t>(len)),
                                          codec::VerifyLimits{});
              if (b) r.epoch = static_cast<int64_t>((*b)->epoch());
            }
          }
        } else {
          if (!errors) note(r.detail, "table row", db, rrc);
          errors = true;
        }
      }
    }
  }
  if (budget.hit) {
    r.capped = true;
    if (!r.detail.empty()) r.detail += "; ";
    r.detail += "stopped after " + std::to_string(limits.max_ms) + " ms";
  }
  sqlite3_progress_handler(db, 0, nullptr, nullptr);
  sqlite3_close_v2(db);

  // A file shorter than its header says (or not a whole number of pages) was truncated: a page
  // cut in two can read as an empty leaf, so a scan that "reached its end" proves nothing alone.
  // Then only two scans that agree make the salvage complete.
  const bool truncated = fileTruncated(path);
  bool unknown_readings = false;
  int ranges = 0;
  int64_t run_first = -1, run_last = -1;
  auto closeRun = [&] {
    if (run_first < 0) return;
    if (++ranges > 32) {
      if (ranges == 33) r.seqs += ",...";
      return;
    }
    if (!r.seqs.empty()) r.seqs += ",";
    r.seqs += std::to_string(run_first);
    if (run_last != run_first) r.seqs += "-" + std::to_string(run_last);
  };
  for (const auto& [seq, row] : rows) {
    if (seq != run_last + 1 || run_first < 0) {
      closeRun();
      run_first = seq;
    }
    run_last = seq;
    ++r.batches;
    if (row.readings >= 0) {
      r.readings += static_cast<uint64_t>(row.readings);
    } else {
      unknown_readings = true;
    }
    if (row.dropped >= 0) {
      r.carried += static_cast<uint64_t>(row.dropped);
    } else {
      ++r.carried_unknown;
    }
  }
  closeRun();
  const bool proven = truncated ? (r.index_complete && r.table_complete && r.batches > 0)
                                 : (r.index_complete || r.table_complete);
  if (truncated) {
    if (!r.detail.empty()) r.detail += "; ";
    r.detail += "the file is shorter than its header says (truncated)";
  }
  if (proven && !unknown_readings) {
    r.found = SalvageResult::Found::kComplete;
  } else if (r.batches > 0) {
    r.found = SalvageResult::Found::kPartial;
  } else {
    r.found = SalvageResult::Found::kNothing;
  }
  return r;
}


WalCheck checkWal(const std::string& db_path) {
  WalCheck c;
  const WalScan w = scanWal(db_path);
  if (!w.present) return c;
  c.header_valid = w.header_valid;
  c.page_size = w.page_size;
  c.frames = w.frames.size();
  c.recovered = w.recovered;
  c.first_bad = w.first_bad;
  c.shm_committed = w.shm_committed;
  c.shm_this_boot = w.shm_this_boot;
  const std::string wal = db_path + "-wal";
  // A read error is SQLite's to report; without frames of one generation nothing committed is lost.
  if (!w.error.empty() || !w.has_gen) return c;
  uint64_t last_commit = 0, commits = 0;
  if (w.header_valid) {
    // Commit frames of this generation after the frame where recovery stops (the failing frame
    // itself may be a commit torn by a crash: never counted).
    for (size_t i = w.first_bad; w.first_bad != 0 && i < w.frames.size(); ++i) {
      if (w.frames[i].salts == w.salts && w.frames[i].commit != 0 && w.frames[i].pgno != 0) {
        ++commits;
        last_commit = i + 1;
      }
    }
    // The writer's -shm (this boot's) says its last finished commit ends before the break: the
    // frames after it belong to transactions it never finished (a failed fsync, a kill
    // mid-commit), partly overwritten by a shorter one; nothing it reported committed is lost.
    if (commits > 0 && w.shm_this_boot && w.first_bad > w.shm_committed) {
      c.uncommitted_tail = true;
      commits = 0;
    }
    if (commits > 0) {
      c.damaged = true;
      c.commits_after = commits;
      c.what = "frame " + std::to_string(w.first_bad) + " of " + std::to_string(c.frames) +
               " fails its " +
               (w.frames[w.first_bad - 1].salts != w.salts ? "salts" : "checksum") + ", yet " +
               std::to_string(commits) + " commit frame(s) of the same WAL generation follow it " +
               "(the last at frame " + std::to_string(last_commit) + "); SQLite would keep " +
               std::to_string(w.recovered) + " frames and drop the rest";
    }
  } else {
    for (size_t i = 0; i < w.frames.size(); ++i) {
      if (w.cls[i] == Cls::kIntact && w.frames[i].commit != 0) {
        ++commits;
        last_commit = i + 1;
      }
    }
    if (commits > 0) {
      c.damaged = true;
      c.first_bad = 0;
      c.commits_after = commits;
      c.what = "its header fails its magic number, page size or checksum, yet " +
               std::to_string(commits) + " commit frame(s) of one generation follow it (the " +
               "last at frame " + std::to_string(last_commit) + " of " +
               std::to_string(c.frames) + "); SQLite would ignore the whole log";
    }
  }
  if (!c.damaged && w.shm_committed > w.recovered) {
    c.damaged = true;
    c.what = "the -shm left by the last writer says " + std::to_string(w.shm_committed) +
             " frames were committed, SQLite would recover " + std::to_string(w.recovered) +
             " of the " + std::to_string(c.frames) + " whole frames in the file (the log was " +
             "cut short or a frame of its last commit damaged)";
  }
  if (c.damaged) c.what = wal + ": " + c.what;
  if (w.capped) c.what += " (read the first 64 MB only)";
  return c;
}

WalRepair repairWalCopy(const std::string& db_path, const std::string& out_wal) {
  WalRepair r;
  const WalScan w = scanWal(db_path);
  const uint64_t end = w.has_gen ? lastIntactCommit(w) : 0;
  if (end == 0) {
    r.detail = "no intact commit frame in the WAL";
    return r;
  }
  std::FILE* in = std::fopen((db_path + "-wal").c_str(), "rb");
  std::FILE* out = std::fopen(out_wal.c_str(), "wb");
  if (in == nullptr || out == nullptr) {
    if (in != nullptr) std::fclose(in);
    if (out != nullptr) std::fclose(out);
    r.detail = "cannot open the WAL or its copy";
    return r;
  }
  // A header SQLite accepts: the original byte order (the frames' sums depend on it), version,
  // page size and checkpoint seq, the generation's salts, its own checksum.
  uint8_t head[kWalHeaderBytes];
  std::memcpy(head, w.header, sizeof head);
  putBe32(head, kWalMagic | (w.big_endian ? 1u : 0u));
  putBe32(head + 4, kWalVersion);
  putBe32(head + 8, w.page_size);
  std::memcpy(head + 16, &w.salts, 8);
  Sum run = walSum(w.big_endian, head, 24, {});
  putBe32(head + 24, run.s1);
  putBe32(head + 28, run.s2);
  bool ok = std::fwrite(head, 1, sizeof head, out) == sizeof head;
  const int order = w.big_endian ? 1 : 0;
  const size_t frame_bytes = kFrameHeaderBytes + w.page_size;
  std::vector<uint8_t> buf(frame_bytes);
  for (uint64_t i = 0; ok && i < end; ++i) {
    ok = std::fseek(in, static_cast<long>(kWalHeaderBytes + i * frame_bytes), SEEK_SET) == 0 &&
         std::fread(buf.data(), 1, frame_bytes, in) == frame_bytes;
    if (!ok) break;
    if (w.cls[i] == Cls::kOther || w.frames[i].pgno == 0) {
      ++r.dropped;
      continue;
    }
    if (w.cls[i] == Cls::kDamaged) ++r.damaged;
    // Bytes 0..7 and the page are kept, so the frame's sum from (0, 0) still holds.
    std::memcpy(buf.data() + 8, &w.salts, 8);
    run = reseed(w.step, run, w.frames[i].zero[order]);
    putBe32(buf.data() + 16, run.s1);
    putBe32(buf.data() + 20, run.s2);
    ok = std::fwrite(buf.data(), 1, frame_bytes, out) == frame_bytes;
    ++r.kept;
  }
  std::fclose(in);
  ok = std::fclose(out) == 0 && ok;
  if (!ok) {
    r.detail = "cannot copy the WAL";
    return r;
  }
  r.written = true;
  const bool all_there = w.shm_committed <= end && !w.capped;
  r.exact = r.damaged == 0 && r.dropped == 0 && all_there;
  r.detail = "read through a repaired copy of the WAL: " + std::to_string(r.kept) +
             " frames up to its last intact commit (frame " + std::to_string(end) + "), " +
             std::to_string(r.damaged) + " of them with damaged content, " +
             std::to_string(r.dropped) + " left out (header unreadable)";
  if (!all_there) {
    r.detail += "; " + std::to_string(w.shm_committed - std::min(w.shm_committed, end)) +
                " committed frames missing (per the -shm)";
  }
  return r;
}

SalvageResult salvageMovedStore(const std::string& path, const SalvageLimits& limits) {
  if (!checkWal(path).damaged) return salvageStore(path, limits);
  // A private copy: the moved store stays as it was found, for the operator.
  const std::string copy = path + ".walfix";
  std::error_code ec;
  auto removeCopy = [&] {
    for (const char* suffix : {"", "-wal", "-shm", "-journal"}) {
      std::filesystem::remove(copy + suffix, ec);
    }
  };
  removeCopy();
  std::filesystem::create_hard_link(path, copy, ec);  // read-only below: no need for a copy
  if (ec) std::filesystem::copy_file(path, copy, ec);
  WalRepair rep;
  if (ec) {
    rep.detail = "cannot copy the store: " + ec.message();
  } else {
    rep = repairWalCopy(path, copy + "-wal");
  }
  SalvageResult r = rep.written ? salvageStore(copy, limits) : salvageStore(path, limits);
  removeCopy();
  r.wal_repaired = rep.written;
  if (!r.detail.empty()) r.detail += "; ";
  r.detail += rep.written ? rep.detail : "the WAL could not be repaired (" + rep.detail + ")";
  if ((!rep.written || !rep.exact) && r.found == SalvageResult::Found::kComplete) {
    r.found = SalvageResult::Found::kPartial;
  }
  return r;
}

}  // namespace outpost::agent
