/*
 * package/registry.c: kiln_package_push: the OCI distribution API's push,
 * in the order a registry can check: every blob a manifest names first
 * (HEAD: already there? else POST an upload session and PUT the bytes with
 * their digest, monolithically), then the per-architecture manifests by
 * digest, then the image (manifest or index) under its tag, read back
 * with HEAD to confirm the digest the registry serves.
 */
#include <jansson.h>
#include <stdio.h>
#include <string.h>

#include "package/package_int.h"
#include "package/registry_int.h"

typedef struct push_state {
  reg_client c;
  oci_archive arc;
  const char *path;
  const oci_blob *top;
  char top_type[128];
  const oci_blob *manifests[KILN_PACKAGE_MAX_ARCHES * 4];
  char manifest_types[KILN_PACKAGE_MAX_ARCHES * 4][128];
  int32_t n_manifests;
  bool wanted[OCI_MAX_BLOBS];
  kiln_push_result *res;
} push_state;

typedef struct mem_reader {
  const unsigned char *p;
  size_t left;
} mem_reader;

static size_t read_mem(char *buf, size_t size, size_t n, void *ctx) {
  mem_reader *m = ctx;
  size_t k = size * n < m->left ? size * n : m->left;
  memcpy(buf, m->p, k);
  m->p += k;
  m->left -= k;
  return k;
}

static kiln_status refused(push_state *p, const char *what, const reg_response *r, kiln_error *err) {
  char why[300];
  reg_describe(r, why, sizeof why);
  if (r->status == 401 || r->status == 403)
    return kiln_fail(err, KILN_ERR_INVALID_ARG, "registry %s: %s: %s: no push access to %s with these credentials",
                     p->c.host, what, why, p->c.repo);
  return kiln_fail(err, KILN_ERR_IO, "registry %s: %s: %s", p->c.host, what, why);
}

/* The image named by index.json, and the manifests under it. */
static kiln_status read_graph(push_state *p, kiln_error *err) {
  json_error_t je;
  json_t *index = json_loadb((const char *)p->arc.index_json, p->arc.index_len, 0, &je);
  json_t *ms = json_object_get(index, "manifests");
  kiln_status s = KILN_OK;
  if (!json_is_array(ms) || json_array_size(ms) != 1) {
    s = kiln_fail(err, KILN_ERR_FORMAT, "%s: index.json must name exactly one image (it names %zu)", p->path,
                  json_is_array(ms) ? json_array_size(ms) : (size_t)0);
    goto done;
  }
  const char *digest = json_string_value(json_object_get(json_array_get(ms, 0), "digest"));
  const char *type = json_string_value(json_object_get(json_array_get(ms, 0), "mediaType"));
  p->top = digest ? oci_archive_find(&p->arc, digest) : NULL;
  if (!p->top || !p->top->data || !type) {
    s = kiln_fail(err, KILN_ERR_FORMAT, "%s: index.json names %s, which the archive lacks", p->path,
                  digest ? digest : "no digest");
    goto done;
  }
  snprintf(p->top_type, sizeof p->top_type, "%s", type);
  if (strcmp(type, PKG_MT_INDEX) != 0) {
    p->manifests[0] = p->top;
    snprintf(p->manifest_types[0], sizeof p->manifest_types[0], "%s", type);
    p->n_manifests = 1;
    goto done;
  }
  json_t *top = json_loadb((const char *)p->top->data, (size_t)p->top->size, 0, &je);
  json_t *children = json_object_get(top, "manifests");
  size_t i;
  json_t *d;
  json_array_foreach(children, i, d) {
    const char *cd = json_string_value(json_object_get(d, "digest"));
    const char *ct = json_string_value(json_object_get(d, "mediaType"));
    const oci_blob *b = cd ? oci_archive_find(&p->arc, cd) : NULL;
    if (!b || !b->data || !ct || p->n_manifests == (int32_t)(sizeof p->manifests / sizeof p->manifests[0])) {
      s = kiln_fail(err, KILN_ERR_FORMAT, "%s: the image index names %s, which the archive lacks", p->path,
                    cd ? cd : "no digest");
      break;
    }
    p->manifests[p->n_manifests] = b;
    snprintf(p->manifest_types[p->n_manifests], sizeof p->manifest_types[0], "%s", ct);
    p->n_manifests++;
  }
  if (s == KILN_OK && p->n_manifests == 0)
    s = kiln_fail(err, KILN_ERR_FORMAT, "%s: the image index lists no manifests", p->path);
  json_decref(top);
done:
  json_decref(index);
  return s;
}

static kiln_status want_blob(push_state *p, const oci_blob *manifest, json_t *desc, kiln_error *err) {
  const char *digest = json_string_value(json_object_get(desc, "digest"));
  const oci_blob *b = digest ? oci_archive_find(&p->arc, digest) : NULL;
  if (!b)
    return kiln_fail(err, KILN_ERR_FORMAT, "%s: manifest %s names blob %s, which the archive lacks", p->path,
                     manifest->digest, digest ? digest : "(no digest)");
  p->wanted[b - p->arc.blobs] = true;
  return KILN_OK;
}

/* Marks the configs and layers of every manifest. */
static kiln_status want_blobs(push_state *p, kiln_error *err) {
  kiln_status s = KILN_OK;
  for (int32_t m = 0; m < p->n_manifests && s == KILN_OK; m++) {
    const oci_blob *mb = p->manifests[m];
    json_t *doc = json_loadb((const char *)mb->data, (size_t)mb->size, 0, NULL);
    json_t *layers = json_object_get(doc, "layers");
    if (!json_is_object(json_object_get(doc, "config")) || !json_is_array(layers)) {
      s = kiln_fail(err, KILN_ERR_FORMAT, "%s: manifest %s has no config or layers", p->path, mb->digest);
    } else {
      s = want_blob(p, mb, json_object_get(doc, "config"), err);
      size_t i;
      json_t *l;
      json_array_foreach(layers, i, l) {
        if (s == KILN_OK) s = want_blob(p, mb, l, err);
      }
    }
    json_decref(doc);
  }
  return s;
}

static kiln_status upload(push_state *p, const oci_blob *b, const reg_body *body, kiln_error *err) {
  char path[600], what[700];
  snprintf(path, sizeof path, "/v2/%s/blobs/uploads/", p->c.repo);
  reg_response r;
  kiln_status s = reg_request(&p->c, "POST", path, NULL, NULL, &r, err);
  if (s != KILN_OK) return s;
  snprintf(what, sizeof what, "starting the upload of %s", b->digest);
  if (r.status != 202 || !r.location[0]) return refused(p, what, &r, err);
  /* Location may be relative; the digest goes into its query. */
  char base[400], query[100], *url = NULL;
  snprintf(base, sizeof base, "%s%s", p->c.base, path);
  snprintf(query, sizeof query, "digest=%s", b->digest);
  CURLU *u = curl_url();
  if (!u || curl_url_set(u, CURLUPART_URL, base, 0) != CURLUE_OK ||
      curl_url_set(u, CURLUPART_URL, r.location, 0) != CURLUE_OK ||
      curl_url_set(u, CURLUPART_QUERY, query, CURLU_APPENDQUERY | CURLU_URLENCODE) != CURLUE_OK ||
      curl_url_get(u, CURLUPART_URL, &url, 0) != CURLUE_OK) {
    curl_url_cleanup(u);
    return kiln_fail(err, KILN_ERR_FORMAT, "registry %s: unusable upload location '%s'", p->c.host, r.location);
  }
  curl_url_cleanup(u);
  s = reg_request(&p->c, "PUT", url, NULL, body, &r, err);
  curl_free(url);
  if (s != KILN_OK) return s;
  snprintf(what, sizeof what, "uploading %s (%lld bytes)", b->digest, (long long)b->size);
  if (r.status != 201) return refused(p, what, &r, err);
  p->res->blobs_uploaded++;
  p->res->bytes_uploaded += b->size;
  return KILN_OK;
}

static kiln_status upload_streamed(const oci_blob *b, const reg_body *body, void *ctx, kiln_error *err) {
  return upload(ctx, b, body, err);
}

/* HEAD each wanted blob: those the registry has are not wanted anymore. */
static kiln_status check_present(push_state *p, kiln_error *err) {
  for (int32_t i = 0; i < p->arc.n_blobs; i++) {
    if (!p->wanted[i]) continue;
    char path[600];
    snprintf(path, sizeof path, "/v2/%s/blobs/%s", p->c.repo, p->arc.blobs[i].digest);
    reg_response r;
    kiln_status s = reg_request(&p->c, "HEAD", path, NULL, NULL, &r, err);
    if (s != KILN_OK) return s;
    if (r.status == 200) {
      p->wanted[i] = false;
      p->res->blobs_present++;
    } else if (r.status != 404) {
      return refused(p, "checking for a blob", &r, err);
    }
  }
  return KILN_OK;
}

static kiln_status put_manifest(push_state *p, const oci_blob *b, const char *type, const char *ref,
                                kiln_error *err) {
  char path[600], what[300];
  snprintf(path, sizeof path, "/v2/%s/manifests/%s", p->c.repo, ref);
  mem_reader m = {b->data, (size_t)b->size};
  reg_body body = {read_mem, &m, b->size, type};
  reg_response r;
  kiln_status s = reg_request(&p->c, "PUT", path, NULL, &body, &r, err);
  if (s != KILN_OK) return s;
  snprintf(what, sizeof what, "storing manifest %s as %s", b->digest, ref);
  if (r.status != 201) return refused(p, what, &r, err);
  if (r.content_digest[0] && strcmp(r.content_digest, b->digest) != 0)
    return kiln_fail(err, KILN_ERR_IO, "registry %s stored manifest %s under digest %s", p->c.host, b->digest,
                     r.content_digest);
  return KILN_OK;
}

static kiln_status push_all(push_state *p, kiln_error *err) {
  kiln_status s;
  if ((s = read_graph(p, err)) != KILN_OK || (s = want_blobs(p, err)) != KILN_OK) return s;
  if ((s = reg_login(&p->c, err)) != KILN_OK || (s = check_present(p, err)) != KILN_OK) return s;
  bool streamed[OCI_MAX_BLOBS] = {false};
  for (int32_t i = 0; i < p->arc.n_blobs; i++) {
    const oci_blob *b = &p->arc.blobs[i];
    if (!p->wanted[i]) continue;
    if (!b->data) {
      streamed[i] = true;
      continue;
    }
    mem_reader m = {b->data, (size_t)b->size};
    reg_body body = {read_mem, &m, b->size, "application/octet-stream"};
    if ((s = upload(p, b, &body, err)) != KILN_OK) return s;
  }
  if ((s = oci_archive_stream(p->path, &p->arc, streamed, upload_streamed, p, err)) != KILN_OK) return s;
  if (p->top != p->manifests[0] || p->n_manifests > 1) {
    for (int32_t m = 0; m < p->n_manifests; m++)
      if ((s = put_manifest(p, p->manifests[m], p->manifest_types[m], p->manifests[m]->digest, err)) != KILN_OK)
        return s;
  }
  if ((s = put_manifest(p, p->top, p->top_type, p->c.tag, err)) != KILN_OK) return s;
  char path[600];
  snprintf(path, sizeof path, "/v2/%s/manifests/%s", p->c.repo, p->c.tag);
  reg_response r;
  if ((s = reg_request(&p->c, "HEAD", path, p->top_type, NULL, &r, err)) != KILN_OK) return s;
  if (r.status != 200) return refused(p, "reading the tag back", &r, err);
  if (r.content_digest[0] && strcmp(r.content_digest, p->top->digest) != 0)
    return kiln_fail(err, KILN_ERR_IO, "registry %s serves %s:%s as %s, not the pushed %s", p->c.host, p->c.repo,
                     p->c.tag, r.content_digest, p->top->digest);
  snprintf(p->res->digest, sizeof p->res->digest, "%s", p->top->digest);
  return KILN_OK;
}

kiln_status kiln_package_registry_check(const char *reference, const kiln_registry_options *options,
                                        kiln_error *err) {
  reg_client *c = kiln_calloc(1, sizeof *c);
  if (!c) return kiln_fail(err, KILN_ERR_NOMEM, "out of memory");
  kiln_status s = reg_parse_reference(c, reference, err);
  if (s == KILN_OK && (s = reg_open(c, options, err)) == KILN_OK) {
    s = reg_login(c, err);
    reg_close(c);
  }
  kiln_free(c);
  return s;
}

kiln_status kiln_package_push(const char *archive_path, const char *reference,
                              const kiln_registry_options *options, kiln_push_result *result,
                              kiln_error *err) {
  memset(result, 0, sizeof *result);
  push_state *p = kiln_calloc(1, sizeof *p);
  if (!p) return kiln_fail(err, KILN_ERR_NOMEM, "out of memory");
  p->path = archive_path;
  p->res = result;
  kiln_status s = reg_parse_reference(&p->c, reference, err);
  if (s == KILN_OK) s = oci_archive_scan(archive_path, &p->arc, err);
  if (s == KILN_OK && (s = reg_open(&p->c, options, err)) == KILN_OK) {
    s = push_all(p, err);
    reg_close(&p->c);
  }
  oci_archive_free(&p->arc);
  kiln_free(p);
  return s;
}
