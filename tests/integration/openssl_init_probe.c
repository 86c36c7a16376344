/* LD_PRELOAD probe for integration.agent_no_openssl (agent_no_openssl_test.sh): records every
 * call of OPENSSL_init_ssl (SSL_library_init in OpenSSL >= 1.1, cpp-httplib's static
 * constructor, Paho's SSLSocket_initialize) made through the dynamic linker, then forwards it to
 * libssl. Appends one line per call to $OUTPOST_OPENSSL_PROBE_LOG. */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

typedef int (*init_ssl_fn)(uint64_t opts, const void *settings);

int OPENSSL_init_ssl(uint64_t opts, const void *settings) {
  const char *path = getenv("OUTPOST_OPENSSL_PROBE_LOG");
  if (path) {
    int fd = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
    if (fd >= 0) {
      static const char line[] = "OPENSSL_init_ssl\n";
      ssize_t n = write(fd, line, sizeof line - 1);
      (void)n;
      close(fd);
    }
  }
  void *sym = dlsym(RTLD_NEXT, "OPENSSL_init_ssl");
  init_ssl_fn next;
  memcpy(&next, &sym, sizeof next); /* object to function pointer without -Wpedantic's warning */
  return next ? next(opts, settings) : 0;
}
