/* kiln compile MODEL.tflite [MODEL2.tflite ...] --target TARGET --out DIR:
 * the edge compiler (kiln/compile.h): op mapping, parameter caching,
 * co-compilation, segments, estimates; prints the report. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cli/cli.h"
#include "kiln/compile.h"

static const char *help =
    "usage: kiln compile MODEL.tflite [MODEL2.tflite ...] --target TARGET --out DIR\n"
    "                    [--num-segments N | --intermediate-tensors NAME[,NAME...]]\n"
    "                    [--json] [--targets-dir DIR]\n\n"
    "Compiles int8 models for an edge target: which ops the target runs (and why the others\n"
    "run on the CPU), which parameters fit its on-chip memory and which are streamed on every\n"
    "inference, and an estimate of latency and FPS. Prints the Edge TPU compiler's report lines\n"
    "followed by kiln's per-layer caching table and estimate (docs/compiler.md).\n\n"
    "Writes DIR/<model>_<target>.tflite (the model with the report as \"kiln_compile\"\n"
    "metadata; LiteRT and kiln run it), DIR/<model>_<target>.log, DIR/report.json, and for\n"
    "--target cpu DIR/bundle.kbundle (a ready-to-run CPU bundle, kiln/bundle.h).\n\n"
    "Several models are co-compiled: they share the on-chip memory, filled in command-line\n"
    "order, and one caching token. A float model compiles for an accelerator but nothing maps\n"
    "(every op: unsupported data type); kiln then exits with status 1 and a hint to run\n"
    "`kiln quantize`.\n\n"
    "  --target T            a target name (cpu, edgetpu-usb3, edgetpu-usb2, edgetpu-pcie, ...)\n"
    "                        or a target file PATH.json\n"
    "  --out DIR             output directory (created if needed)\n"
    "  --num-segments N      split the model into N segments of about equal parameter size\n"
    "                        for a pipeline of N devices (DIR/<model>_segment_K_of_N_<target>.*)\n"
    "  --intermediate-tensors A,B  cut after the ops computing these tensors instead\n"
    "  --json                print the JSON report (also written to DIR/report.json)\n"
    "  --targets-dir DIR     where target files live (default: $KILN_TARGETS, then targets/\n"
    "                        next to the binary or in ../share/kiln/targets, then the source tree)\n";

static bool is_dir(const char *path) {
  struct stat st;
  return path && stat(path, &st) == 0 && S_ISDIR(st.st_mode);
}

/* --targets-dir, $KILN_TARGETS, beside the executable, the source tree. */
static const char *targets_dir(const char *flag, char *buf, size_t cap) {
  if (flag) return flag;
  const char *env = getenv("KILN_TARGETS");
  if (env && env[0]) return env;
  char exe[4096];
  ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
  if (n > 0) {
    exe[n] = '\0';
    char *slash = strrchr(exe, '/');
    if (slash) {
      *slash = '\0';
      snprintf(buf, cap, "%s/targets", exe);
      if (is_dir(buf)) return buf;
      snprintf(buf, cap, "%s/../share/kiln/targets", exe);
      if (is_dir(buf)) return buf;
    }
  }
#ifdef KILN_TARGETS_DIR
  return KILN_TARGETS_DIR;
#else
  return "targets";
#endif
}

typedef struct cargs {
  const char **models;
  int n_models;
  const char *target, *out, *targets_dir;
  char *tensor_list; /* strdup of --intermediate-tensors, split in place */
  const char **tensors;
  int n_tensors;
  int64_t num_segments;
  bool json;
} cargs;

static int split_names(cargs *a, const char *list) {
  a->tensor_list = strdup(list);
  a->tensors = calloc(strlen(list) + 1, sizeof *a->tensors);
  if (!a->tensor_list || !a->tensors) return cli_usage_error("compile", "out of memory");
  for (char *save = NULL, *tok = strtok_r(a->tensor_list, ",", &save); tok; tok = strtok_r(NULL, ",", &save))
    a->tensors[a->n_tensors++] = tok;
  if (a->n_tensors == 0) return cli_usage_error("compile", "--intermediate-tensors: no tensor name given");
  return CLI_OK;
}

static int parse(int argc, char **argv, cargs *a) {
  cli_args c = {argc, argv, 1, "compile"};
  const char *v;
  bool bad = false;
  a->models = calloc((size_t)argc, sizeof *a->models);
  if (!a->models) return cli_usage_error("compile", "out of memory");
  while (c.i < argc) {
    if (cli_flag(&c, "--help") || cli_flag(&c, "-h")) {
      fputs(help, stdout);
      return -1;
    }
    if (cli_flag_value(&c, "--target", &v, &bad)) {
      a->target = v;
    } else if (cli_flag_value(&c, "--out", &v, &bad)) {
      a->out = v;
    } else if (cli_flag_value(&c, "--targets-dir", &v, &bad)) {
      a->targets_dir = v;
    } else if (cli_flag_value(&c, "--num-segments", &v, &bad)) {
      if (!bad && !cli_parse_int("compile", "--num-segments", v, 1, 100000, &a->num_segments)) return CLI_USAGE;
    } else if (cli_flag_value(&c, "--intermediate-tensors", &v, &bad)) {
      if (!bad && a->tensor_list) return cli_usage_error("compile", "--intermediate-tensors given twice");
      if (!bad && split_names(a, v) != CLI_OK) return CLI_USAGE;
    } else if (cli_flag(&c, "--json")) {
      a->json = true;
    } else if (argv[c.i][0] == '-') {
      return cli_usage_error("compile", "unknown option '%s'", argv[c.i]);
    } else {
      a->models[a->n_models++] = argv[c.i++];
    }
    if (bad) return CLI_USAGE;
  }
  if (a->n_models == 0) return cli_usage_error("compile", "missing MODEL.tflite");
  if (!a->target) return cli_usage_error("compile", "missing --target (e.g. edgetpu-usb3 or cpu)");
  if (!a->out) return cli_usage_error("compile", "missing --out DIR");
  return CLI_OK;
}

int cmd_compile(int argc, char **argv) {
  cargs a;
  memset(&a, 0, sizeof a);
  int rc = parse(argc, argv, &a);
  kiln_error err;
  kiln_target *target = NULL;
  kiln_compile_result *r = NULL;
  char *text = NULL;
  if (rc != CLI_OK) {
    rc = rc < 0 ? CLI_OK : rc;
    goto done;
  }
  char dir_buf[4200];
  const char *dir = targets_dir(a.targets_dir, dir_buf, sizeof dir_buf);
  kiln_compile_options opt = {(int32_t)a.num_segments, a.tensors, a.n_tensors};
  rc = CLI_FAIL;
  if (kiln_target_open(dir, a.target, &target, &err) != KILN_OK) goto fail;
  if (kiln_compile(a.models, a.n_models, target, &opt, &r, &err) != KILN_OK) goto fail;
  if (kiln_compile_write(r, a.out, &err) != KILN_OK) goto fail;
  text = a.json ? kiln_compile_report_json(r) : kiln_compile_report_text(r);
  if (!text) {
    kiln_fail(&err, KILN_ERR_NOMEM, "out of memory printing the report");
    goto fail;
  }
  fputs(text, stdout);
  if (a.json) fputc('\n', stdout);
  rc = CLI_OK;
  for (int32_t i = 0; i < r->n_models; i++) {
    if (r->models[i].quantized || kiln_target_is_cpu(target)) continue;
    fprintf(stderr,
            "kiln compile: %s is not quantized (float activations): no op can run on %s, no compiled model "
            "written; quantize it first: kiln quantize %s --calib IMAGES --out %s_int8.tflite\n",
            r->models[i].source_path, kiln_target_name(target), r->models[i].source_path, r->models[i].name);
    rc = CLI_FAIL;
  }
  goto done;
fail:
  rc = cli_error("compile", &err);
done:
  kiln_free(text);
  kiln_compile_free(r);
  kiln_target_free(target);
  free(a.models);
  free(a.tensor_list);
  free(a.tensors);
  return rc;
}
