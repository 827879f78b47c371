/*
 * package/package_int.h: the pieces of src/package shared between its
 * files: blobs (content-addressed bytes, in memory or in a temporary file),
 * layer tars, canonical JSON, and the OCI media types.
 */
#ifndef KILN_PACKAGE_INT_H
#define KILN_PACKAGE_INT_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "kiln/package.h"

#define PKG_MT_INDEX "application/vnd.oci.image.index.v1+json"
#define PKG_MT_MANIFEST "application/vnd.oci.image.manifest.v1+json"
#define PKG_MT_CONFIG "application/vnd.oci.image.config.v1+json"
#define PKG_MT_LAYER_GZIP "application/vnd.oci.image.layer.v1.tar+gzip"

/* Content-addressed bytes: JSON in memory, or a layer in a temporary file. */
typedef struct pkg_blob {
  char digest[KILN_DIGEST_MAX]; /* "sha256:<hex>" of the stored bytes */
  int64_t size;
  const char *media_type;
  unsigned char *data; /* kiln_malloc'd, or NULL when in tmp_path */
  char *tmp_path;      /* kiln_malloc'd; removed by pkg_blob_free */
  char diff_id[KILN_DIGEST_MAX]; /* layers: digest of the uncompressed tar */
  int64_t uncompressed_size;
} pkg_blob;

void pkg_blob_free(pkg_blob *blob);

/* "sha256:<hex>" of bytes. */
void pkg_digest(const void *bytes, size_t n, char out[KILN_DIGEST_MAX]);
/* Lowercase hex of a SHA-256 state's digest. */
void pkg_sha256_hex_final(void *state, char out[65]);

/* Canonical JSON (compact, keys sorted) as a blob; takes the reference. */
kiln_status pkg_json_blob(json_t *value, const char *media_type, pkg_blob *out, kiln_error *err);
/* A descriptor {mediaType, digest, size} of a blob (new reference). */
json_t *pkg_descriptor(const pkg_blob *blob);

/* One file or directory of a layer. path is relative to the root ("usr/bin/kiln"). */
typedef struct pkg_entry {
  char *path;         /* kiln_malloc'd */
  const char *source; /* a file to copy, or NULL */
  const void *bytes;  /* or inline bytes (not owned) */
  size_t n_bytes;
  uint32_t mode; /* permission bits, sticky included */
  bool is_dir;
} pkg_entry;

typedef struct pkg_layer_options {
  int64_t mtime;
  int32_t gzip_level;
  const char *tmp_prefix; /* the temporary file is tmp_prefix + "XXXXXX" */
} pkg_layer_options;

/* Writes a gzip'd tar of the entries (parents added as 0755 directories,
 * sorted by path, uid/gid 0, every mtime the same) into a temporary file;
 * out->digest/size are of the gzip bytes, diff_id of the tar. The entries
 * array is sorted in place. */
kiln_status pkg_layer_write(pkg_entry *entries, int32_t n, const pkg_layer_options *options,
                            pkg_blob *out, kiln_error *err);

/* The output archive: oci-layout, index.json, manifest.json, blobs. */
kiln_status pkg_archive_write(const char *out_path, const pkg_blob *const *blobs, int32_t n_blobs,
                              const pkg_blob *index_json, const pkg_blob *docker_manifest,
                              int64_t mtime, int64_t *archive_bytes, kiln_error *err);

#endif
