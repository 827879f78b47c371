/*
 * package/layer.c: image layers: a tar written by libarchive (pax where ustar
 * cannot say it, uid/gid 0, one mtime, entries sorted, parents present) and
 * gzip'd by zlib with a header that carries no time or name, into a
 * temporary file. The tar and its gzip are hashed as they stream, so a layer
 * is read and written once.
 */
#include <archive.h>
#include <archive_entry.h>
#include <errno.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

#include "base/file.h"
#include "package/package_int.h"

enum { GZ_CHUNK = 1 << 18 };

/* tar bytes -> sha256 (diff_id) -> deflate -> sha256 (digest) -> file */
typedef struct gz_sink {
  FILE *file;
  z_stream z;
  crypto_hash_sha256_state tar_hash, gz_hash;
  int64_t tar_bytes, gz_bytes;
  unsigned char out[GZ_CHUNK];
  int write_errno; /* nonzero once a write failed */
  bool z_error;
} gz_sink;

static bool gz_emit(gz_sink *s, size_t n) {
  if (n == 0) return true;
  crypto_hash_sha256_update(&s->gz_hash, s->out, n);
  s->gz_bytes += (int64_t)n;
  if (fwrite(s->out, 1, n, s->file) != n) {
    s->write_errno = errno ? errno : EIO;
    return false;
  }
  return true;
}

static bool gz_deflate(gz_sink *s, const void *buf, size_t n, int flush) {
  s->z.next_in = (Bytef *)(uintptr_t)buf;
  s->z.avail_in = (uInt)n;
  for (;;) {
    s->z.next_out = s->out;
    s->z.avail_out = GZ_CHUNK;
    int r = deflate(&s->z, flush);
    if (r == Z_STREAM_ERROR) {
      s->z_error = true;
      return false;
    }
    if (!gz_emit(s, GZ_CHUNK - s->z.avail_out)) return false;
    if (flush == Z_FINISH ? r == Z_STREAM_END : s->z.avail_out != 0) return true;
  }
}

static la_ssize_t sink_write(struct archive *a, void *ctx, const void *buf, size_t n) {
  gz_sink *s = ctx;
  crypto_hash_sha256_update(&s->tar_hash, buf, n);
  s->tar_bytes += (int64_t)n;
  if (!gz_deflate(s, buf, n, Z_NO_FLUSH)) {
    archive_set_error(a, s->write_errno ? s->write_errno : EIO, "compressing the layer failed");
    return -1;
  }
  return (la_ssize_t)n;
}

static int entry_cmp(const void *a, const void *b) {
  return strcmp(((const pkg_entry *)a)->path, ((const pkg_entry *)b)->path);
}

/* The entries plus every missing parent directory (their names kiln_malloc'd
 * into *owned, n_owned of them), sorted, duplicates refused. */
static kiln_status with_parents(const pkg_entry *entries, int32_t n, pkg_entry **out,
                                int32_t *n_out, char ***owned, int32_t *n_owned, kiln_error *err) {
  int32_t cap = n * 4 + 8, count = 0;
  pkg_entry *all = kiln_calloc((size_t)cap, sizeof *all);
  char **dirs = kiln_calloc((size_t)cap, sizeof *dirs);
  int32_t n_dirs = 0;
  if (!all || !dirs) goto nomem;
  for (int32_t i = 0; i < n; i++) all[count++] = entries[i];
  for (int32_t i = 0; i < n; i++) {
    const char *p = entries[i].path;
    for (const char *slash = strchr(p, '/'); slash; slash = strchr(slash + 1, '/')) {
      size_t len = (size_t)(slash - p);
      bool seen = false;
      for (int32_t j = 0; j < count && !seen; j++)
        seen = strlen(all[j].path) == len && strncmp(all[j].path, p, len) == 0;
      if (seen) continue;
      if (count == cap) {
        pkg_entry *grown = kiln_realloc(all, (size_t)cap * 2 * sizeof *all);
        if (grown) all = grown;
        char **grown_dirs = kiln_realloc(dirs, (size_t)cap * 2 * sizeof *dirs);
        if (grown_dirs) dirs = grown_dirs;
        if (!grown || !grown_dirs) goto nomem;
        cap *= 2;
      }
      char *dir = kiln_malloc(len + 1);
      if (!dir) goto nomem;
      memcpy(dir, p, len);
      dir[len] = '\0';
      dirs[n_dirs++] = dir;
      all[count++] = (pkg_entry){.path = dir, .mode = 0755, .is_dir = true};
    }
  }
  qsort(all, (size_t)count, sizeof *all, entry_cmp);
  *out = all;
  *n_out = count;
  *owned = dirs;
  *n_owned = n_dirs;
  for (int32_t i = 1; i < count; i++)
    if (strcmp(all[i - 1].path, all[i].path) == 0)
      return kiln_fail(err, KILN_ERR_INVALID_ARG, "two files at /%s in one layer", all[i].path);
  return KILN_OK;
nomem:
  for (int32_t i = 0; i < n_dirs; i++) kiln_free(dirs[i]);
  kiln_free(dirs);
  kiln_free(all);
  return kiln_fail(err, KILN_ERR_NOMEM, "out of memory listing layer entries");
}

static kiln_status write_entry(struct archive *a, const pkg_entry *e, int64_t mtime, kiln_error *err) {
  kiln_mapped_file f = {0};
  const void *data = e->bytes;
  size_t size = e->is_dir ? 0 : e->n_bytes;
  uint32_t mode = e->mode;
  if (e->source) {
    kiln_status s = kiln_file_map(e->source, &f, err);
    if (s != KILN_OK) return s;
    struct stat st;
    if (stat(e->source, &st) == 0 && mode == 0) mode = (st.st_mode & 0111) ? 0755 : 0644;
    data = f.data;
    size = f.size;
  }
  struct archive_entry *ae = archive_entry_new();
  if (!ae) {
    kiln_file_unmap(&f);
    return kiln_fail(err, KILN_ERR_NOMEM, "out of memory writing a layer");
  }
  archive_entry_set_pathname(ae, e->path);
  archive_entry_set_filetype(ae, e->is_dir ? AE_IFDIR : AE_IFREG);
  archive_entry_set_perm(ae, mode);
  archive_entry_set_size(ae, (la_int64_t)size);
  archive_entry_set_uid(ae, 0);
  archive_entry_set_gid(ae, 0);
  archive_entry_set_mtime(ae, (time_t)mtime, 0);
  kiln_status s = KILN_OK;
  if (archive_write_header(a, ae) != ARCHIVE_OK) {
    s = kiln_fail(err, KILN_ERR_IO, "/%s: %s", e->path, archive_error_string(a));
  } else {
    const unsigned char *p = data;
    size_t left = size;
    while (left > 0 && s == KILN_OK) {
      size_t chunk = left < (1u << 20) ? left : (1u << 20);
      la_ssize_t w = archive_write_data(a, p, chunk);
      if (w <= 0) {
        s = kiln_fail(err, KILN_ERR_IO, "/%s: %s", e->path, archive_error_string(a));
        break;
      }
      p += w;
      left -= (size_t)w;
    }
  }
  archive_entry_free(ae);
  kiln_file_unmap(&f);
  return s;
}

void pkg_sha256_hex_final(void *state, char out[65]) {
  unsigned char d[crypto_hash_sha256_BYTES];
  crypto_hash_sha256_final(state, d);
  sodium_bin2hex(out, 65, d, sizeof d);
}

/* Streams the tar of the entries through the sink. */
static kiln_status write_tar(gz_sink *sink, const pkg_entry *all, int32_t n_all, int64_t mtime,
                             const char *name, kiln_error *err) {
  struct archive *a = archive_write_new();
  kiln_status s = KILN_OK;
  if (!a || archive_write_set_format_pax_restricted(a) != ARCHIVE_OK ||
      archive_write_set_bytes_in_last_block(a, 1) != ARCHIVE_OK ||
      archive_write_open(a, sink, NULL, sink_write, NULL) != ARCHIVE_OK) {
    s = kiln_fail(err, KILN_ERR_IO, "%s: cannot start a tar: %s", name,
                  a ? archive_error_string(a) : "out of memory");
  }
  for (int32_t i = 0; i < n_all && s == KILN_OK; i++) s = write_entry(a, &all[i], mtime, err);
  if (s == KILN_OK && archive_write_close(a) != ARCHIVE_OK)
    s = kiln_fail(err, KILN_ERR_IO, "%s: %s", name, archive_error_string(a));
  if (a) archive_write_free(a);
  return s;
}

kiln_status pkg_layer_write(pkg_entry *entries, int32_t n, const pkg_layer_options *options,
                            pkg_blob *out, kiln_error *err) {
  memset(out, 0, sizeof *out);
  pkg_entry *all = NULL;
  char **owned = NULL;
  int32_t n_all = 0, n_owned = 0;
  gz_sink *sink = NULL;
  kiln_status s = with_parents(entries, n, &all, &n_all, &owned, &n_owned, err);
  if (s != KILN_OK) goto done;
  sink = kiln_calloc(1, sizeof *sink);
  size_t plen = strlen(options->tmp_prefix);
  out->tmp_path = kiln_malloc(plen + 7);
  if (!sink || !out->tmp_path) {
    s = kiln_fail(err, KILN_ERR_NOMEM, "out of memory writing a layer");
    goto done;
  }
  snprintf(out->tmp_path, plen + 7, "%sXXXXXX", options->tmp_prefix);
  int fd = mkstemp(out->tmp_path);
  if (fd < 0) {
    s = kiln_fail(err, KILN_ERR_IO, "%s: cannot create: %s", out->tmp_path, strerror(errno));
    kiln_free(out->tmp_path);
    out->tmp_path = NULL;
    goto done;
  }
  sink->file = fdopen(fd, "wb");
  if (!sink->file) {
    close(fd);
    s = kiln_fail(err, KILN_ERR_IO, "%s: %s", out->tmp_path, strerror(errno));
    goto done;
  }
  /* windowBits 15 + 16: a gzip wrapper; without deflateSetHeader zlib
   * writes mtime 0, no name, no comment. */
  if (deflateInit2(&sink->z, options->gzip_level, Z_DEFLATED, 15 + 16, 8, Z_DEFAULT_STRATEGY) != Z_OK) {
    fclose(sink->file);
    s = kiln_fail(err, KILN_ERR_NOMEM, "cannot start gzip");
    goto done;
  }
  crypto_hash_sha256_init(&sink->tar_hash);
  crypto_hash_sha256_init(&sink->gz_hash);
  s = write_tar(sink, all, n_all, options->mtime, out->tmp_path, err);
  if (s == KILN_OK && !gz_deflate(sink, NULL, 0, Z_FINISH))
    s = kiln_fail(err, KILN_ERR_IO, "%s: compressing failed", out->tmp_path);
  deflateEnd(&sink->z);
  if (fclose(sink->file) != 0 && s == KILN_OK)
    s = kiln_fail(err, KILN_ERR_IO, "%s: write failed: %s", out->tmp_path, strerror(errno));
  if (s == KILN_OK && sink->write_errno)
    s = kiln_fail(err, KILN_ERR_IO, "%s: write failed: %s", out->tmp_path, strerror(sink->write_errno));
  if (s == KILN_OK) {
    char hex[65];
    pkg_sha256_hex_final(&sink->gz_hash, hex);
    snprintf(out->digest, sizeof out->digest, "sha256:%s", hex);
    pkg_sha256_hex_final(&sink->tar_hash, hex);
    snprintf(out->diff_id, sizeof out->diff_id, "sha256:%s", hex);
    out->size = sink->gz_bytes;
    out->uncompressed_size = sink->tar_bytes;
    out->media_type = PKG_MT_LAYER_GZIP;
  }
done:
  kiln_free(sink);
  for (int32_t i = 0; i < n_owned; i++) kiln_free(owned[i]);
  kiln_free(owned);
  kiln_free(all);
  if (s != KILN_OK) pkg_blob_free(out);
  return s;
}
