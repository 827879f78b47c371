/*
 * studio/blob.c: the content-addressed blob store. A blob's name is the
 * SHA-256 of its bytes: DATA/blobs/ab/cdef... (the first two hex digits as
 * a folder). Writing goes to DATA/tmp, is fsynced, renamed to its address
 * (when that blob exists already the copy is dropped: deduplication) and
 * the folders are fsynced, so a blob that was committed survives a crash.
 * Blobs are immutable; nothing here deletes one.
 */
#define _GNU_SOURCE /* syncfs */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "studio/studio_int.h"

bool studio_is_hash(const char *s) {
  if (!s || strlen(s) != STUDIO_HASH_HEX) return false;
  for (const char *p = s; *p; p++)
    if (!((*p >= '0' && *p <= '9') || (*p >= 'a' && *p <= 'f'))) return false;
  return true;
}

void studio_blob_path(const char *data_dir, const char *hash, char *out, size_t n) {
  snprintf(out, n, "%s/blobs/%.2s/%s", data_dir, hash, hash + 2);
}

kiln_status studio_fsync_dir(const char *dir, kiln_error *err) {
  int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) return kiln_fail(err, KILN_ERR_IO, "%s: cannot open: %s", dir, strerror(errno));
  int rc = fsync(fd);
  int e = errno;
  close(fd);
  if (rc != 0) return kiln_fail(err, KILN_ERR_IO, "%s: fsync: %s", dir, strerror(e));
  return KILN_OK;
}

kiln_status studio_mkdirs(const char *dir, kiln_error *err) {
  char path[STUDIO_PATH_MAX];
  size_t n = strlen(dir);
  if (n == 0 || n >= sizeof path) return kiln_fail(err, KILN_ERR_INVALID_ARG, "bad directory '%s'", dir);
  memcpy(path, dir, n + 1);
  for (size_t i = 1; i <= n; i++) {
    if (path[i] != '/' && path[i] != '\0') continue;
    char c = path[i];
    path[i] = '\0';
    if (mkdir(path, 0755) == 0) {
      /* make the new entry durable in its parent */
      char parent[STUDIO_PATH_MAX];
      snprintf(parent, sizeof parent, "%s", path);
      char *slash = strrchr(parent, '/');
      if (slash == parent) parent[1] = '\0';
      else if (slash) *slash = '\0';
      else snprintf(parent, sizeof parent, ".");
      kiln_status s = studio_fsync_dir(parent, err);
      if (s != KILN_OK) return s;
    } else if (errno != EEXIST) {
      return kiln_fail(err, KILN_ERR_IO, "%s: cannot create: %s", path, strerror(errno));
    }
    path[i] = c;
  }
  struct stat sb;
  if (stat(dir, &sb) != 0 || !S_ISDIR(sb.st_mode))
    return kiln_fail(err, KILN_ERR_IO, "%s: not a directory", dir);
  return KILN_OK;
}

void studio_rmtree(const char *path) {
  struct stat sb;
  if (lstat(path, &sb) != 0) return;
  if (S_ISDIR(sb.st_mode)) {
    DIR *d = opendir(path);
    if (d) {
      struct dirent *e;
      while ((e = readdir(d)) != NULL) {
        if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..")) continue;
        char sub[STUDIO_PATH_MAX];
        if ((size_t)snprintf(sub, sizeof sub, "%s/%s", path, e->d_name) >= sizeof sub) continue;
        studio_rmtree(sub);
      }
      closedir(d);
    }
    rmdir(path);
  } else {
    unlink(path);
  }
}

kiln_status studio_blob_begin(const char *data_dir, studio_blob_writer *w, kiln_error *err) {
  memset(w, 0, sizeof *w);
  w->fd = -1;
  snprintf(w->tmp, sizeof w->tmp, "%s/tmp/blob.XXXXXX", data_dir);
  w->fd = mkstemp(w->tmp);
  if (w->fd < 0)
    return kiln_fail(err, KILN_ERR_IO, "%s: cannot create a temporary file: %s", w->tmp,
                     strerror(errno));
  crypto_hash_sha256_init(&w->sha);
  return KILN_OK;
}

kiln_status studio_blob_write(studio_blob_writer *w, const void *data, size_t n, kiln_error *err) {
  const unsigned char *p = data;
  crypto_hash_sha256_update(&w->sha, p, n);
  w->size += n;
  while (n > 0) {
    ssize_t k = write(w->fd, p, n);
    if (k < 0 && errno == EINTR) continue;
    if (k <= 0) return kiln_fail(err, KILN_ERR_IO, "%s: write: %s", w->tmp, strerror(errno));
    p += k;
    n -= (size_t)k;
  }
  return KILN_OK;
}

void studio_blob_abort(studio_blob_writer *w) {
  if (w->fd >= 0) {
    close(w->fd);
    unlink(w->tmp);
  }
  w->fd = -1;
}

kiln_status studio_blob_commit(const char *data_dir, studio_blob_writer *w,
                               char hash[STUDIO_HASH_HEX + 1], uint64_t *size, kiln_error *err) {
  return studio_blob_commit_deferred(data_dir, w, hash, size, false, err);
}

kiln_status studio_blob_sync_all(const char *data_dir, kiln_error *err) {
  int fd = open(data_dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) return kiln_fail(err, KILN_ERR_IO, "%s: cannot open: %s", data_dir, strerror(errno));
  int rc = syncfs(fd);
  int e = errno;
  close(fd);
  if (rc != 0) return kiln_fail(err, KILN_ERR_IO, "%s: syncfs: %s", data_dir, strerror(e));
  return KILN_OK;
}

kiln_status studio_blob_commit_deferred(const char *data_dir, studio_blob_writer *w,
                                        char hash[STUDIO_HASH_HEX + 1], uint64_t *size,
                                        bool defer_dir_sync, kiln_error *err) {
  unsigned char digest[crypto_hash_sha256_BYTES];
  crypto_hash_sha256_final(&w->sha, digest);
  sodium_bin2hex(hash, STUDIO_HASH_HEX + 1, digest, sizeof digest);
  if (size) *size = w->size;
  if (fsync(w->fd) != 0) {
    kiln_fail(err, KILN_ERR_IO, "%s: fsync: %s", w->tmp, strerror(errno));
    studio_blob_abort(w);
    return KILN_ERR_IO;
  }
  close(w->fd);
  w->fd = -1;
  char dir[STUDIO_PATH_MAX], path[STUDIO_PATH_MAX];
  snprintf(dir, sizeof dir, "%s/blobs/%.2s", data_dir, hash);
  studio_blob_path(data_dir, hash, path, sizeof path);
  kiln_status s = studio_mkdirs(dir, err);
  struct stat sb;
  if (s == KILN_OK && stat(path, &sb) == 0 && (uint64_t)sb.st_size == w->size) {
    unlink(w->tmp); /* the same content is stored already */
    return KILN_OK;
  }
  if (s == KILN_OK && (chmod(w->tmp, 0644) != 0 || rename(w->tmp, path) != 0))
    s = kiln_fail(err, KILN_ERR_IO, "%s: cannot store blob: %s", path, strerror(errno));
  if (s == KILN_OK && !defer_dir_sync) s = studio_fsync_dir(dir, err);
  if (s != KILN_OK) unlink(w->tmp);
  return s;
}

kiln_status studio_blob_put(const char *data_dir, const void *data, size_t n,
                            char hash[STUDIO_HASH_HEX + 1], kiln_error *err) {
  studio_blob_writer w;
  kiln_status s = studio_blob_begin(data_dir, &w, err);
  if (s == KILN_OK) s = studio_blob_write(&w, data, n, err);
  if (s == KILN_OK) return studio_blob_commit(data_dir, &w, hash, NULL, err);
  studio_blob_abort(&w);
  return s;
}

kiln_status studio_blob_put_file(const char *data_dir, const char *path,
                                 char hash[STUDIO_HASH_HEX + 1], uint64_t *size, kiln_error *err) {
  return studio_blob_put_file_deferred(data_dir, path, hash, size, false, err);
}

kiln_status studio_blob_put_file_deferred(const char *data_dir, const char *path,
                                          char hash[STUDIO_HASH_HEX + 1], uint64_t *size,
                                          bool defer_dir_sync, kiln_error *err) {
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) return kiln_fail(err, KILN_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
  studio_blob_writer w;
  kiln_status s = studio_blob_begin(data_dir, &w, err);
  unsigned char buf[65536];
  while (s == KILN_OK) {
    ssize_t k = read(fd, buf, sizeof buf);
    if (k < 0 && errno == EINTR) continue;
    if (k < 0) s = kiln_fail(err, KILN_ERR_IO, "%s: read: %s", path, strerror(errno));
    if (k <= 0) break;
    s = studio_blob_write(&w, buf, (size_t)k, err);
  }
  close(fd);
  if (s == KILN_OK) return studio_blob_commit_deferred(data_dir, &w, hash, size, defer_dir_sync, err);
  studio_blob_abort(&w);
  return s;
}

kiln_status studio_blob_verify(const char *data_dir, const char *hash, kiln_error *err) {
  if (!studio_is_hash(hash)) return kiln_fail(err, KILN_ERR_INVALID_ARG, "'%s' is not a blob hash", hash);
  char path[STUDIO_PATH_MAX];
  studio_blob_path(data_dir, hash, path, sizeof path);
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) return kiln_fail(err, KILN_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
  crypto_hash_sha256_state sha;
  crypto_hash_sha256_init(&sha);
  unsigned char buf[65536];
  kiln_status s = KILN_OK;
  for (;;) {
    ssize_t k = read(fd, buf, sizeof buf);
    if (k < 0 && errno == EINTR) continue;
    if (k < 0) s = kiln_fail(err, KILN_ERR_IO, "%s: read: %s", path, strerror(errno));
    if (k <= 0) break;
    crypto_hash_sha256_update(&sha, buf, (unsigned long long)k);
  }
  close(fd);
  if (s != KILN_OK) return s;
  unsigned char digest[crypto_hash_sha256_BYTES];
  char hex[STUDIO_HASH_HEX + 1];
  crypto_hash_sha256_final(&sha, digest);
  sodium_bin2hex(hex, sizeof hex, digest, sizeof digest);
  if (strcmp(hex, hash) != 0)
    return kiln_fail(err, KILN_ERR_FORMAT, "%s: content hashes to %s, not to its name", path, hex);
  return KILN_OK;
}
