/*
 * package/blob.c: content-addressed blobs (canonical JSON in memory, layers
 * in temporary files) and the output archive: a tar of an OCI image layout
 * (oci-layout, index.json, blobs/sha256/<hex>) plus Docker's manifest.json,
 * entries sorted, one mtime, uid/gid 0, written to a temporary file and
 * renamed into place.
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

#include "package/package_int.h"

void pkg_blob_free(pkg_blob *blob) {
  if (!blob) return;
  if (blob->tmp_path) unlink(blob->tmp_path);
  kiln_free(blob->tmp_path);
  kiln_free(blob->data);
  memset(blob, 0, sizeof *blob);
}

void pkg_digest(const void *bytes, size_t n, char out[KILN_DIGEST_MAX]) {
  crypto_hash_sha256_state st;
  crypto_hash_sha256_init(&st);
  crypto_hash_sha256_update(&st, bytes, n);
  char hex[65];
  pkg_sha256_hex_final(&st, hex);
  snprintf(out, KILN_DIGEST_MAX, "sha256:%s", hex);
}

kiln_status pkg_json_blob(json_t *value, const char *media_type, pkg_blob *out, kiln_error *err) {
  memset(out, 0, sizeof *out);
  char *text = value ? json_dumps(value, JSON_COMPACT | JSON_SORT_KEYS) : NULL;
  json_decref(value);
  if (!text) return kiln_fail(err, KILN_ERR_NOMEM, "out of memory writing JSON");
  size_t n = strlen(text);
  out->data = kiln_malloc(n ? n : 1);
  if (!out->data) {
    free(text);
    return kiln_fail(err, KILN_ERR_NOMEM, "out of memory writing JSON");
  }
  memcpy(out->data, text, n);
  free(text);
  out->size = (int64_t)n;
  out->media_type = media_type;
  pkg_digest(out->data, n, out->digest);
  return KILN_OK;
}

json_t *pkg_descriptor(const pkg_blob *blob) {
  return json_pack("{s:s, s:s, s:I}", "mediaType", blob->media_type, "digest", blob->digest, "size",
                   (json_int_t)blob->size);
}

/* ---- The archive ---- */

typedef struct out_entry {
  char path[96];
  const pkg_blob *blob; /* NULL: a directory, or bytes below */
  const void *bytes;
  size_t n_bytes;
  bool is_dir;
} out_entry;

static int out_cmp(const void *a, const void *b) {
  return strcmp(((const out_entry *)a)->path, ((const out_entry *)b)->path);
}

static kiln_status copy_file(struct archive *a, const char *path, int64_t size, kiln_error *err) {
  FILE *f = fopen(path, "rb");
  if (!f) return kiln_fail(err, KILN_ERR_IO, "%s: %s", path, strerror(errno));
  unsigned char *buf = kiln_malloc(1 << 20);
  kiln_status s = KILN_OK;
  if (!buf) s = kiln_fail(err, KILN_ERR_NOMEM, "out of memory copying %s", path);
  int64_t left = size;
  while (s == KILN_OK && left > 0) {
    size_t want = left < (1 << 20) ? (size_t)left : (1u << 20);
    size_t got = fread(buf, 1, want, f);
    if (got == 0) {
      s = kiln_fail(err, KILN_ERR_IO, "%s: shorter than written", path);
      break;
    }
    if (archive_write_data(a, buf, got) != (la_ssize_t)got)
      s = kiln_fail(err, KILN_ERR_IO, "writing the archive: %s", archive_error_string(a));
    left -= (int64_t)got;
  }
  kiln_free(buf);
  fclose(f);
  return s;
}

static kiln_status write_out_entry(struct archive *a, const out_entry *e, int64_t mtime,
                                   kiln_error *err) {
  struct archive_entry *ae = archive_entry_new();
  if (!ae) return kiln_fail(err, KILN_ERR_NOMEM, "out of memory writing the archive");
  int64_t size = e->is_dir ? 0 : e->blob ? e->blob->size : (int64_t)e->n_bytes;
  archive_entry_set_pathname(ae, e->path);
  archive_entry_set_filetype(ae, e->is_dir ? AE_IFDIR : AE_IFREG);
  archive_entry_set_perm(ae, e->is_dir ? 0755 : 0644);
  archive_entry_set_size(ae, (la_int64_t)size);
  archive_entry_set_uid(ae, 0);
  archive_entry_set_gid(ae, 0);
  archive_entry_set_mtime(ae, (time_t)mtime, 0);
  kiln_status s = KILN_OK;
  if (archive_write_header(a, ae) != ARCHIVE_OK) {
    s = kiln_fail(err, KILN_ERR_IO, "%s: %s", e->path, archive_error_string(a));
  } else if (e->blob && e->blob->tmp_path) {
    s = copy_file(a, e->blob->tmp_path, size, err);
  } else if (size > 0) {
    const void *bytes = e->blob ? e->blob->data : e->bytes;
    if (archive_write_data(a, bytes, (size_t)size) != (la_ssize_t)size)
      s = kiln_fail(err, KILN_ERR_IO, "%s: %s", e->path, archive_error_string(a));
  }
  archive_entry_free(ae);
  return s;
}

kiln_status pkg_archive_write(const char *out_path, const pkg_blob *const *blobs, int32_t n_blobs,
                              const pkg_blob *index_json, const pkg_blob *docker_manifest,
                              int64_t mtime, int64_t *archive_bytes, kiln_error *err) {
  static const char layout[] = "{\"imageLayoutVersion\":\"1.0.0\"}";
  out_entry *entries = kiln_calloc((size_t)n_blobs + 5, sizeof *entries);
  size_t plen = strlen(out_path);
  char *tmp = kiln_malloc(plen + 16);
  struct archive *a = NULL;
  kiln_status s = KILN_OK;
  int32_t n = 0;
  if (!entries || !tmp) {
    s = kiln_fail(err, KILN_ERR_NOMEM, "%s: out of memory", out_path);
    goto done;
  }
  entries[n++] = (out_entry){.path = "blobs", .is_dir = true};
  entries[n++] = (out_entry){.path = "blobs/sha256", .is_dir = true};
  entries[n++] = (out_entry){.path = "oci-layout", .bytes = layout, .n_bytes = sizeof layout - 1};
  entries[n++] = (out_entry){.path = "index.json", .blob = index_json};
  if (docker_manifest) entries[n++] = (out_entry){.path = "manifest.json", .blob = docker_manifest};
  for (int32_t i = 0; i < n_blobs; i++) {
    bool dup = false;
    for (int32_t j = 0; j < i && !dup; j++) dup = strcmp(blobs[i]->digest, blobs[j]->digest) == 0;
    if (dup) continue; /* the same layer in two images */
    entries[n].blob = blobs[i];
    snprintf(entries[n].path, sizeof entries[n].path, "blobs/sha256/%s", blobs[i]->digest + 7);
    n++;
  }
  qsort(entries, (size_t)n, sizeof *entries, out_cmp);

  snprintf(tmp, plen + 16, "%s.tmpXXXXXX", out_path);
  int fd = mkstemp(tmp);
  if (fd < 0) {
    s = kiln_fail(err, KILN_ERR_IO, "%s: cannot create: %s", out_path, strerror(errno));
    tmp[0] = '\0';
    goto done;
  }
  a = archive_write_new();
  if (!a || archive_write_set_format_pax_restricted(a) != ARCHIVE_OK ||
      archive_write_set_bytes_in_last_block(a, 1) != ARCHIVE_OK ||
      archive_write_open_fd(a, fd) != ARCHIVE_OK) {
    s = kiln_fail(err, KILN_ERR_IO, "%s: cannot start the archive: %s", out_path,
                  a ? archive_error_string(a) : "out of memory");
  }
  for (int32_t i = 0; i < n && s == KILN_OK; i++) s = write_out_entry(a, &entries[i], mtime, err);
  if (s == KILN_OK && archive_write_close(a) != ARCHIVE_OK)
    s = kiln_fail(err, KILN_ERR_IO, "%s: %s", out_path, archive_error_string(a));
  if (a) archive_write_free(a);
  struct stat st = {0};
  if (s == KILN_OK && (fchmod(fd, 0644) != 0 || fsync(fd) != 0 || fstat(fd, &st) != 0))
    s = kiln_fail(err, KILN_ERR_IO, "%s: write failed: %s", out_path, strerror(errno));
  if (close(fd) != 0 && s == KILN_OK)
    s = kiln_fail(err, KILN_ERR_IO, "%s: write failed: %s", out_path, strerror(errno));
  if (s == KILN_OK && rename(tmp, out_path) != 0)
    s = kiln_fail(err, KILN_ERR_IO, "%s: cannot rename into place: %s", out_path, strerror(errno));
  if (s == KILN_OK) {
    *archive_bytes = (int64_t)st.st_size;
    tmp[0] = '\0';
  }
done:
  if (tmp && tmp[0]) unlink(tmp);
  kiln_free(tmp);
  kiln_free(entries);
  return s;
}
