/*
 * package/image.c: kiln_package_build: checks the model, writes the layers
 * (runtime libraries, kiln, model, labels), one image config and manifest
 * per architecture, an index over them when there are several, and the
 * archive. Everything that goes into a digest is a function of the inputs
 * (file contents and modes, options), never of the time or the machine.
 */
#include <ctype.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "base/file.h"
#include "kiln/interp.h"
#include "kiln/model.h"
#include "kiln/vision.h"
#include "package/package_int.h"

#define USER_ID "65532"

kiln_package_options kiln_package_options_default(void) {
  kiln_package_options o;
  memset(&o, 0, sizeof o);
  o.kiln_version = "unknown";
  o.port = 8500;
  o.gzip_level = 6;
  return o;
}

typedef struct arch_image {
  pkg_blob libs, bin, config, manifest;
} arch_image;

typedef struct build_state {
  pkg_blob model, labels, index, index_json, docker;
  arch_image img[KILN_PACKAGE_MAX_ARCHES];
  char model_sha[65], labels_sha[65];
  char model_file[128], labels_file[128];
} build_state;

static void state_free(build_state *b) {
  pkg_blob_free(&b->model);
  pkg_blob_free(&b->labels);
  pkg_blob_free(&b->index);
  pkg_blob_free(&b->index_json);
  pkg_blob_free(&b->docker);
  for (int i = 0; i < KILN_PACKAGE_MAX_ARCHES; i++) {
    pkg_blob_free(&b->img[i].libs);
    pkg_blob_free(&b->img[i].bin);
    pkg_blob_free(&b->img[i].config);
    pkg_blob_free(&b->img[i].manifest);
  }
  kiln_free(b);
}

static bool valid_name(const char *name) {
  size_t n = strlen(name);
  if (n == 0 || n > 64 || !(islower((unsigned char)name[0]) || isdigit((unsigned char)name[0]))) return false;
  for (size_t i = 0; i < n; i++) {
    unsigned char c = (unsigned char)name[i];
    if (!(islower(c) || isdigit(c) || c == '.' || c == '_' || c == '-')) return false;
  }
  return true;
}

/* An absolute path without ".", ".." or empty components. */
static bool clean_path(const char *p) {
  if (p[0] != '/' || p[1] == '\0') return false;
  for (const char *c = p; *c; c++) {
    if (*c != '/') continue;
    const char *next = c + 1;
    if (*next == '/' || *next == '\0') return false;
    if (next[0] == '.' && (next[1] == '/' || next[1] == '\0')) return false;
    if (next[0] == '.' && next[1] == '.' && (next[2] == '/' || next[2] == '\0')) return false;
  }
  return true;
}

static kiln_status check_options(const kiln_package_options *o, const char *out_path, kiln_error *err) {
  if (!o->model_path) return kiln_fail(err, KILN_ERR_INVALID_ARG, "no model given");
  if (!out_path || !out_path[0]) return kiln_fail(err, KILN_ERR_INVALID_ARG, "no output path given");
  if (!o->name || !valid_name(o->name))
    return kiln_fail(err, KILN_ERR_INVALID_ARG,
                     "name '%s' is not 1-64 of [a-z0-9._-] starting with a letter or digit",
                     o->name ? o->name : "");
  if (o->n_runtimes < 1 || o->n_runtimes > KILN_PACKAGE_MAX_ARCHES)
    return kiln_fail(err, KILN_ERR_INVALID_ARG, "%d architectures (1 to %d)", (int)o->n_runtimes,
                     KILN_PACKAGE_MAX_ARCHES);
  if (o->gzip_level < 1 || o->gzip_level > 9)
    return kiln_fail(err, KILN_ERR_INVALID_ARG, "gzip level %d is not 1..9", (int)o->gzip_level);
  if (o->port < 1 || o->port > 65535)
    return kiln_fail(err, KILN_ERR_INVALID_ARG, "port %d is not 1..65535", (int)o->port);
  for (int32_t i = 0; i < o->n_runtimes; i++) {
    const kiln_package_runtime *rt = &o->runtimes[i];
    if (!rt->arch || (strcmp(rt->arch, "amd64") != 0 && strcmp(rt->arch, "arm64") != 0))
      return kiln_fail(err, KILN_ERR_UNSUPPORTED, "architecture '%s' is not amd64 or arm64",
                       rt->arch ? rt->arch : "");
    for (int32_t j = 0; j < i; j++)
      if (strcmp(o->runtimes[j].arch, rt->arch) == 0)
        return kiln_fail(err, KILN_ERR_INVALID_ARG, "architecture %s given twice", rt->arch);
    if (!rt->binary) return kiln_fail(err, KILN_ERR_INVALID_ARG, "%s: no kiln executable", rt->arch);
    bool has_loader = false;
    for (int32_t k = 0; k < rt->n_libraries; k++) {
      if (!clean_path(rt->libraries[k]))
        return kiln_fail(err, KILN_ERR_INVALID_ARG, "%s: library path '%s' is not a clean absolute path",
                         rt->arch, rt->libraries[k]);
      has_loader |= strstr(rt->libraries[k], "/ld-linux") != NULL;
    }
    if (!has_loader)
      return kiln_fail(err, KILN_ERR_INVALID_ARG, "%s: the libraries do not include the dynamic loader (ld-linux*)",
                       rt->arch);
  }
  return KILN_OK;
}

static kiln_status file_sha256(const char *path, char hex[65], kiln_error *err) {
  kiln_mapped_file f;
  kiln_status s = kiln_file_map(path, &f, err);
  if (s != KILN_OK) return s;
  char digest[KILN_DIGEST_MAX];
  pkg_digest(f.data, f.size, digest);
  memcpy(hex, digest + 7, 65);
  kiln_file_unmap(&f);
  return KILN_OK;
}

/* The image must serve: the model loads and prepares here, the labels read. */
static kiln_status check_model(const kiln_package_options *o, kiln_error *err) {
  kiln_model *m = NULL;
  kiln_status s = kiln_model_load(o->model_path, &m, err);
  if (s != KILN_OK) return s;
  kiln_interp_options io = {.n_threads = 1};
  kiln_interp *it = NULL;
  s = kiln_interp_create(m, &io, &it, err);
  if (s != KILN_OK) kiln_error_prefix(err, "%s: kiln cannot run this model", o->model_path);
  kiln_interp_free(it);
  kiln_model_free(m);
  if (s != KILN_OK || !o->labels_path) return s;
  kiln_labels *labels = NULL;
  s = kiln_labels_load(o->labels_path, &labels, err);
  kiln_labels_free(labels);
  return s;
}

static const char passwd[] = "root:x:0:0:root:/root:/usr/sbin/nologin\n"
                             "kiln:x:" USER_ID ":" USER_ID ":kiln:/tmp:/usr/sbin/nologin\n";
static const char group[] = "root:x:0:\nkiln:x:" USER_ID ":\n";

static kiln_status runtime_layers(const kiln_package_runtime *rt, const pkg_layer_options *lo,
                                  arch_image *img, kiln_error *err) {
  int32_t n = 0;
  pkg_entry *e = kiln_calloc((size_t)rt->n_libraries + 3, sizeof *e);
  if (!e) return kiln_fail(err, KILN_ERR_NOMEM, "out of memory");
  for (int32_t i = 0; i < rt->n_libraries; i++)
    e[n++] = (pkg_entry){.path = rt->libraries[i] + 1, .source = rt->libraries[i]};
  e[n++] = (pkg_entry){.path = "etc/passwd", .bytes = passwd, .n_bytes = sizeof passwd - 1, .mode = 0644};
  e[n++] = (pkg_entry){.path = "etc/group", .bytes = group, .n_bytes = sizeof group - 1, .mode = 0644};
  e[n++] = (pkg_entry){.path = "tmp", .mode = 01777, .is_dir = true};
  kiln_status s = pkg_layer_write(e, n, lo, &img->libs, err);
  kiln_free(e);
  if (s != KILN_OK) return s;
  pkg_entry bin = {.path = "usr/bin/kiln", .source = rt->binary, .mode = 0755};
  return pkg_layer_write(&bin, 1, lo, &img->bin, err);
}

/* Label values are strings in the image spec. */
static json_t *labels_json(const kiln_package_options *o, const build_state *b, const char *arches) {
  json_t *l = json_pack("{s:s, s:s, s:s, s:s, s:s, s:o, s:o}", "org.opencontainers.image.title", o->name,
                        "kiln.version", o->kiln_version, "kiln.model.sha256", b->model_sha, "kiln.model.file",
                        b->model_file, "kiln.package.arch", arches, "kiln.package.gzip_level",
                        json_sprintf("%d", (int)o->gzip_level), "kiln.serve.port", json_sprintf("%d", (int)o->port));
  if (l && o->labels_path) {
    json_object_set_new(l, "kiln.labels.sha256", json_string(b->labels_sha));
    json_object_set_new(l, "kiln.labels.file", json_string(b->labels_file));
  }
  return l;
}

static json_t *config_json(const kiln_package_options *o, const build_state *b, const arch_image *img,
                           const char *arch, const char *arches) {
  char model_arg[300], port[16], port_key[24], probe[64];
  if (o->labels_path)
    snprintf(model_arg, sizeof model_arg, "%s=%s,labels=%s", o->name, b->model_file, b->labels_file);
  else
    snprintf(model_arg, sizeof model_arg, "%s=%s", o->name, b->model_file);
  snprintf(port, sizeof port, "%d", (int)o->port);
  snprintf(port_key, sizeof port_key, "%d/tcp", (int)o->port);
  snprintf(probe, sizeof probe, "http://127.0.0.1:%d/v2/health/ready", (int)o->port);
  const json_int_t second = 1000000000;
  json_t *health = json_pack("{s:[s,s,s,s], s:I, s:I, s:I, s:i}", "Test", "CMD", "/usr/bin/kiln", "health", probe,
                             "Interval", 10 * second, "Timeout", 3 * second, "StartPeriod", 30 * second, "Retries", 3);
  json_t *ports = json_object();
  if (ports) json_object_set_new(ports, port_key, json_object());
  json_t *cfg = json_pack("{s:s, s:[s], s:[s,s,s,s,s,s,s,s], s:o, s:o, s:s, s:o?}", "User", USER_ID ":" USER_ID,
                          "Env", "PATH=/usr/bin:/bin", "Entrypoint", "/usr/bin/kiln", "serve", "--model",
                          model_arg, "--host", "0.0.0.0", "--port", port, "ExposedPorts", ports, "Labels",
                          labels_json(o, b, arches), "WorkingDir", "/", "Healthcheck", health);
  const pkg_blob *layers[4] = {&img->libs, &img->bin, &b->model, &b->labels};
  const char *what[4] = {"runtime libraries", "/usr/bin/kiln", b->model_file, b->labels_file};
  int n_layers = o->labels_path ? 4 : 3;
  json_t *diff_ids = json_array(), *history = json_array();
  char created[32] = "";
  if (o->set_created) {
    time_t t = (time_t)o->mtime;
    struct tm tm;
    if (gmtime_r(&t, &tm)) strftime(created, sizeof created, "%Y-%m-%dT%H:%M:%SZ", &tm);
  }
  for (int i = 0; i < n_layers; i++) {
    json_array_append_new(diff_ids, json_string(layers[i]->diff_id));
    json_t *h = json_pack("{s:s+}", "created_by", "kiln package: ", what[i]);
    if (h && created[0]) json_object_set_new(h, "created", json_string(created));
    json_array_append_new(history, h);
  }
  json_t *root = json_pack("{s:s, s:s, s:o, s:{s:s, s:o}, s:o}", "architecture", arch, "os", "linux", "config",
                           cfg, "rootfs", "type", "layers", "diff_ids", diff_ids, "history", history);
  if (root && strcmp(arch, "arm64") == 0) json_object_set_new(root, "variant", json_string("v8"));
  if (root && created[0]) json_object_set_new(root, "created", json_string(created));
  return root;
}

static json_t *manifest_json(const build_state *b, const arch_image *img, bool has_labels) {
  json_t *layers = json_array();
  json_array_append_new(layers, pkg_descriptor(&img->libs));
  json_array_append_new(layers, pkg_descriptor(&img->bin));
  json_array_append_new(layers, pkg_descriptor(&b->model));
  if (has_labels) json_array_append_new(layers, pkg_descriptor(&b->labels));
  return json_pack("{s:i, s:s, s:o, s:o}", "schemaVersion", 2, "mediaType", PKG_MT_MANIFEST, "config",
                   pkg_descriptor(&img->config), "layers", layers);
}

static json_t *platform(const char *arch) {
  json_t *p = json_pack("{s:s, s:s}", "architecture", arch, "os", "linux");
  if (p && strcmp(arch, "arm64") == 0) json_object_set_new(p, "variant", json_string("v8"));
  return p;
}

/* Docker's manifest.json for `docker load` of the first image. */
static json_t *docker_manifest_json(const kiln_package_options *o, const build_state *b) {
  const arch_image *img = &b->img[0];
  const pkg_blob *layers[4] = {&img->libs, &img->bin, &b->model, &b->labels};
  json_t *paths = json_array();
  char p[96];
  for (int i = 0; i < (o->labels_path ? 4 : 3); i++) {
    snprintf(p, sizeof p, "blobs/sha256/%s", layers[i]->digest + 7);
    json_array_append_new(paths, json_string(p));
  }
  char tag[96], config[96];
  snprintf(tag, sizeof tag, "kiln/%s:latest", o->name);
  snprintf(config, sizeof config, "blobs/sha256/%s", img->config.digest + 7);
  return json_pack("[{s:s, s:[s], s:o}]", "Config", config, "RepoTags", tag, "Layers", paths);
}

static kiln_status write_images(const kiln_package_options *o, build_state *b, const pkg_layer_options *lo,
                                kiln_error *err) {
  char arches[64] = "";
  for (int32_t i = 0; i < o->n_runtimes; i++)
    snprintf(arches + strlen(arches), sizeof arches - strlen(arches), "%s%s", i ? "," : "", o->runtimes[i].arch);
  kiln_status s;
  for (int32_t i = 0; i < o->n_runtimes; i++) {
    const kiln_package_runtime *rt = &o->runtimes[i];
    arch_image *img = &b->img[i];
    if ((s = runtime_layers(rt, lo, img, err)) != KILN_OK) return s;
    if ((s = pkg_json_blob(config_json(o, b, img, rt->arch, arches), PKG_MT_CONFIG, &img->config, err)) != KILN_OK)
      return s;
    if ((s = pkg_json_blob(manifest_json(b, img, o->labels_path != NULL), PKG_MT_MANIFEST, &img->manifest, err)) !=
        KILN_OK)
      return s;
  }
  const pkg_blob *top = &b->img[0].manifest;
  json_t *top_desc;
  if (o->n_runtimes > 1) {
    json_t *manifests = json_array();
    for (int32_t i = 0; i < o->n_runtimes; i++) {
      json_t *d = pkg_descriptor(&b->img[i].manifest);
      if (d) json_object_set_new(d, "platform", platform(o->runtimes[i].arch));
      json_array_append_new(manifests, d);
    }
    s = pkg_json_blob(json_pack("{s:i, s:s, s:o}", "schemaVersion", 2, "mediaType", PKG_MT_INDEX, "manifests",
                                manifests),
                      PKG_MT_INDEX, &b->index, err);
    if (s != KILN_OK) return s;
    top = &b->index;
    top_desc = pkg_descriptor(top);
  } else {
    top_desc = pkg_descriptor(top);
    if (top_desc) json_object_set_new(top_desc, "platform", platform(o->runtimes[0].arch));
  }
  if (top_desc)
    json_object_set_new(top_desc, "annotations", json_pack("{s:s}", "org.opencontainers.image.ref.name", "latest"));
  s = pkg_json_blob(json_pack("{s:i, s:s, s:[o]}", "schemaVersion", 2, "mediaType", PKG_MT_INDEX, "manifests",
                              top_desc),
                    PKG_MT_INDEX, &b->index_json, err);
  if (s != KILN_OK) return s;
  return pkg_json_blob(docker_manifest_json(o, b), "application/json", &b->docker, err);
}

kiln_status kiln_package_build(const kiln_package_options *o, const char *out_path,
                               kiln_package_result *res, kiln_error *err) {
  memset(res, 0, sizeof *res);
  kiln_status s = check_options(o, out_path, err);
  if (s != KILN_OK) return s;
  if ((s = check_model(o, err)) != KILN_OK) return s;
  build_state *b = kiln_calloc(1, sizeof *b);
  size_t plen = strlen(out_path);
  char *prefix = kiln_malloc(plen + 8);
  if (!b || !prefix) {
    kiln_free(prefix);
    kiln_free(b);
    return kiln_fail(err, KILN_ERR_NOMEM, "out of memory");
  }
  snprintf(prefix, plen + 8, "%s.layer", out_path);
  pkg_layer_options lo = {.mtime = o->mtime, .gzip_level = o->gzip_level, .tmp_prefix = prefix};
  snprintf(b->model_file, sizeof b->model_file, "/models/%s.tflite", o->name);
  snprintf(b->labels_file, sizeof b->labels_file, "/models/%s.labels.txt", o->name);
  if ((s = file_sha256(o->model_path, b->model_sha, err)) != KILN_OK) goto done;
  if (o->labels_path && (s = file_sha256(o->labels_path, b->labels_sha, err)) != KILN_OK) goto done;
  pkg_entry model = {.path = b->model_file + 1, .source = o->model_path, .mode = 0644};
  if ((s = pkg_layer_write(&model, 1, &lo, &b->model, err)) != KILN_OK) goto done;
  pkg_entry labels = {.path = b->labels_file + 1, .source = o->labels_path, .mode = 0644};
  if (o->labels_path && (s = pkg_layer_write(&labels, 1, &lo, &b->labels, err)) != KILN_OK) goto done;
  if ((s = write_images(o, b, &lo, err)) != KILN_OK) goto done;

  const pkg_blob *blobs[KILN_PACKAGE_MAX_ARCHES * 4 + 3];
  int32_t n = 0;
  blobs[n++] = &b->model;
  if (o->labels_path) blobs[n++] = &b->labels;
  if (o->n_runtimes > 1) blobs[n++] = &b->index;
  for (int32_t i = 0; i < o->n_runtimes; i++) {
    arch_image *img = &b->img[i];
    blobs[n++] = &img->libs;
    blobs[n++] = &img->bin;
    blobs[n++] = &img->config;
    blobs[n++] = &img->manifest;
    snprintf(res->images[i].arch, sizeof res->images[i].arch, "%s", o->runtimes[i].arch);
    snprintf(res->images[i].manifest_digest, KILN_DIGEST_MAX, "%s", img->manifest.digest);
    const pkg_blob *layers[4] = {&img->libs, &img->bin, &b->model, &b->labels};
    for (int k = 0; k < (o->labels_path ? 4 : 3); k++) {
      res->images[i].layers_bytes += layers[k]->size;
      res->images[i].uncompressed_bytes += layers[k]->uncompressed_size;
    }
  }
  s = pkg_archive_write(out_path, blobs, n, &b->index_json, &b->docker, o->mtime, &res->archive_bytes, err);
  if (s != KILN_OK) goto done;
  res->n_images = o->n_runtimes;
  res->is_index = o->n_runtimes > 1;
  snprintf(res->digest, sizeof res->digest, "%s", o->n_runtimes > 1 ? b->index.digest : b->img[0].manifest.digest);
  memcpy(res->model_sha256, b->model_sha, sizeof res->model_sha256);
done:
  state_free(b);
  kiln_free(prefix);
  return s;
}
