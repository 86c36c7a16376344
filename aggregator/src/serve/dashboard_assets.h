#pragma once

// The dashboard's static files, embedded at build time (aggregator/dashboard/embed.cmake generates
// the definition from aggregator/dashboard/*), so the binary needs no files at run time.

#include <cstddef>

namespace outpost::aggregator {

struct EmbeddedFile {
  const char* path;          // URL path, e.g. "/" or "/assets/uPlot.iife.min.js"
  const char* content_type;
  const unsigned char* data;
  size_t size;
};

// All embedded files; `count` receives their number.
const EmbeddedFile* dashboardFiles(size_t& count);

}  // namespace outpost::aggregator
