#include "outpost/common/sqlite.h"

namespace outpost::sqlite {

ErrorCode errorCodeFor(int rc) {
  switch (rc & 0xff) {
    case SQLITE_FULL:
    case SQLITE_IOERR:
    case SQLITE_BUSY:
    case SQLITE_LOCKED:
    case SQLITE_CANTOPEN: return ErrorCode::kIoError;
    case SQLITE_CORRUPT:
    case SQLITE_NOTADB: return ErrorCode::kCorrupt;
    default: return ErrorCode::kInternal;
  }
}

std::unexpected<Error> failure(sqlite3* db, int rc, const std::string& what) {
  return fail(errorCodeFor(rc), what + ": " + sqlite3_errstr(rc) + " (" +
                                    (db ? sqlite3_errmsg(db) : "no connection") + ")");
}

Result<sqlite3*> open(const std::string& path, const std::string& what) {
  sqlite3* db = nullptr;
  const int rc = sqlite3_open_v2(path.c_str(), &db,
                                 SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_FULLMUTEX,
                                 nullptr);
  if (rc != SQLITE_OK) {
    auto err = failure(db, rc, "cannot open " + what + " " + path);
    sqlite3_close_v2(db);
    return err;
  }
  // When the read-write open fails (EIO, ENOSPC, a file system remounted read-only) SQLite's unix
  // VFS quietly opens the file read-only instead: every later write would fail with "readonly
  // database" while the store looked open. Refuse that here, as the failed open it is.
  if (sqlite3_db_readonly(db, "main") == 1) {
    sqlite3_close_v2(db);
    return fail(ErrorCode::kIoError, "cannot open " + what + " " + path +
                                         " for writing (only a read-only open succeeded: an I/O "
                                         "error, or a read-only file system)");
  }
  sqlite3_busy_timeout(db, 5000);
  return db;
}

Status exec(sqlite3* db, const char* sql, const std::string& what) {
  char* msg = nullptr;
  const int rc = sqlite3_exec(db, sql, nullptr, nullptr, &msg);
  if (rc != SQLITE_OK) {
    std::string m = msg ? msg : sqlite3_errstr(rc);
    sqlite3_free(msg);
    return fail(errorCodeFor(rc), what + ": " + m);
  }
  return {};
}

}  // namespace outpost::sqlite
