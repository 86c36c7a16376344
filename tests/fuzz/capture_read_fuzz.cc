// Fuzz target for the capture file reader (simulators/src/capture.cc, docs/capture-format.md):
// captures come from the field and are untrusted. The input is the whole file. The reader must
// never crash, read past the end or allocate beyond the file; what it returns must be consistent:
// every record framed inside the file, the same records again after rewind(), and the good records
// written back by CaptureWriter read back identically.
//
// The file is a memfd opened through /proc/self/fd (CaptureReader takes a path).
//
// Built like batch_decode_fuzz.cc: a libFuzzer binary with OUTPOST_BUILD_FUZZERS (clang), and
// with replay_main.cc as a plain program that runs the committed corpus in every build.

#include <sys/mman.h>
#include <unistd.h>

#include <cstdint>
#include <cstdlib>
#include <string>
#include <vector>

#include "outpost/sim/capture.h"

using namespace outpost::sim;

namespace {

void check(bool ok) {
  if (!ok) std::abort();
}

// A memory file, reused for every input.
struct MemFile {
  int fd;
  std::string path;
  explicit MemFile(const char* name) : fd(::memfd_create(name, MFD_CLOEXEC)) {
    check(fd >= 0);
    path = "/proc/self/fd/" + std::to_string(fd);
  }
  void set(const uint8_t* data, size_t size) const {
    check(::ftruncate(fd, 0) == 0);
    size_t done = 0;
    while (done < size) {
      const ssize_t n = ::pwrite(fd, data + done, size - done, static_cast<off_t>(done));
      check(n > 0);
      done += static_cast<size_t>(n);
    }
  }
};

// Reads every record (at most `limit`); false when the reader stopped with an error.
bool readAll(CaptureReader& r, std::vector<CaptureRecord>& out, size_t limit) {
  while (out.size() < limit) {
    auto rec = r.next();
    if (!rec) return false;
    if (!*rec) return true;
    out.push_back(std::move(**rec));
  }
  return true;
}

constexpr size_t kRecordFixed = 14 + 8;  // length, recv_us, topic length, payload length, CRC

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static const MemFile in("capture-in"), out("capture-out");
  in.set(data, size);
  auto opened = CaptureReader::open(in.path);
  if (!opened) return 0;
  CaptureReader& r = **opened;
  check(r.fileSize() == size);
  check(r.version() >= 1 && r.version() <= kCaptureVersion);
  check(16 + r.meta().size() <= size);

  std::vector<CaptureRecord> first;
  const bool clean = readAll(r, first, size);
  check(r.offset() <= size);
  check(r.stats().records == first.size());
  uint64_t framed = 0;
  for (const auto& rec : first) framed += kRecordFixed + rec.topic.size() + rec.payload.size();
  check(16 + r.meta().size() + framed <= size);  // nothing made up beyond the file

  // Deterministic: the same records again after rewind().
  check(static_cast<bool>(r.rewind()));
  std::vector<CaptureRecord> again;
  check(readAll(r, again, size) == clean);
  check(again.size() == first.size());
  for (size_t i = 0; i < first.size(); ++i) {
    check(again[i].recv_us == first[i].recv_us && again[i].topic == first[i].topic &&
          again[i].payload == first[i].payload);
  }

  // Round trip: the good records written by the writer are read back identically, all good.
  if (first.empty()) return 0;
  {
    auto w = CaptureWriter::open(out.path, r.meta());
    check(static_cast<bool>(w));
    for (const auto& rec : first) check(static_cast<bool>((*w)->append(rec)));
    check(static_cast<bool>((*w)->close()));
  }
  auto back = CaptureReader::open(out.path);
  check(static_cast<bool>(back));
  check((*back)->meta() == r.meta());
  std::vector<CaptureRecord> copy;
  check(readAll(**back, copy, first.size() + 1));
  check(copy.size() == first.size() && (*back)->stats().bad_crc == 0 &&
        !(*back)->stats().truncated_tail);
  for (size_t i = 0; i < first.size(); ++i) {
    check(copy[i].recv_us == first[i].recv_us && copy[i].topic == first[i].topic &&
          copy[i].payload == first[i].payload);
  }
  return 0;
}
