#pragma once

// A SQLite VFS that wraps the default one and fails chosen writes and syncs, for tests of what a
// store does on an I/O error (cf. LevelDB's FaultInjectionTestEnv). While a FaultyVfs exists it is
// SQLite's default VFS, so every database opened meanwhile goes through it; destroy it only after
// those connections are closed. Fault settings are atomics: any thread.
//
//   FaultyVfs vfs;
//   vfs.failWrites(1, SQLITE_IOERR_WRITE);  // the next xWrite fails, as EIO would
//   vfs.failWrites(-1, SQLITE_FULL);        // every xWrite fails, as ENOSPC would, until...
//   vfs.failWrites(0);                      // ...this

#include <sqlite3.h>

#include <atomic>
#include <cstring>

namespace outpost::testing {

class FaultyVfs {
 public:
  FaultyVfs() {
    real_ = sqlite3_vfs_find(nullptr);
    std::memset(&vfs_, 0, sizeof vfs_);
    vfs_.iVersion = 1;
    vfs_.szOsFile = static_cast<int>(sizeof(File)) + real_->szOsFile;
    vfs_.mxPathname = real_->mxPathname;
    vfs_.zName = "outpost-faulty";
    vfs_.pAppData = this;
    vfs_.xOpen = &FaultyVfs::open;
    vfs_.xDelete = [](sqlite3_vfs* v, const char* n, int s) { return self(v)->real_->xDelete(self(v)->real_, n, s); };
    vfs_.xAccess = [](sqlite3_vfs* v, const char* n, int f, int* o) { return self(v)->real_->xAccess(self(v)->real_, n, f, o); };
    vfs_.xFullPathname = [](sqlite3_vfs* v, const char* n, int sz, char* o) { return self(v)->real_->xFullPathname(self(v)->real_, n, sz, o); };
    vfs_.xDlOpen = [](sqlite3_vfs* v, const char* n) { return self(v)->real_->xDlOpen(self(v)->real_, n); };
    vfs_.xDlError = [](sqlite3_vfs* v, int n, char* m) { self(v)->real_->xDlError(self(v)->real_, n, m); };
    vfs_.xDlSym = [](sqlite3_vfs* v, void* h, const char* s) { return self(v)->real_->xDlSym(self(v)->real_, h, s); };
    vfs_.xDlClose = [](sqlite3_vfs* v, void* h) { self(v)->real_->xDlClose(self(v)->real_, h); };
    vfs_.xRandomness = [](sqlite3_vfs* v, int n, char* o) { return self(v)->real_->xRandomness(self(v)->real_, n, o); };
    vfs_.xSleep = [](sqlite3_vfs* v, int us) { return self(v)->real_->xSleep(self(v)->real_, us); };
    vfs_.xCurrentTime = [](sqlite3_vfs* v, double* t) { return self(v)->real_->xCurrentTime(self(v)->real_, t); };
    vfs_.xGetLastError = [](sqlite3_vfs* v, int n, char* m) { return self(v)->real_->xGetLastError(self(v)->real_, n, m); };
    sqlite3_vfs_register(&vfs_, 1);
  }
  ~FaultyVfs() { sqlite3_vfs_unregister(&vfs_); }
  FaultyVfs(const FaultyVfs&) = delete;
  FaultyVfs& operator=(const FaultyVfs&) = delete;

  // The next n writes (n < 0: every write until changed) return `code`.
  void failWrites(int n, int code = SQLITE_IOERR_WRITE) {
    write_code_ = code;
    fail_writes_ = n;
  }
  // The next n syncs (n < 0: every one) return SQLITE_IOERR_FSYNC.
  void failSyncs(int n) { fail_syncs_ = n; }
  int failed() const { return failed_; }

 private:
  struct File {
    sqlite3_file base;
    FaultyVfs* owner;
    sqlite3_file* real;  // the wrapped VFS's file, stored right after this struct
  };

  static FaultyVfs* self(sqlite3_vfs* v) { return static_cast<FaultyVfs*>(v->pAppData); }
  static File* file(sqlite3_file* f) { return reinterpret_cast<File*>(f); }
  static sqlite3_file* real(sqlite3_file* f) { return file(f)->real; }

  // True if this call must fail (consumes one of a counted budget).
  static bool take(std::atomic<int>& budget, std::atomic<int>& failed) {
    int n = budget.load();
    while (n != 0) {
      if (n < 0 || budget.compare_exchange_weak(n, n - 1)) {
        ++failed;
        return true;
      }
    }
    return false;
  }

  static int open(sqlite3_vfs* v, const char* name, sqlite3_file* f, int flags, int* out) {
    FaultyVfs* me = self(v);
    File* w = file(f);
    w->owner = me;
    w->real = reinterpret_cast<sqlite3_file*>(w + 1);
    const int rc = me->real_->xOpen(me->real_, name, w->real, flags, out);
    // SQLite calls xClose only if pMethods is set; mirror the wrapped file's state.
    w->base.pMethods = w->real->pMethods != nullptr ? &me->methods() : nullptr;
    return rc;
  }

  sqlite3_io_methods& methods() {
    static sqlite3_io_methods m = [] {
      sqlite3_io_methods x{};
      x.iVersion = 3;
      x.xClose = [](sqlite3_file* f) { return real(f)->pMethods->xClose(real(f)); };
      x.xRead = [](sqlite3_file* f, void* b, int n, sqlite3_int64 o) { return real(f)->pMethods->xRead(real(f), b, n, o); };
      x.xWrite = [](sqlite3_file* f, const void* b, int n, sqlite3_int64 o) {
        FaultyVfs* me = file(f)->owner;
        if (take(me->fail_writes_, me->failed_)) return me->write_code_.load();
        return real(f)->pMethods->xWrite(real(f), b, n, o);
      };
      x.xTruncate = [](sqlite3_file* f, sqlite3_int64 s) { return real(f)->pMethods->xTruncate(real(f), s); };
      x.xSync = [](sqlite3_file* f, int fl) {
        FaultyVfs* me = file(f)->owner;
        if (take(me->fail_syncs_, me->failed_)) return SQLITE_IOERR_FSYNC;
        return real(f)->pMethods->xSync(real(f), fl);
      };
      x.xFileSize = [](sqlite3_file* f, sqlite3_int64* s) { return real(f)->pMethods->xFileSize(real(f), s); };
      x.xLock = [](sqlite3_file* f, int l) { return real(f)->pMethods->xLock(real(f), l); };
      x.xUnlock = [](sqlite3_file* f, int l) { return real(f)->pMethods->xUnlock(real(f), l); };
      x.xCheckReservedLock = [](sqlite3_file* f, int* o) { return real(f)->pMethods->xCheckReservedLock(real(f), o); };
      x.xFileControl = [](sqlite3_file* f, int op, void* a) { return real(f)->pMethods->xFileControl(real(f), op, a); };
      x.xSectorSize = [](sqlite3_file* f) { return real(f)->pMethods->xSectorSize(real(f)); };
      x.xDeviceCharacteristics = [](sqlite3_file* f) { return real(f)->pMethods->xDeviceCharacteristics(real(f)); };
      x.xShmMap = [](sqlite3_file* f, int i, int sz, int e, void volatile** p) { return real(f)->pMethods->xShmMap(real(f), i, sz, e, p); };
      x.xShmLock = [](sqlite3_file* f, int o, int n, int fl) { return real(f)->pMethods->xShmLock(real(f), o, n, fl); };
      x.xShmBarrier = [](sqlite3_file* f) { real(f)->pMethods->xShmBarrier(real(f)); };
      x.xShmUnmap = [](sqlite3_file* f, int d) { return real(f)->pMethods->xShmUnmap(real(f), d); };
      x.xFetch = [](sqlite3_file* f, sqlite3_int64 o, int n, void** p) { return real(f)->pMethods->xFetch(real(f), o, n, p); };
      x.xUnfetch = [](sqlite3_file* f, sqlite3_int64 o, void* p) { return real(f)->pMethods->xUnfetch(real(f), o, p); };
      return x;
    }();
    return m;
  }

  sqlite3_vfs* real_;
  sqlite3_vfs vfs_;
  std::atomic<int> fail_writes_{0};
  std::atomic<int> write_code_{SQLITE_IOERR_WRITE};
  std::atomic<int> fail_syncs_{0};
  std::atomic<int> failed_{0};
};

}  // namespace outpost::testing
