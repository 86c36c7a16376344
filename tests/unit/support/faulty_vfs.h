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
    vfs_.xDelete = [](sqlite3_vfs* v, const char* n, int s) { return R(v)->xDelete(R(v), n, s); };
    vfs_.xAccess = [](sqlite3_vfs* v, const char* n, int f, int* o) {
      return R(v)->xAccess(R(v), n, f, o);
    };
    vfs_.xFullPathname = [](sqlite3_vfs* v, const char* n, int sz, char* o) {
      return R(v)->xFullPathname(R(v), n, sz, o);
    };
    vfs_.xDlOpen = [](sqlite3_vfs* v, const char* n) { return R(v)->xDlOpen(R(v), n); };
    vfs_.xDlError = [](sqlite3_vfs* v, int n, char* m) { R(v)->xDlError(R(v), n, m); };
    vfs_.xDlSym = [](sqlite3_vfs* v, void* h, const char* s) { return R(v)->xDlSym(R(v), h, s); };
    vfs_.xDlClose = [](sqlite3_vfs* v, void* h) { R(v)->xDlClose(R(v), h); };
    vfs_.xRandomness = [](sqlite3_vfs* v, int n, char* o) { return R(v)->xRandomness(R(v), n, o); };
    vfs_.xSleep = [](sqlite3_vfs* v, int us) { return R(v)->xSleep(R(v), us); };
    vfs_.xCurrentTime = [](sqlite3_vfs* v, double* t) { return R(v)->xCurrentTime(R(v), t); };
    vfs_.xGetLastError = [](sqlite3_vfs* v, int n, char* m) {
      return R(v)->xGetLastError(R(v), n, m);
    };
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
  static sqlite3_vfs* R(sqlite3_vfs* v) { return self(v)->real_; }  // the wrapped VFS
  static File* file(sqlite3_file* f) { return reinterpret_cast<File*>(f); }
  static sqlite3_file* F(sqlite3_file* f) { return file(f)->real; }  // the wrapped file
  static const sqlite3_io_methods* M(sqlite3_file* f) { return F(f)->pMethods; }

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
      x.xClose = [](sqlite3_file* f) { return M(f)->xClose(F(f)); };
      x.xRead = [](sqlite3_file* f, void* b, int n, sqlite3_int64 o) {
        return M(f)->xRead(F(f), b, n, o);
      };
      x.xWrite = [](sqlite3_file* f, const void* b, int n, sqlite3_int64 o) {
        FaultyVfs* me = file(f)->owner;
        if (take(me->fail_writes_, me->failed_)) return me->write_code_.load();
        return M(f)->xWrite(F(f), b, n, o);
      };
      x.xTruncate = [](sqlite3_file* f, sqlite3_int64 s) { return M(f)->xTruncate(F(f), s); };
      x.xSync = [](sqlite3_file* f, int fl) {
        FaultyVfs* me = file(f)->owner;
        if (take(me->fail_syncs_, me->failed_)) return SQLITE_IOERR_FSYNC;
        return M(f)->xSync(F(f), fl);
      };
      x.xFileSize = [](sqlite3_file* f, sqlite3_int64* s) { return M(f)->xFileSize(F(f), s); };
      x.xLock = [](sqlite3_file* f, int l) { return M(f)->xLock(F(f), l); };
      x.xUnlock = [](sqlite3_file* f, int l) { return M(f)->xUnlock(F(f), l); };
      x.xCheckReservedLock = [](sqlite3_file* f, int* o) {
        return M(f)->xCheckReservedLock(F(f), o);
      };
      x.xFileControl = [](sqlite3_file* f, int op, void* a) {
        return M(f)->xFileControl(F(f), op, a);
      };
      x.xSectorSize = [](sqlite3_file* f) { return M(f)->xSectorSize(F(f)); };
      x.xDeviceCharacteristics = [](sqlite3_file* f) {
        return M(f)->xDeviceCharacteristics(F(f));
      };
      x.xShmMap = [](sqlite3_file* f, int i, int sz, int e, void volatile** p) {
        return M(f)->xShmMap(F(f), i, sz, e, p);
      };
      x.xShmLock = [](sqlite3_file* f, int o, int n, int fl) {
        return M(f)->xShmLock(F(f), o, n, fl);
      };
      x.xShmBarrier = [](sqlite3_file* f) { M(f)->xShmBarrier(F(f)); };
      x.xShmUnmap = [](sqlite3_file* f, int d) { return M(f)->xShmUnmap(F(f), d); };
      x.xFetch = [](sqlite3_file* f, sqlite3_int64 o, int n, void** p) {
        return M(f)->xFetch(F(f), o, n, p);
      };
      x.xUnfetch = [](sqlite3_file* f, sqlite3_int64 o, void* p) {
        return M(f)->xUnfetch(F(f), o, p);
      };
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
