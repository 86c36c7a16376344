#include "outpost/common/secrets.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <sstream>

namespace outpost::secrets {
namespace {

std::string modeText(mode_t mode) {
  char buf[8];
  std::snprintf(buf, sizeof buf, "%04o", static_cast<unsigned>(mode & 07777));
  return buf;
}

}  // namespace

Result<std::string> readWhole(const std::string& path, const std::string& what) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return fail(ErrorCode::kNotFound, what + ": cannot read " + path);
  std::ostringstream os;
  os << in.rdbuf();
  return os.str();
}

Status checkPrivateFile(const std::string& path, const std::string& what) {
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0) {
    return fail(ErrorCode::kNotFound, what + ": cannot open " + path + ": " + std::strerror(errno));
  }
  if (!S_ISREG(st.st_mode)) {
    return fail(ErrorCode::kInvalidArgument, what + ": " + path + " is not a regular file");
  }
  if ((st.st_mode & 077) != 0) {
    return fail(ErrorCode::kInvalidArgument,
                what + ": " + path + " has mode " + modeText(st.st_mode) +
                    ", so other users can read or change it; refusing to use it. Fix with: "
                    "chmod 600 " +
                    path);
  }
  return {};
}

Result<std::string> readSecretFile(const std::string& path, const std::string& what) {
  if (auto st = checkPrivateFile(path, what); !st) return std::unexpected(st.error());
  auto text = readWhole(path, what);
  if (!text) return text;
  while (!text->empty() && (text->back() == '\n' || text->back() == '\r')) text->pop_back();
  if (text->empty()) return fail(ErrorCode::kInvalidArgument, what + ": " + path + " is empty");
  return text;
}

Status writePrivateFile(const std::string& path, const std::string& content) {
  const int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
  if (fd < 0) {
    return fail(ErrorCode::kIoError, "cannot create " + path + ": " + std::strerror(errno));
  }
  size_t off = 0;
  while (off < content.size()) {
    const ssize_t n = ::write(fd, content.data() + off, content.size() - off);
    if (n < 0) {
      if (errno == EINTR) continue;
      const std::string err = std::strerror(errno);
      ::close(fd);
      return fail(ErrorCode::kIoError, "cannot write " + path + ": " + err);
    }
    off += static_cast<size_t>(n);
  }
  if (::fsync(fd) != 0 || ::close(fd) != 0) {
    return fail(ErrorCode::kIoError, "cannot write " + path + ": " + std::strerror(errno));
  }
  return {};
}

}  // namespace outpost::secrets
