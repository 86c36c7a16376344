#pragma once

// Clang's thread-safety annotations (-Wthread-safety) and the annotated mutex they check: every
// member guarded by a lock says so with GUARDED_BY(mu_), every function that expects the lock held
// with REQUIRES(mu_), and clang refuses to compile (scripts/thread-safety.sh, -Werror) an access
// without the lock. Under g++ the macros are empty and Mutex is a plain std::mutex.
// Patterned on LevelDB's port/thread_annotations.h and util/mutexlock.h; the attribute meanings are
// in https://clang.llvm.org/docs/ThreadSafetyAnalysis.html.
//
//   class Queue {
//     ...
//    private:
//     outpost::Mutex mu_;
//     outpost::CondVar cv_;
//     std::deque<int> items_ GUARDED_BY(mu_);
//   };
//   void Queue::push(int v) {
//     outpost::MutexLock lock(mu_);
//     items_.push_back(v);
//     cv_.notify_one();
//   }
//   int Queue::pop() {
//     outpost::MutexLock lock(mu_);
//     cv_.wait(lock, [&]() REQUIRES(mu_) { return !items_.empty(); });  // a lambda is a function
//     ...                                                              // of its own: annotate it
//   }

#include <chrono>
#include <condition_variable>
#include <mutex>

#if defined(__clang__)
#define OUTPOST_THREAD_ANNOTATION(x) __attribute__((x))
#else
#define OUTPOST_THREAD_ANNOTATION(x)
#endif

// On a class: objects of it are locks (Mutex).
#define CAPABILITY(x) OUTPOST_THREAD_ANNOTATION(capability(x))
// On an RAII class that acquires in its constructor and releases in its destructor (MutexLock).
#define SCOPED_CAPABILITY OUTPOST_THREAD_ANNOTATION(scoped_lockable)
// On a data member: read and written only with the lock held.
#define GUARDED_BY(x) OUTPOST_THREAD_ANNOTATION(guarded_by(x))
// On a pointer member: the pointee is read and written only with the lock held.
#define PT_GUARDED_BY(x) OUTPOST_THREAD_ANNOTATION(pt_guarded_by(x))
// On a mutex member: the lock order (deadlock prevention); checked with -Wthread-safety-beta.
#define ACQUIRED_BEFORE(...) OUTPOST_THREAD_ANNOTATION(acquired_before(__VA_ARGS__))
#define ACQUIRED_AFTER(...) OUTPOST_THREAD_ANNOTATION(acquired_after(__VA_ARGS__))
// On a function: the caller must hold the lock (exclusively / at least shared).
#define REQUIRES(...) OUTPOST_THREAD_ANNOTATION(requires_capability(__VA_ARGS__))
#define REQUIRES_SHARED(...) OUTPOST_THREAD_ANNOTATION(requires_shared_capability(__VA_ARGS__))
// On a function: it takes / gives up the lock and returns with it held / not held.
#define ACQUIRE(...) OUTPOST_THREAD_ANNOTATION(acquire_capability(__VA_ARGS__))
#define RELEASE(...) OUTPOST_THREAD_ANNOTATION(release_capability(__VA_ARGS__))
#define TRY_ACQUIRE(...) OUTPOST_THREAD_ANNOTATION(try_acquire_capability(__VA_ARGS__))
// On a function: the caller must NOT hold the lock (the function takes it itself).
#define EXCLUDES(...) OUTPOST_THREAD_ANNOTATION(locks_excluded(__VA_ARGS__))
// On a function: it checks at run time that the lock is held, and tells the analysis so.
#define ASSERT_CAPABILITY(x) OUTPOST_THREAD_ANNOTATION(assert_capability(x))
// On a function: it returns a reference to the given lock.
#define RETURN_CAPABILITY(x) OUTPOST_THREAD_ANNOTATION(lock_returned(x))
// On a function: the analysis is off inside it. Each use says in a comment why it is needed.
#define NO_THREAD_SAFETY_ANALYSIS OUTPOST_THREAD_ANNOTATION(no_thread_safety_analysis)

namespace outpost {

class CondVar;

// A std::mutex the analysis knows. Lock it with MutexLock; lock()/unlock() are there for the
// rare hand-over-hand case and for std::lock_guard-style generic code.
// Thread-safety: any thread (it is the lock).
class CAPABILITY("mutex") Mutex {
 public:
  Mutex() = default;
  Mutex(const Mutex&) = delete;
  Mutex& operator=(const Mutex&) = delete;

  void lock() ACQUIRE() { mu_.lock(); }
  void unlock() RELEASE() { mu_.unlock(); }
  bool try_lock() TRY_ACQUIRE(true) { return mu_.try_lock(); }

 private:
  friend class MutexLock;
  std::mutex mu_;
};

// Holds a Mutex for its scope. A CondVar waits on it (the wait gives the lock up and takes it
// back, so for the analysis it is held throughout, as it is for the code around the wait).
// Thread-safety: one thread (the one that constructed it).
class SCOPED_CAPABILITY MutexLock {
 public:
  explicit MutexLock(Mutex& mu) ACQUIRE(mu) : lock_(mu.mu_) {}
  ~MutexLock() RELEASE() = default;
  MutexLock(const MutexLock&) = delete;
  MutexLock& operator=(const MutexLock&) = delete;

 private:
  friend class CondVar;
  std::unique_lock<std::mutex> lock_;
};

// A std::condition_variable that waits on a MutexLock; the same member names as
// std::condition_variable, of which it is a drop-in. A predicate that reads guarded members is a
// lambda of its own for the analysis: write it as `[&]() REQUIRES(mu_) { ... }`.
// Thread-safety: any thread; waiters hold the MutexLock of the Mutex the predicate reads.
class CondVar {
 public:
  void notify_one() noexcept { cv_.notify_one(); }
  void notify_all() noexcept { cv_.notify_all(); }

  void wait(MutexLock& lock) { cv_.wait(lock.lock_); }
  template <typename Predicate>
  void wait(MutexLock& lock, Predicate pred) {
    cv_.wait(lock.lock_, std::move(pred));
  }
  // Returns pred() at the end: false on timeout with the predicate still false.
  template <typename Rep, typename Period, typename Predicate>
  bool wait_for(MutexLock& lock, const std::chrono::duration<Rep, Period>& d, Predicate pred) {
    return cv_.wait_for(lock.lock_, d, std::move(pred));
  }
  template <typename Clock, typename Duration, typename Predicate>
  bool wait_until(MutexLock& lock, const std::chrono::time_point<Clock, Duration>& t,
                  Predicate pred) {
    return cv_.wait_until(lock.lock_, t, std::move(pred));
  }

 private:
  std::condition_variable cv_;
};

}  // namespace outpost
