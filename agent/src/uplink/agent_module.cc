#include "outpost/agent/agent_module.h"

#include <dlfcn.h>

#include <cstdlib>
#include <filesystem>
#include <vector>

#ifndef OUTPOST_AGENT_MODULE_RELDIR
#define OUTPOST_AGENT_MODULE_RELDIR "../lib/outpost"
#endif

namespace outpost::agent {
namespace {

std::vector<std::string> candidatePaths(const std::string& file) {
  namespace fs = std::filesystem;
  std::vector<std::string> paths;
  if (const char* dir = std::getenv("OUTPOST_AGENT_MODULE_DIR"); dir && *dir) {
    paths.push_back((fs::path(dir) / file).string());
    return paths;
  }
  std::error_code ec;
  const fs::path exe = fs::read_symlink("/proc/self/exe", ec);
  const fs::path rel = OUTPOST_AGENT_MODULE_RELDIR;
  if (!ec) {
    paths.push_back((exe.parent_path() / file).string());  // build tree, tarball
    paths.push_back(
        ((rel.is_absolute() ? rel : exe.parent_path() / rel) / file).lexically_normal().string());
  } else if (rel.is_absolute()) {
    paths.push_back((rel / file).string());
  }
  return paths;
}

}  // namespace

LoadedModule loadAgentModule(const std::string& file, const char* symbol) {
  std::string tried;
  for (const auto& path : candidatePaths(file)) {
    std::error_code ec;
    if (!std::filesystem::exists(path, ec)) {
      tried += (tried.empty() ? "" : ", ") + path + " (not found)";
      continue;
    }
    // Never closed: the module's code stays in use until exit.
    void* handle = ::dlopen(path.c_str(), RTLD_NOW | RTLD_LOCAL);
    if (!handle) {
      const char* e = ::dlerror();
      return {nullptr, path, path + ": " + (e ? e : "dlopen failed")};
    }
    void* entry = ::dlsym(handle, symbol);
    if (!entry) return {nullptr, path, path + ": not an outpost module (no " + symbol + ")"};
    return {entry, path, ""};
  }
  return {nullptr, "", "not found (tried " + tried + ")"};
}

}  // namespace outpost::agent
