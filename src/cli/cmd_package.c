/* kiln package --model PATH --out IMAGE.tar: an OCI image that serves the
 * model with `kiln serve`, built without a container daemon, optionally
 * pushed to a registry. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cli/cli.h"
#include "kiln/package.h"

static const char *help =
    "usage: kiln package --model PATH --out IMAGE.tar [--labels FILE] [--name NAME]\n"
    "                    [--arch amd64[,arm64]] [--push REGISTRY/REPO[:TAG]] [--insecure]\n"
    "                    [--gzip-level N]\n"
    "       kiln package --print-runtime\n\n"
    "Builds an OCI image (no Docker daemon needed): the kiln executable and every\n"
    "shared library it runs with, the model at /models/NAME.tflite, the labels at\n"
    "/models/NAME.labels.txt, and a config whose entrypoint is\n"
    "  kiln serve --model NAME=/models/NAME.tflite[,labels=...] --host 0.0.0.0 --port 8500\n"
    "run as user 65532, with a healthcheck (kiln health) and labels naming the model's\n"
    "SHA-256 and kiln's version. The model must load and prepare in this kiln. The\n"
    "archive (OCI layout plus Docker's manifest.json) loads with `docker load`, `podman\n"
    "load` and skopeo (oci-archive:IMAGE.tar). The same inputs give the same bytes: file\n"
    "times are SOURCE_DATE_EPOCH (or 0), entries sorted, no timestamps; prints the digest.\n\n"
    "  --model PATH      the .tflite model to serve\n"
    "  --labels FILE     its labels (one per line, or \"ID LABEL\" lines)\n"
    "  --name NAME       the model's name in URLs (default: from the model's file name)\n"
    "  --arch LIST       amd64 and/or arm64, comma-separated (default: this machine's);\n"
    "                    two give an image index\n"
    "  --out IMAGE.tar   the archive to write\n"
    "  --push REF        then push it to REGISTRY[:PORT]/REPO[:TAG] (tag latest by default)\n"
    "                    with the OCI distribution API; credentials for basic or bearer\n"
    "                    auth from KILN_REGISTRY_USER and KILN_REGISTRY_PASSWORD\n"
    "  --insecure        do not verify the registry's TLS certificate, and use plain HTTP\n"
    "                    when it does not speak TLS (local test registries)\n"
    "  --gzip-level N    layer compression, 1 (fastest) to 9 (smallest); default 6\n"
    "  --print-runtime   print this kiln's architecture, executable and libraries\n";

typedef struct pargs {
  const char *model, *labels, *name, *arch, *out, *push;
  bool insecure, print_runtime;
  int64_t gzip_level;
  char name_buf[65];
} pargs;

/* The default name: the model's file name without directory and extension,
 * lowercased, other characters than [a-z0-9._-] turned into '-'. */
static void name_from_model(const char *model, char *out, size_t cap) {
  const char *base = strrchr(model, '/');
  base = base ? base + 1 : model;
  size_t n = 0;
  for (const char *p = base; *p && n + 1 < cap; p++) {
    if (*p == '.' && strchr(p + 1, '.') == NULL) break; /* the last extension */
    char c = *p;
    if (c >= 'A' && c <= 'Z') c = (char)(c - 'A' + 'a');
    if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '.' || c == '_' || c == '-')) c = '-';
    out[n++] = c;
  }
  out[n] = '\0';
}

static int parse(int argc, char **argv, pargs *a) {
  cli_args c = {argc, argv, 1, "package"};
  const char *v;
  bool bad = false;
  a->gzip_level = 6;
  while (c.i < argc) {
    if (cli_flag(&c, "--help") || cli_flag(&c, "-h")) {
      fputs(help, stdout);
      return -1;
    }
    if (cli_flag_value(&c, "--model", &v, &bad)) {
      a->model = v;
    } else if (cli_flag_value(&c, "--labels", &v, &bad)) {
      a->labels = v;
    } else if (cli_flag_value(&c, "--name", &v, &bad)) {
      a->name = v;
    } else if (cli_flag_value(&c, "--arch", &v, &bad)) {
      a->arch = v;
    } else if (cli_flag_value(&c, "--out", &v, &bad)) {
      a->out = v;
    } else if (cli_flag_value(&c, "--push", &v, &bad)) {
      a->push = v;
    } else if (cli_flag_value(&c, "--gzip-level", &v, &bad)) {
      if (!bad && !cli_parse_int("package", "--gzip-level", v, 1, 9, &a->gzip_level)) return CLI_USAGE;
    } else if (cli_flag(&c, "--insecure")) {
      a->insecure = true;
    } else if (cli_flag(&c, "--print-runtime")) {
      a->print_runtime = true;
    } else if (argv[c.i][0] == '-') {
      return cli_usage_error("package", "unknown option '%s'", argv[c.i]);
    } else {
      return cli_usage_error("package", "unexpected argument '%s'", argv[c.i]);
    }
    if (bad) return CLI_USAGE;
  }
  if (a->print_runtime) return CLI_OK;
  if (!a->model) return cli_usage_error("package", "missing --model PATH");
  if (!a->out) return cli_usage_error("package", "missing --out IMAGE.tar");
  if (!a->name) {
    name_from_model(a->model, a->name_buf, sizeof a->name_buf);
    a->name = a->name_buf;
  }
  return CLI_OK;
}

static int print_runtime(void) {
  kiln_error err;
  kiln_package_runtime rt;
  if (kiln_package_runtime_self(&rt, &err) != KILN_OK) return cli_error("package", &err);
  printf("%s\n%s\n", rt.arch, rt.binary);
  for (int32_t i = 0; i < rt.n_libraries; i++) printf("%s\n", rt.libraries[i]);
  kiln_package_runtime_free(&rt);
  return CLI_OK;
}

/* The runtime of one architecture: this kiln's for the host's. */
static kiln_status runtime_for(const char *arch, kiln_package_runtime *rt, kiln_error *err) {
  if (strcmp(arch, kiln_package_host_arch()) == 0) return kiln_package_runtime_self(rt, err);
  if (strcmp(arch, "amd64") != 0 && strcmp(arch, "arm64") != 0)
    return kiln_fail(err, KILN_ERR_INVALID_ARG, "--arch: '%s' is not amd64 or arm64", arch);
  return kiln_fail(err, KILN_ERR_UNSUPPORTED,
                   "--arch %s: not supported yet: kiln packages only itself (%s); an %s image needs an %s "
                   "build of kiln and of every library it links (Debian's %s packages), which are not here",
                   arch, kiln_package_host_arch(), arch, arch, arch);
}

static double now_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static int push(const pargs *a, const kiln_registry_options *ro) {
  kiln_push_result pr;
  kiln_error err;
  const double t0 = now_s();
  if (kiln_package_push(a->out, a->push, ro, &pr, &err) != KILN_OK) return cli_error("package", &err);
  fprintf(stderr, "kiln package: pushed %s: %d blobs uploaded (%.1f MB), %d already there, in %.1f s\n", a->push,
          (int)pr.blobs_uploaded, (double)pr.bytes_uploaded / 1e6, (int)pr.blobs_present, now_s() - t0);
  printf("%s@%s\n", a->push, pr.digest);
  return CLI_OK;
}

int cmd_package(int argc, char **argv) {
  pargs a;
  memset(&a, 0, sizeof a);
  int rc = parse(argc, argv, &a);
  if (rc != CLI_OK) return rc < 0 ? CLI_OK : rc;
  if (a.print_runtime) return print_runtime();

  kiln_error err;
  kiln_package_runtime rts[KILN_PACKAGE_MAX_ARCHES];
  int32_t n_rts = 0;
  char arches[64];
  snprintf(arches, sizeof arches, "%s", a.arch ? a.arch : kiln_package_host_arch());
  rc = CLI_FAIL;
  for (char *save = NULL, *tok = strtok_r(arches, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
    if (n_rts == KILN_PACKAGE_MAX_ARCHES) {
      rc = cli_usage_error("package", "--arch: more than %d architectures", KILN_PACKAGE_MAX_ARCHES);
      goto done;
    }
    if (runtime_for(tok, &rts[n_rts], &err) != KILN_OK) goto fail;
    n_rts++;
  }
  if (n_rts == 0) {
    rc = cli_usage_error("package", "--arch: no architecture given");
    goto done;
  }

  kiln_package_options opt = kiln_package_options_default();
  opt.model_path = a.model;
  opt.labels_path = a.labels;
  opt.name = a.name;
  opt.runtimes = rts;
  opt.n_runtimes = n_rts;
  opt.kiln_version = KILN_VERSION;
  opt.gzip_level = (int32_t)a.gzip_level;
  const char *epoch = getenv("SOURCE_DATE_EPOCH");
  if (epoch && epoch[0]) {
    int64_t t;
    if (!cli_parse_int("package", "SOURCE_DATE_EPOCH", epoch, 0, 253402300799LL, &t)) {
      rc = CLI_USAGE;
      goto done;
    }
    opt.mtime = t;
    opt.set_created = true;
  }
  kiln_registry_options ro = {getenv("KILN_REGISTRY_USER"), getenv("KILN_REGISTRY_PASSWORD"), a.insecure};
  if (a.push && kiln_package_registry_check(a.push, &ro, &err) != KILN_OK) goto fail;
  const double t0 = now_s();
  kiln_package_result res;
  if (kiln_package_build(&opt, a.out, &res, &err) != KILN_OK) goto fail;
  fprintf(stderr, "kiln package: wrote %s (%.1f MB) in %.1f s: model %s sha256:%.12s\n", a.out,
          (double)res.archive_bytes / 1e6, now_s() - t0, a.name, res.model_sha256);
  for (int32_t i = 0; i < res.n_images; i++)
    fprintf(stderr, "  linux/%-6s %s  layers %.1f MB gzip'd, %.1f MB unpacked\n", res.images[i].arch,
            res.images[i].manifest_digest, (double)res.images[i].layers_bytes / 1e6,
            (double)res.images[i].uncompressed_bytes / 1e6);
  printf("%s\n", res.digest);
  rc = a.push ? push(&a, &ro) : CLI_OK;
  goto done;
fail:
  rc = cli_error("package", &err);
done:
  for (int32_t i = 0; i < n_rts; i++) kiln_package_runtime_free(&rts[i]);
  return rc;
}
