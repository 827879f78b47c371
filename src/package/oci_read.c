/*
 * package/oci_read.c: reading an OCI archive (a tar of an image layout) for
 * a push, with libarchive: a first pass lists the blobs and keeps index.json
 * and the small (JSON) blobs, checked against their digests; a second pass
 * streams the large ones (layers) to the registry without unpacking them.
 */
#include <archive.h>
#include <archive_entry.h>
#include <stdio.h>
#include <string.h>

#include "package/package_int.h"
#include "package/registry_int.h"

void oci_archive_free(oci_archive *a) {
  for (int32_t i = 0; i < a->n_blobs; i++) kiln_free(a->blobs[i].data);
  kiln_free(a->blobs);
  kiln_free(a->index_json);
  memset(a, 0, sizeof *a);
}

const oci_blob *oci_archive_find(const oci_archive *a, const char *digest) {
  for (int32_t i = 0; i < a->n_blobs; i++)
    if (strcmp(a->blobs[i].digest, digest) == 0) return &a->blobs[i];
  return NULL;
}

/* "blobs/sha256/<64 hex>" (a leading "./" allowed) -> "sha256:<hex>". */
static bool blob_name(const char *path, char digest[KILN_DIGEST_MAX]) {
  if (strncmp(path, "./", 2) == 0) path += 2;
  if (strncmp(path, "blobs/sha256/", 13) != 0) return false;
  const char *hex = path + 13;
  if (strlen(hex) != 64 || strspn(hex, "0123456789abcdef") != 64) return false;
  snprintf(digest, KILN_DIGEST_MAX, "sha256:%s", hex);
  return true;
}

static struct archive *open_tar(const char *path, kiln_error *err) {
  struct archive *ar = archive_read_new();
  if (!ar) {
    kiln_fail(err, KILN_ERR_NOMEM, "out of memory");
    return NULL;
  }
  archive_read_support_format_tar(ar);
  if (archive_read_open_filename(ar, path, 1 << 16) != ARCHIVE_OK) {
    kiln_fail(err, KILN_ERR_IO, "%s: %s", path, archive_error_string(ar));
    archive_read_free(ar);
    return NULL;
  }
  return ar;
}

static kiln_status read_all(struct archive *ar, const char *path, const char *name, int64_t size,
                            unsigned char **out, kiln_error *err) {
  unsigned char *buf = kiln_malloc(size ? (size_t)size : 1);
  if (!buf) return kiln_fail(err, KILN_ERR_NOMEM, "%s: out of memory reading %s", path, name);
  int64_t got = 0;
  while (got < size) {
    la_ssize_t n = archive_read_data(ar, buf + got, (size_t)(size - got));
    if (n <= 0) {
      kiln_free(buf);
      return kiln_fail(err, KILN_ERR_FORMAT, "%s: %s is truncated%s%s", path, name, n < 0 ? ": " : "",
                       n < 0 ? archive_error_string(ar) : "");
    }
    got += n;
  }
  *out = buf;
  return KILN_OK;
}

kiln_status oci_archive_scan(const char *path, oci_archive *out, kiln_error *err) {
  memset(out, 0, sizeof *out);
  struct archive *ar = open_tar(path, err);
  if (!ar) return err ? err->status : KILN_ERR_IO;
  kiln_status s = KILN_OK;
  int32_t cap = 0;
  struct archive_entry *e;
  int r;
  while (s == KILN_OK && (r = archive_read_next_header(ar, &e)) == ARCHIVE_OK) {
    if (archive_entry_filetype(e) != AE_IFREG) continue;
    const char *name = archive_entry_pathname(e);
    int64_t size = archive_entry_size(e);
    char digest[KILN_DIGEST_MAX];
    if (name && (strcmp(name, "index.json") == 0 || strcmp(name, "./index.json") == 0)) {
      if (size > OCI_SMALL_BLOB) {
        s = kiln_fail(err, KILN_ERR_LIMIT, "%s: index.json of %lld bytes", path, (long long)size);
        break;
      }
      kiln_free(out->index_json);
      out->index_json = NULL;
      s = read_all(ar, path, "index.json", size, &out->index_json, err);
      out->index_len = (size_t)size;
      continue;
    }
    if (!name || !blob_name(name, digest)) continue;
    if (oci_archive_find(out, digest)) continue;
    if (out->n_blobs == OCI_MAX_BLOBS) {
      s = kiln_fail(err, KILN_ERR_LIMIT, "%s: more than %d blobs", path, OCI_MAX_BLOBS);
      break;
    }
    if (out->n_blobs == cap) {
      int32_t grown_cap = cap ? cap * 2 : 16;
      oci_blob *grown = kiln_realloc(out->blobs, (size_t)grown_cap * sizeof *grown);
      if (!grown) {
        s = kiln_fail(err, KILN_ERR_NOMEM, "out of memory");
        break;
      }
      out->blobs = grown;
      cap = grown_cap;
    }
    oci_blob *b = &out->blobs[out->n_blobs++];
    memset(b, 0, sizeof *b);
    memcpy(b->digest, digest, sizeof digest);
    b->size = size;
    if (size > OCI_SMALL_BLOB) continue;
    if ((s = read_all(ar, path, name, size, &b->data, err)) != KILN_OK) break;
    char actual[KILN_DIGEST_MAX];
    pkg_digest(b->data, (size_t)size, actual);
    if (strcmp(actual, digest) != 0)
      s = kiln_fail(err, KILN_ERR_FORMAT, "%s: %s holds bytes whose digest is %s", path, name, actual);
  }
  if (s == KILN_OK && r != ARCHIVE_EOF)
    s = kiln_fail(err, KILN_ERR_FORMAT, "%s: not a readable tar: %s", path, archive_error_string(ar));
  if (s == KILN_OK && !out->index_json)
    s = kiln_fail(err, KILN_ERR_FORMAT, "%s: no index.json: not an OCI archive", path);
  archive_read_free(ar);
  if (s != KILN_OK) oci_archive_free(out);
  return s;
}

typedef struct blob_reader {
  struct archive *ar;
  int64_t left;
  bool failed;
} blob_reader;

static size_t read_blob(char *buf, size_t size, size_t n, void *ctx) {
  blob_reader *br = ctx;
  size_t want = size * n;
  if ((int64_t)want > br->left) want = (size_t)br->left;
  if (want == 0) return 0;
  la_ssize_t got = archive_read_data(br->ar, buf, want);
  if (got <= 0) {
    br->failed = true;
    return CURL_READFUNC_ABORT;
  }
  br->left -= got;
  return (size_t)got;
}

kiln_status oci_archive_stream(const char *path, const oci_archive *a, const bool *wanted,
                               oci_blob_fn fn, void *ctx, kiln_error *err) {
  struct archive *ar = open_tar(path, err);
  if (!ar) return err ? err->status : KILN_ERR_IO;
  kiln_status s = KILN_OK;
  struct archive_entry *e;
  int r;
  bool done[OCI_MAX_BLOBS] = {false};
  while (s == KILN_OK && (r = archive_read_next_header(ar, &e)) == ARCHIVE_OK) {
    char digest[KILN_DIGEST_MAX];
    const char *name = archive_entry_pathname(e);
    if (archive_entry_filetype(e) != AE_IFREG || !name || !blob_name(name, digest)) continue;
    const oci_blob *b = oci_archive_find(a, digest);
    if (!b) continue;
    int32_t index = (int32_t)(b - a->blobs);
    if (!wanted[index] || done[index]) continue;
    done[index] = true;
    blob_reader br = {ar, b->size, false};
    reg_body body = {read_blob, &br, b->size, "application/octet-stream"};
    s = fn(b, &body, ctx, err);
    if (s == KILN_OK && (br.failed || br.left != 0))
      s = kiln_fail(err, KILN_ERR_FORMAT, "%s: %s could not be read whole", path, name);
  }
  if (s == KILN_OK && r != ARCHIVE_EOF)
    s = kiln_fail(err, KILN_ERR_FORMAT, "%s: %s", path, archive_error_string(ar));
  archive_read_free(ar);
  return s;
}
