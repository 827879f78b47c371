/*
 * package/registry_int.h: the HTTP side of pushing an image (libcurl): one
 * connection-reusing client per push, requests whose status the caller
 * judges, and the auth dance (GET /v2/, the WWW-Authenticate challenge,
 * basic credentials or a bearer token from the realm). Also the reading of
 * an OCI archive's blobs for the push.
 */
#ifndef KILN_PACKAGE_REGISTRY_INT_H
#define KILN_PACKAGE_REGISTRY_INT_H

#include <curl/curl.h>
#include <stdbool.h>
#include <stdint.h>

#include "kiln/package.h"

typedef struct reg_client {
  CURL *curl;
  char base[300]; /* "https://host:port" */
  char host[256];
  char repo[256];
  char tag[130];
  char auth[4200]; /* "Authorization: ..." or "" */
  const char *user, *password;
  bool insecure;
  char curl_error[CURL_ERROR_SIZE];
} reg_client;

typedef struct reg_response {
  long status;
  char location[2048];
  char challenge[1024];                /* WWW-Authenticate */
  char content_digest[KILN_DIGEST_MAX]; /* Docker-Content-Digest */
  char body[2048];                      /* the start of the body */
  size_t body_len;
} reg_response;

/* A request body: size bytes from read (curl's read callback contract). */
typedef struct reg_body {
  size_t (*read)(char *buf, size_t size, size_t n, void *ctx);
  void *ctx;
  int64_t size;
  const char *content_type;
} reg_body;

/* Parses "HOST[:PORT]/REPO[:TAG]" into c->host, c->repo, c->tag. */
kiln_status reg_parse_reference(reg_client *c, const char *reference, kiln_error *err);
kiln_status reg_open(reg_client *c, const kiln_registry_options *options, kiln_error *err);
void reg_close(reg_client *c);

/* GET /v2/ over https (or http when insecure and TLS fails), then answers
 * the challenge: basic credentials, or a bearer token for pull,push on the
 * repository. Fails, naming the challenge, when the registry wants
 * credentials that were not given or refuses them. */
kiln_status reg_login(reg_client *c, kiln_error *err);

/* One request to url (absolute, or a path appended to c->base). A status
 * the caller does not expect is its to report; only transport failures
 * (connect, TLS, timeout) fail here. accept may be NULL, body may be NULL. */
kiln_status reg_request(reg_client *c, const char *method, const char *url, const char *accept,
                        const reg_body *body, reg_response *r, kiln_error *err);

/* "HTTP 404 (BLOB_UNKNOWN: blob unknown to registry)" from a response. */
void reg_describe(const reg_response *r, char *out, size_t cap);

/* ---- Reading the archive ---- */

typedef struct oci_blob {
  char digest[KILN_DIGEST_MAX];
  int64_t size;
  unsigned char *data; /* the bytes for blobs up to OCI_SMALL_BLOB, else NULL */
} oci_blob;

#define OCI_SMALL_BLOB (4 << 20)
#define OCI_MAX_BLOBS 1024

typedef struct oci_archive {
  unsigned char *index_json;
  size_t index_len;
  oci_blob *blobs;
  int32_t n_blobs;
} oci_archive;

/* Lists the archive's blobs (checking their names), keeps index.json and
 * the small blobs (JSON) in memory, each checked against its digest. */
kiln_status oci_archive_scan(const char *path, oci_archive *out, kiln_error *err);
void oci_archive_free(oci_archive *a);
const oci_blob *oci_archive_find(const oci_archive *a, const char *digest);

/* Calls fn, in archive order, for every blob i with wanted[i], with a body
 * that reads its bytes from the archive; fn must read them all. */
typedef kiln_status (*oci_blob_fn)(const oci_blob *blob, const reg_body *body, void *ctx,
                                   kiln_error *err);
kiln_status oci_archive_stream(const char *path, const oci_archive *a, const bool *wanted,
                               oci_blob_fn fn, void *ctx, kiln_error *err);

#endif
