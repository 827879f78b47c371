/* kiln run MODEL|BUNDLE --input NAME=FILE.npy ... --output-dir DIR: raw
 * tensors in and out, one .npy per output named after the tensor ('/' ->
 * '_'). A CPU bundle runs its model --model-index (default 0). */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "cli/cli.h"
#include "kiln/bundle.h"
#include "kiln/interp.h"
#include "kiln/model.h"
#include "kiln/npy.h"

static const char *help =
    "usage: kiln run MODEL|BUNDLE --input NAME=FILE.npy [--input ...] --output-dir DIR\n"
    "                [--model-index I] [--threads N] [--ref] [--profile]\n\n"
    "Runs MODEL once on the given input tensors and writes every output as DIR/NAME.npy, NAME\n"
    "being the output tensor's name with '/' replaced by '_'. Inputs must match the model's\n"
    "dtype and shape exactly. With one input, '--input FILE.npy' is enough. MODEL may be a CPU\n"
    "bundle (kiln compile --target cpu); --model-index picks which of its models runs.\n\n"
    "  --input NAME=FILE   input tensor NAME (or its index) from a .npy file\n"
    "  --output-dir DIR    where outputs are written (created if missing)\n"
    "  --model-index I     the bundle's model to run (default 0)\n"
    "  --threads N         worker threads (default: all cores)\n"
    "  --ref               use the reference kernels only (as KILN_KERNELS=ref)\n"
    "  --profile           print each op's time, then totals by op type, to stderr\n";

#define MAX_INPUTS 64

static int find_input(const kiln_model *m, const char *name) {
  for (int32_t i = 0; i < m->n_inputs; i++)
    if (strcmp(m->tensors[m->inputs[i]].name, name) == 0) return (int)i;
  char *end;
  long idx = strtol(name, &end, 10);
  if (*name && !*end && idx >= 0 && idx < m->n_inputs) return (int)idx;
  return -1;
}

static bool same_shape(const kiln_tensor_view *v, const kiln_npy *x) {
  if (v->rank != x->rank) return false;
  for (int32_t i = 0; i < v->rank; i++)
    if (v->shape[i] != x->shape[i]) return false;
  return true;
}

static int load_inputs(kiln_interp *it, const kiln_model *m, char **specs, int n_specs) {
  kiln_error err;
  bool *given = calloc((size_t)m->n_inputs + 1, 1);
  if (!given) return CLI_FAIL;
  int rc = CLI_OK;
  for (int k = 0; k < n_specs && rc == CLI_OK; k++) {
    char *spec = specs[k];
    char *eq = strchr(spec, '=');
    const char *file = spec;
    int idx = 0;
    if (eq) {
      *eq = '\0';
      file = eq + 1;
      idx = find_input(m, spec);
      if (idx < 0) {
        rc = cli_usage_error("run", "the model has no input named '%s'", spec);
        break;
      }
    } else if (m->n_inputs != 1) {
      rc = cli_usage_error("run", "the model has %d inputs: name them (--input NAME=FILE)", (int)m->n_inputs);
      break;
    }
    kiln_npy x;
    if (kiln_npy_read(file, &x, &err) != KILN_OK) {
      rc = cli_error("run", &err);
      break;
    }
    kiln_tensor_view v = kiln_interp_input(it, idx);
    if (x.dtype != v.dtype || !same_shape(&v, &x)) {
      fprintf(stderr, "kiln run: %s: %s [", file, kiln_dtype_name(x.dtype));
      for (int32_t i = 0; i < x.rank; i++) fprintf(stderr, i ? ",%d" : "%d", (int)x.shape[i]);
      fprintf(stderr, "] does not match input '%s' %s [", v.name, kiln_dtype_name(v.dtype));
      for (int32_t i = 0; i < v.rank; i++) fprintf(stderr, i ? ",%d" : "%d", (int)v.shape[i]);
      fprintf(stderr, "]\n");
      rc = CLI_FAIL;
    } else {
      memcpy(v.data, x.data, v.bytes);
      given[idx] = true;
    }
    kiln_npy_free(&x);
  }
  for (int32_t i = 0; rc == CLI_OK && i < m->n_inputs; i++)
    if (!given[i])
      rc = cli_usage_error("run", "no data for input '%s' (--input %s=FILE.npy)",
                           m->tensors[m->inputs[i]].name, m->tensors[m->inputs[i]].name);
  free(given);
  return rc;
}

static int write_outputs(kiln_interp *it, const char *dir) {
  kiln_error err;
  if (mkdir(dir, 0755) != 0 && errno != EEXIST) {
    fprintf(stderr, "kiln run: %s: cannot create: %s\n", dir, strerror(errno));
    return CLI_FAIL;
  }
  for (int32_t i = 0; i < kiln_interp_output_count(it); i++) {
    kiln_tensor_view v = kiln_interp_output(it, i);
    char name[1024];
    snprintf(name, sizeof name, "%s", v.name[0] ? v.name : "output");
    for (char *c = name; *c; c++)
      if (*c == '/') *c = '_';
    char path[4096];
    snprintf(path, sizeof path, "%s/%s.npy", dir, name);
    if (kiln_npy_write(path, v.dtype, v.rank, v.shape, v.data, &err) != KILN_OK)
      return cli_error("run", &err);
  }
  return CLI_OK;
}

/* Per-op times of the last invoke, then totals by op type, to stderr. */
static void print_profile(const kiln_interp *it) {
  const kiln_op_profile *p;
  int32_t n = kiln_interp_profile(it, &p);
  double total = 0;
  for (int32_t i = 0; i < n; i++) total += p[i].ms;
  fprintf(stderr, "%5s  %-28s %10s\n", "op", "type", "ms");
  for (int32_t i = 0; i < n; i++) fprintf(stderr, "%5d  %-28s %10.3f\n", (int)p[i].op_index, p[i].op_name, p[i].ms);
  fprintf(stderr, "\n%-28s %6s %10s %7s\n", "type", "count", "ms", "share");
  bool *done = calloc((size_t)n + 1, 1);
  for (int32_t i = 0; done && i < n; i++) {
    if (done[i]) continue;
    int count = 0;
    double ms = 0;
    for (int32_t j = i; j < n; j++) {
      if (done[j] || strcmp(p[j].op_name, p[i].op_name) != 0) continue;
      done[j] = true;
      count++;
      ms += p[j].ms;
    }
    fprintf(stderr, "%-28s %6d %10.3f %6.1f%%\n", p[i].op_name, count, ms, total > 0 ? 100.0 * ms / total : 0.0);
  }
  free(done);
  fprintf(stderr, "%-28s %6d %10.3f\n", "total", (int)n, total);
}

/* Opens path, a .tflite (into *model, *interp) or a bundle (*bundle, its
 * model index); *m and *it are what runs. */
static int open_model(const char *path, const kiln_interp_options *opt, int64_t index, kiln_model **model,
                      kiln_interp **interp, kiln_bundle **bundle, const kiln_model **m, kiln_interp **it) {
  kiln_error err;
  if (kiln_bundle_detect(path)) {
    if (kiln_bundle_open(path, opt, bundle, &err) != KILN_OK) return cli_error("run", &err);
    if (index < 0) index = 0;
    if (index >= kiln_bundle_model_count(*bundle))
      return cli_usage_error("run", "--model-index %lld: %s holds %d models", (long long)index, path,
                             (int)kiln_bundle_model_count(*bundle));
    *m = kiln_bundle_model(*bundle, (int32_t)index);
    *it = kiln_bundle_interp(*bundle, (int32_t)index);
    return CLI_OK;
  }
  if (index >= 0) return cli_usage_error("run", "--model-index needs a bundle");
  if (kiln_model_load(path, model, &err) != KILN_OK) return cli_error("run", &err);
  if (kiln_interp_create(*model, opt, interp, &err) != KILN_OK) {
    kiln_error_prefix(&err, "%s", path);
    return cli_error("run", &err);
  }
  *m = *model;
  *it = *interp;
  return CLI_OK;
}

int cmd_run(int argc, char **argv) {
  cli_args a = {argc, argv, 1, "run"};
  const char *path = NULL, *out_dir = NULL, *v;
  char *specs[MAX_INPUTS];
  int n_specs = 0;
  kiln_interp_options opt = {0};
  int64_t model_index = -1;
  bool bad = false;
  while (a.i < argc) {
    if (cli_flag(&a, "--help") || cli_flag(&a, "-h")) {
      fputs(help, stdout);
      return CLI_OK;
    }
    if (cli_flag_value(&a, "--input", &v, &bad)) {
      if (bad) return CLI_USAGE;
      if (n_specs == MAX_INPUTS) return cli_usage_error("run", "too many --input flags");
      specs[n_specs++] = (char *)v;
    } else if (cli_flag_value(&a, "--output-dir", &v, &bad)) {
      if (bad) return CLI_USAGE;
      out_dir = v;
    } else if (cli_flag_value(&a, "--model-index", &v, &bad)) {
      if (bad || !cli_parse_int("run", "--model-index", v, 0, KILN_BUNDLE_MAX_MODELS - 1, &model_index))
        return CLI_USAGE;
    } else if (cli_flag_value(&a, "--threads", &v, &bad)) {
      int64_t n;
      if (bad || !cli_parse_int("run", "--threads", v, 1, 1024, &n)) return CLI_USAGE;
      opt.n_threads = (int32_t)n;
    } else if (cli_flag(&a, "--ref")) {
      opt.force_ref = true;
    } else if (cli_flag(&a, "--profile")) {
      opt.profile = true;
    } else if (argv[a.i][0] == '-') {
      return cli_usage_error("run", "unknown option '%s'", argv[a.i]);
    } else if (!path) {
      path = argv[a.i++];
    } else {
      return cli_usage_error("run", "unexpected argument '%s'", argv[a.i]);
    }
  }
  if (!path) return cli_usage_error("run", "missing MODEL");
  if (!out_dir) return cli_usage_error("run", "missing --output-dir");

  kiln_error err;
  kiln_model *model = NULL;
  kiln_interp *interp = NULL;
  kiln_bundle *bundle = NULL;
  const kiln_model *m = NULL;
  kiln_interp *it = NULL;
  int rc = open_model(path, &opt, model_index, &model, &interp, &bundle, &m, &it);
  if (rc == CLI_OK) rc = load_inputs(it, m, specs, n_specs);
  if (rc == CLI_OK && kiln_interp_invoke(it, &err) != KILN_OK) rc = cli_error("run", &err);
  if (rc == CLI_OK) rc = write_outputs(it, out_dir);
  if (rc == CLI_OK && opt.profile) print_profile(it);
  kiln_interp_free(interp);
  kiln_model_free(model);
  kiln_bundle_free(bundle);
  return rc;
}
