/*
 * package/runtime.c: what an image needs to run kiln: the executable and the
 * shared objects the dynamic loader mapped for it (dl_iterate_phdr lists
 * them with the paths the loader used, the loader itself included).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <link.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "kiln/package.h"

const char *kiln_package_host_arch(void) {
#if defined(__x86_64__)
  return "amd64";
#elif defined(__aarch64__)
  return "arm64";
#else
  return "unknown";
#endif
}

void kiln_package_runtime_free(kiln_package_runtime *rt) {
  if (!rt) return;
  for (int32_t i = 0; i < rt->n_libraries; i++) kiln_free(rt->libraries[i]);
  kiln_free(rt->libraries);
  kiln_free(rt->binary);
  kiln_free(rt->arch);
  memset(rt, 0, sizeof *rt);
}

static bool add_library(kiln_package_runtime *rt, int32_t *cap, const char *path) {
  for (int32_t i = 0; i < rt->n_libraries; i++)
    if (strcmp(rt->libraries[i], path) == 0) return true;
  if (rt->n_libraries == *cap) {
    int32_t grown_cap = *cap ? *cap * 2 : 64;
    char **grown = kiln_realloc(rt->libraries, (size_t)grown_cap * sizeof *grown);
    if (!grown) return false;
    rt->libraries = grown;
    *cap = grown_cap;
  }
  char *copy = kiln_strdup(path);
  if (!copy) return false;
  rt->libraries[rt->n_libraries++] = copy;
  return true;
}

typedef struct phdr_ctx {
  kiln_package_runtime *rt;
  int32_t cap;
  bool nomem;
} phdr_ctx;

static int phdr_cb(struct dl_phdr_info *info, size_t size, void *data) {
  (void)size;
  phdr_ctx *c = data;
  /* The main program has an empty name, the vDSO a name without a path. */
  if (info->dlpi_name && info->dlpi_name[0] == '/' && !add_library(c->rt, &c->cap, info->dlpi_name)) {
    c->nomem = true;
    return 1;
  }
  return 0;
}

kiln_status kiln_package_runtime_self(kiln_package_runtime *out, kiln_error *err) {
  memset(out, 0, sizeof *out);
  char exe[4096];
  ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
  if (n <= 0) return kiln_fail(err, KILN_ERR_IO, "/proc/self/exe: %s", strerror(errno));
  exe[n] = '\0';
  out->binary = kiln_strdup(exe);
  out->arch = kiln_strdup(kiln_package_host_arch());
  phdr_ctx c = {out, 0, false};
  if (out->binary && out->arch) dl_iterate_phdr(phdr_cb, &c);
  if (!out->binary || !out->arch || c.nomem) {
    kiln_package_runtime_free(out);
    return kiln_fail(err, KILN_ERR_NOMEM, "out of memory listing kiln's libraries");
  }
  return KILN_OK;
}
