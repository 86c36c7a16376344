#pragma once

// Thin RAII helpers over the SQLite C API, shared by the agent's outbox and the aggregator's dedup
// store. Statements are always prepared (never built with printf).

#include <sqlite3.h>

#include <cstdint>
#include <string>

#include "outpost/common/status.h"

namespace outpost::sqlite {

// A prepared statement, finalized on scope exit.
class Stmt {
 public:
  Stmt(sqlite3* db, const char* sql) { rc_ = sqlite3_prepare_v2(db, sql, -1, &stmt_, nullptr); }
  ~Stmt() { sqlite3_finalize(stmt_); }
  Stmt(const Stmt&) = delete;
  Stmt& operator=(const Stmt&) = delete;

  bool ok() const { return rc_ == SQLITE_OK; }
  sqlite3_stmt* get() { return stmt_; }
  void bind(int i, int64_t v) { sqlite3_bind_int64(stmt_, i, v); }
  // The string must outlive the statement's next step().
  void bind(int i, const std::string& s) {
    sqlite3_bind_text(stmt_, i, s.data(), static_cast<int>(s.size()), SQLITE_STATIC);
  }
  void bind(int i, const char* s) { sqlite3_bind_text(stmt_, i, s, -1, SQLITE_STATIC); }
  void bindBlob(int i, const void* p, size_t n) { sqlite3_bind_blob64(stmt_, i, p, n, SQLITE_STATIC); }
  int step() { return sqlite3_step(stmt_); }
  void reset() {
    sqlite3_reset(stmt_);
    sqlite3_clear_bindings(stmt_);
  }
  int64_t col(int i) { return sqlite3_column_int64(stmt_, i); }
  std::string text(int i) {
    const auto* p = reinterpret_cast<const char*>(sqlite3_column_text(stmt_, i));
    return p ? std::string(p, static_cast<size_t>(sqlite3_column_bytes(stmt_, i))) : std::string();
  }

 private:
  sqlite3_stmt* stmt_ = nullptr;
  int rc_;
};

// BEGIN IMMEDIATE on construction; rolls back on scope exit unless committed.
class Transaction {
 public:
  explicit Transaction(sqlite3* db) : db_(db) {
    rc_ = sqlite3_exec(db_, "BEGIN IMMEDIATE", nullptr, nullptr, nullptr);
  }
  ~Transaction() {
    if (rc_ == SQLITE_OK && !done_) sqlite3_exec(db_, "ROLLBACK", nullptr, nullptr, nullptr);
  }
  Transaction(const Transaction&) = delete;
  Transaction& operator=(const Transaction&) = delete;
  int begun() const { return rc_; }
  int commit() {
    done_ = true;
    const int rc = sqlite3_exec(db_, "COMMIT", nullptr, nullptr, nullptr);
    // A failed COMMIT may have rolled the transaction back itself (an I/O error or a full disk
    // does): a ROLLBACK then fails too, and its "cannot rollback - no transaction is active"
    // would replace the commit's own message, which the caller reports (sqlite::failure).
    if (rc != SQLITE_OK && !sqlite3_get_autocommit(db_)) {
      sqlite3_exec(db_, "ROLLBACK", nullptr, nullptr, nullptr);
    }
    return rc;
  }

 private:
  sqlite3* db_;
  int rc_;
  bool done_ = false;
};

// Maps an SQLite result code to an error kind: full disk and I/O errors are retriable
// (kIoError), corruption is kCorrupt.
ErrorCode errorCodeFor(int rc);
// An error naming `what`, the SQLite error string and the connection's last message.
std::unexpected<Error> failure(sqlite3* db, int rc, const std::string& what);
// Opens (creating if missing) a database for use from several threads, with a 5 s busy timeout.
// On failure nothing stays open.
Result<sqlite3*> open(const std::string& path, const std::string& what);
// Runs SQL without results (schema, pragmas).
Status exec(sqlite3* db, const char* sql, const std::string& what);

}  // namespace outpost::sqlite
