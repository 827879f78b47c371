/* File mapping and atomic writes (see base/file.h). */

#include "base/file.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

static kiln_status read_stream(int fd, const char *path, kiln_mapped_file *out,
                               kiln_error *err) {
  size_t cap = 1 << 16, len = 0;
  unsigned char *buf = kiln_malloc(cap);
  if (!buf) return kiln_fail(err, KILN_ERR_NOMEM, "%s: out of memory", path);
  for (;;) {
    if (len == cap) {
      if (cap > SIZE_MAX / 2) {
        kiln_free(buf);
        return kiln_fail(err, KILN_ERR_LIMIT, "%s: file too large", path);
      }
      unsigned char *grown = kiln_realloc(buf, cap * 2);
      if (!grown) {
        kiln_free(buf);
        return kiln_fail(err, KILN_ERR_NOMEM, "%s: out of memory", path);
      }
      buf = grown;
      cap *= 2;
    }
    ssize_t n = read(fd, buf + len, cap - len);
    if (n < 0) {
      if (errno == EINTR) continue;
      kiln_free(buf);
      return kiln_fail(err, KILN_ERR_IO, "%s: read failed: %s", path, strerror(errno));
    }
    if (n == 0) break;
    len += (size_t)n;
  }
  out->data = buf;
  out->size = len;
  out->mapped = false;
  return KILN_OK;
}

kiln_status kiln_file_map(const char *path, kiln_mapped_file *out, kiln_error *err) {
  memset(out, 0, sizeof *out);
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) return kiln_fail(err, KILN_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
  struct stat st;
  if (fstat(fd, &st) != 0) {
    kiln_status s = kiln_fail(err, KILN_ERR_IO, "%s: cannot stat: %s", path, strerror(errno));
    close(fd);
    return s;
  }
  if (S_ISDIR(st.st_mode)) {
    close(fd);
    return kiln_fail(err, KILN_ERR_IO, "%s: is a directory", path);
  }
  kiln_status s = KILN_OK;
  if (!S_ISREG(st.st_mode)) {
    s = read_stream(fd, path, out, err);
  } else if (st.st_size > 0) {
    void *p = mmap(NULL, (size_t)st.st_size, PROT_READ, MAP_PRIVATE, fd, 0);
    if (p == MAP_FAILED) {
      s = kiln_fail(err, KILN_ERR_IO, "%s: cannot map: %s", path, strerror(errno));
    } else {
      out->data = p;
      out->size = (size_t)st.st_size;
      out->mapped = true;
    }
  }
  close(fd);
  return s;
}

void kiln_file_unmap(kiln_mapped_file *file) {
  if (file->data) {
    if (file->mapped) {
      munmap((void *)file->data, file->size);
    } else {
      kiln_free((void *)file->data);
    }
  }
  memset(file, 0, sizeof *file);
}

kiln_status kiln_file_write_atomic(const char *path, const void *bytes, size_t size,
                                   kiln_error *err) {
  size_t plen = strlen(path);
  char *tmp = kiln_malloc(plen + 16);
  if (!tmp) return kiln_fail(err, KILN_ERR_NOMEM, "%s: out of memory", path);
  snprintf(tmp, plen + 16, "%s.tmpXXXXXX", path);
  int fd = mkstemp(tmp);
  if (fd < 0) {
    kiln_status s = kiln_fail(err, KILN_ERR_IO, "%s: cannot create: %s", path, strerror(errno));
    kiln_free(tmp);
    return s;
  }
  const unsigned char *p = bytes;
  size_t left = size;
  while (left > 0) {
    ssize_t n = write(fd, p, left);
    if (n < 0) {
      if (errno == EINTR) continue;
      goto fail;
    }
    p += n;
    left -= (size_t)n;
  }
  if (fchmod(fd, 0644) != 0 || fsync(fd) != 0) goto fail;
  if (close(fd) != 0) {
    fd = -1;
    goto fail;
  }
  fd = -1;
  if (rename(tmp, path) != 0) goto fail;
  kiln_free(tmp);
  return KILN_OK;
fail:;
  kiln_status s = kiln_fail(err, KILN_ERR_IO, "%s: write failed: %s", path, strerror(errno));
  if (fd >= 0) close(fd);
  unlink(tmp);
  kiln_free(tmp);
  return s;
}
