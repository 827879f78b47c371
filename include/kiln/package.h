/*
 * kiln/package.h: OCI container images of a model and the kiln server, built
 * without a container daemon, and pushed to a registry with the OCI
 * distribution API.
 *
 *   kiln_package_runtime rt;                        // this process: exe + its libraries
 *   kiln_package_runtime_self(&rt, &err);
 *   kiln_package_options opt = kiln_package_options_default();
 *   opt.model_path = "ssd.tflite";                  // must load and prepare in kiln
 *   opt.labels_path = "labels.txt";
 *   opt.name = "ssd";
 *   opt.runtimes = &rt;
 *   opt.n_runtimes = 1;
 *   kiln_package_result res;
 *   kiln_package_build(&opt, "ssd.tar", &res, &err);   // res.digest: "sha256:..."
 *   kiln_registry_options ro = {.insecure = true};
 *   kiln_package_push("ssd.tar", "127.0.0.1:5000/models/ssd:1", &ro, &pushed, &err);
 *   kiln_package_runtime_free(&rt);
 *
 * The image (one per architecture; an image index over them when there are
 * several): layers of gzip'd tars, in this order: the runtime libraries (each
 * at the path the dynamic loader found it, the loader included) with
 * /etc/passwd, /etc/group and /tmp; /usr/bin/kiln; /models/NAME.tflite; and
 * /models/NAME.labels.txt when there are labels. The config runs
 * `kiln serve` as user 65532 on port 8500 with a healthcheck through
 * `kiln health`, and labels naming the model's SHA-256, kiln's version and
 * the build parameters. The archive is an OCI layout in a tar (oci-layout,
 * index.json, blobs/sha256/...) plus Docker's manifest.json, so skopeo,
 * umoci, podman and `docker load` read it.
 *
 * Reproducible: every file has mtime `mtime` (SOURCE_DATE_EPOCH or 0), uid
 * and gid 0, entries are sorted, gzip headers carry no time or name and JSON
 * is compact with sorted keys, so the same inputs give a byte-identical
 * archive and the same digest.
 */
#ifndef KILN_PACKAGE_H
#define KILN_PACKAGE_H

#include <stdbool.h>
#include <stdint.h>

#include "kiln/base.h"

#ifdef __cplusplus
extern "C" {
#endif

#define KILN_PACKAGE_MAX_ARCHES 4
#define KILN_DIGEST_MAX 72 /* "sha256:" + 64 hex + NUL */

/* What runs kiln on one architecture: the executable and every shared
 * library it needs (absolute paths; each is placed at the same path in the
 * image, so the ELF interpreter's path must be among them). Another
 * architecture's kiln can be packaged by listing its files (the CLI
 * packages only itself). */
typedef struct kiln_package_runtime {
  char *arch;       /* OCI name: "amd64", "arm64" */
  char *binary;     /* the kiln executable for that architecture */
  char **libraries; /* kiln_malloc'd paths */
  int32_t n_libraries;
} kiln_package_runtime;

/* The executable of this process and the objects the dynamic loader mapped
 * for it (dl_iterate_phdr: libraries and the loader itself), for the host's
 * architecture. Free with kiln_package_runtime_free. */
kiln_status kiln_package_runtime_self(kiln_package_runtime *out, kiln_error *err);
void kiln_package_runtime_free(kiln_package_runtime *rt);

/* The OCI architecture name of the machine kiln was built for. */
const char *kiln_package_host_arch(void);

typedef struct kiln_package_options {
  const char *model_path;  /* required; refused unless kiln loads and prepares it */
  const char *labels_path; /* NULL: no labels */
  const char *name;        /* [a-z0-9][a-z0-9._-]*, at most 64 chars */
  const kiln_package_runtime *runtimes; /* one per architecture, distinct arches */
  int32_t n_runtimes;
  const char *kiln_version; /* for the labels, e.g. "0.1.0" */
  int64_t mtime;            /* of every file (SOURCE_DATE_EPOCH); 0 by default */
  bool set_created;         /* write "created" = mtime in the configs */
  int32_t port;             /* the server's port in the image (8500) */
  int32_t gzip_level;       /* 1..9 (6) */
} kiln_package_options;

kiln_package_options kiln_package_options_default(void);

typedef struct kiln_package_result {
  char digest[KILN_DIGEST_MAX]; /* the image: its manifest, or the index over arches */
  bool is_index;
  int32_t n_images;
  struct {
    char arch[16];
    char manifest_digest[KILN_DIGEST_MAX];
    int64_t layers_bytes;       /* compressed, as pulled */
    int64_t uncompressed_bytes; /* the root filesystem */
  } images[KILN_PACKAGE_MAX_ARCHES];
  int64_t archive_bytes;
  char model_sha256[65];
} kiln_package_result;

/* Builds the image and writes the archive to out_path atomically (temporary
 * layer files live beside it until then). */
kiln_status kiln_package_build(const kiln_package_options *options, const char *out_path,
                               kiln_package_result *result, kiln_error *err);

/* ---- Registry ---- */

typedef struct kiln_registry_options {
  const char *username; /* NULL: anonymous (a 401 is then an error naming the challenge) */
  const char *password;
  bool insecure; /* no TLS verification, and plain HTTP when the registry does not speak TLS */
} kiln_registry_options;

typedef struct kiln_push_result {
  char digest[KILN_DIGEST_MAX]; /* what the registry reports for the tag */
  int32_t blobs_uploaded;
  int32_t blobs_present; /* already in the registry (HEAD said so) */
  int64_t bytes_uploaded;
} kiln_push_result;

/* Checks that reference parses, the registry answers GET /v2/ and the
 * credentials satisfy its challenge, without pushing anything: what to ask
 * before a long build whose push would fail. */
kiln_status kiln_package_registry_check(const char *reference, const kiln_registry_options *options,
                                        kiln_error *err);

/* Pushes the image of an archive written by kiln_package_build (or any OCI
 * archive whose index.json names one image) to reference
 * "REGISTRY[:PORT]/REPO[:TAG]" (tag "latest" by default): blobs first (HEAD,
 * then POST + PUT), then the manifests, the tag last. Basic and bearer auth
 * follow the registry's WWW-Authenticate challenge. */
kiln_status kiln_package_push(const char *archive_path, const char *reference,
                              const kiln_registry_options *options, kiln_push_result *result,
                              kiln_error *err);

#ifdef __cplusplus
}
#endif
#endif
