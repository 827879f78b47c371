/* kiln bench MODEL|BUNDLE [--model-index I] [--threads N] [--warmup W] [--iters I]
 * [--json] [--profile] [--ref]: how fast kiln opens and runs a model on this
 * machine. Times the model load and interpreter create separately (a bundle's
 * open as one), the first invoke, then I
 * timed invokes after W warm-ups on deterministic pseudo-random inputs, and
 * reports latency statistics, multiply-accumulates per second, peak RSS, the
 * planned memory and (--profile) the mean time per op type and the slowest
 * ops. A benchmark, not a test: it asserts nothing about speed. */
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

#include "cli/cli.h"
#include "kiln/bundle.h"
#include "kiln/interp.h"
#include "kiln/model.h"

static const char *help =
    "usage: kiln bench MODEL|BUNDLE [--model-index I] [--threads N] [--warmup W] [--iters I]\n"
    "                  [--json] [--profile] [--ref]\n\n"
    "Measures MODEL on this machine: open-to-ready time (model load and interpreter create,\n"
    "each timed), the first invoke, then the latency of I invokes after W warm-ups (min,\n"
    "median, p90, max, mean), on inputs filled with fixed pseudo-random data of each input's\n"
    "dtype (8- and 16-bit integers over their whole range, floats in [-1, 1], wider integers\n"
    "0). Also reports the model's multiply-accumulates (CONV_2D, DEPTHWISE_CONV_2D,\n"
    "FULLY_CONNECTED, TRANSPOSE_CONV) and the rate reached at the median, peak RSS\n"
    "(VmHWM, else getrusage's ru_maxrss) before and after loading, and the planned arena, scratch and prepared\n"
    "parameter bytes. A CPU bundle (kiln compile --target cpu) is opened with kiln_bundle_open:\n"
    "open-to-ready is then the whole open (map, check, parse, prepare from the stored packed\n"
    "weights and memory plan), reported as load_ms with create_ms 0.\n\n"
    "  --model-index I  which model of a bundle to measure (default 0)\n"
    "  --threads N   worker threads (default: all cores)\n"
    "  --warmup W    untimed invokes after the first one (default 5)\n"
    "  --iters I     timed invokes (default 50)\n"
    "  --json        print one JSON object instead of text\n"
    "  --profile     also time every op of the timed invokes; print the mean ms per invoke\n"
    "                by op type and the slowest ops with their shapes\n"
    "  --ref         use the reference kernels only (as KILN_KERNELS=ref)\n\n"
    "JSON fields: model, bundle (true for a bundle), model_index, kernels (\"optimized\" or \"ref\"), isa, cpus, threads, warmup, iters,\n"
    "load_ms, create_ms, open_to_ready_ms, first_invoke_ms, latency_ms {min, median, p90,\n"
    "max, mean}, fps (at the median), macs, gmacs_per_s, rss_before_load_bytes,\n"
    "peak_rss_bytes, arena_bytes, scratch_bytes, prepared_params_bytes, and with --profile\n"
    "profile {by_type [{type, count, ms, share, macs, gmacs_per_s}], top_ops [{op, type, ms,\n"
    "share, macs, shape}]}.\n";

#define TOP_OPS 10

typedef struct bench_opts {
  const char *path;
  int64_t model_index; /* -1: not given */
  kiln_interp_options interp;
  int64_t warmup, iters;
  bool json;
} bench_opts;

typedef struct latency_stats {
  double min, median, p90, max, mean;
} latency_stats;

typedef struct bench_result {
  bool bundle; /* opened from a bundle: load_ms is its whole open */
  double load_ms, create_ms, first_invoke_ms;
  latency_stats latency;
  int64_t macs;
  long rss_before_kb, peak_rss_kb;
  kiln_memory_stats mem;
  double *op_ms; /* [n_ops] mean per timed invoke (--profile), else NULL */
} bench_result;

static double now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec * 1e-6;
}

/* This process's peak resident set in KiB: VmHWM from /proc/self/status,
 * which starts afresh at exec, else getrusage's ru_maxrss (on Linux that
 * one keeps the parent's peak across fork and exec, so a small process
 * started from a big one reports the big one's). */
static long peak_rss_kb(void) {
  long kb = -1;
  FILE *f = fopen("/proc/self/status", "r");
  if (f) {
    char line[256];
    while (kb < 0 && fgets(line, sizeof line, f))
      if (sscanf(line, "VmHWM: %ld kB", &kb) != 1) kb = -1;
    fclose(f);
  }
  struct rusage ru;
  if (kb < 0) kb = getrusage(RUSAGE_SELF, &ru) == 0 ? ru.ru_maxrss : 0;
  return kb;
}

/* splitmix64: fixed sequence, so every run sees the same inputs. */
static uint64_t next_random(uint64_t *state) {
  uint64_t z = (*state += 0x9e3779b97f4a7c15ull);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}

static void fill_input(const kiln_tensor_view *v, uint64_t *state) {
  size_t size = kiln_dtype_size(v->dtype), n = size ? v->bytes / size : 0;
  for (size_t i = 0; i < n; i++) {
    uint64_t r = next_random(state);
    switch (v->dtype) {
      case KILN_F32: ((float *)v->data)[i] = (float)((double)(r >> 11) * 0x1p-52 - 1.0); break;
      case KILN_F16: /* sign, exponent 1..14, mantissa: a normal half in (-1, 1) */
        ((uint16_t *)v->data)[i] = (uint16_t)((r & 0x8000) | ((1 + (r >> 16) % 14) << 10) | ((r >> 32) & 0x3ff));
        break;
      case KILN_I8:
      case KILN_U8:
      case KILN_BOOL: ((uint8_t *)v->data)[i] = v->dtype == KILN_BOOL ? (uint8_t)(r & 1) : (uint8_t)r; break;
      case KILN_I16: ((uint16_t *)v->data)[i] = (uint16_t)r; break;
      default: memset((uint8_t *)v->data + i * size, 0, size); break;
    }
  }
}

/* Multiply-accumulates of one op from its static shapes; 0 for ops that do
 * none (or none worth counting). */
static int64_t op_macs(const kiln_model *m, const kiln_op *op) {
  if (op->n_inputs < 2 || op->n_outputs < 1 || op->outputs[0] < 0) return 0;
  const kiln_tensor *out = &m->tensors[op->outputs[0]];
  int64_t out_elems = kiln_tensor_elements(out);
  switch (op->code) {
    case KILN_OP_CONV_2D: { /* filter [cout, kh, kw, cin per group] */
      const kiln_tensor *f = &m->tensors[op->inputs[1]];
      return f->rank == 4 ? out_elems * f->shape[1] * f->shape[2] * f->shape[3] : 0;
    }
    case KILN_OP_DEPTHWISE_CONV_2D: { /* filter [1, kh, kw, cout] */
      const kiln_tensor *f = &m->tensors[op->inputs[1]];
      return f->rank == 4 ? out_elems * f->shape[1] * f->shape[2] : 0;
    }
    case KILN_OP_FULLY_CONNECTED: { /* weights [units, depth] */
      const kiln_tensor *w = &m->tensors[op->inputs[1]];
      return w->rank == 2 ? out_elems * w->shape[1] : 0;
    }
    case KILN_OP_TRANSPOSE_CONV: { /* output_shape, weights [cout, kh, kw, cin], input */
      if (op->n_inputs < 3 || op->inputs[2] < 0) return 0;
      const kiln_tensor *w = &m->tensors[op->inputs[1]];
      return w->rank == 4 ? kiln_tensor_elements(&m->tensors[op->inputs[2]]) * w->shape[0] * w->shape[1] * w->shape[2]
                          : 0;
    }
    default: return 0;
  }
}

static const char *op_label(const kiln_op *op) {
  return op->code == KILN_OP_CUSTOM && op->custom_code ? op->custom_code : kiln_opcode_name(op->code);
}

/* "1x150x150x32 -> 1x150x150x16 (filter 16x1x1x32)" for an op. */
static void op_shape(const kiln_model *m, const kiln_op *op, char *buf, size_t cap) {
  size_t n = 0;
  const int32_t parts[3] = {op->n_inputs > 0 ? op->inputs[0] : -1, op->n_outputs > 0 ? op->outputs[0] : -1,
                            op_macs(m, op) > 0 && op->code != KILN_OP_TRANSPOSE_CONV ? op->inputs[1] : -1};
  static const char *const sep[3] = {"", " -> ", " (filter "};
  buf[0] = '\0';
  for (int p = 0; p < 3 && n < cap; p++) {
    if (parts[p] < 0) continue;
    const kiln_tensor *t = &m->tensors[parts[p]];
    n += (size_t)snprintf(buf + n, cap - n, "%s", sep[p]);
    for (int32_t d = 0; d < t->rank && n < cap; d++) n += (size_t)snprintf(buf + n, cap - n, d ? "x%d" : "%d", (int)t->shape[d]);
    if (p == 2 && n < cap) n += (size_t)snprintf(buf + n, cap - n, ")");
  }
}

static int cmp_double(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return (x > y) - (x < y);
}

/* Sorts ms in place. p90 is the nearest-rank percentile. */
static latency_stats summarize(double *ms, int64_t n) {
  qsort(ms, (size_t)n, sizeof *ms, cmp_double);
  latency_stats s = {ms[0], 0, 0, ms[n - 1], 0};
  s.median = n % 2 ? ms[n / 2] : 0.5 * (ms[n / 2 - 1] + ms[n / 2]);
  s.p90 = ms[(int64_t)ceil(0.9 * (double)n) - 1];
  for (int64_t i = 0; i < n; i++) s.mean += ms[i];
  s.mean /= (double)n;
  return s;
}

/* Timed invokes; fills r->latency and, when profiling, r->op_ms. */
static int measure(kiln_interp *it, const kiln_model *m, const bench_opts *o, bench_result *r) {
  kiln_error err;
  double *ms = calloc((size_t)o->iters, sizeof *ms);
  if (!ms) {
    fprintf(stderr, "kiln bench: out of memory\n");
    return CLI_FAIL;
  }
  double t0 = now_ms();
  if (kiln_interp_invoke(it, &err) != KILN_OK) goto fail;
  r->first_invoke_ms = now_ms() - t0;
  for (int64_t i = 0; i < o->warmup; i++)
    if (kiln_interp_invoke(it, &err) != KILN_OK) goto fail;
  for (int64_t i = 0; i < o->iters; i++) {
    t0 = now_ms();
    if (kiln_interp_invoke(it, &err) != KILN_OK) goto fail;
    ms[i] = now_ms() - t0;
    const kiln_op_profile *p;
    int32_t n = kiln_interp_profile(it, &p);
    for (int32_t k = 0; r->op_ms && k < n && k < m->n_ops; k++) r->op_ms[p[k].op_index] += p[k].ms / (double)o->iters;
  }
  r->latency = summarize(ms, o->iters);
  free(ms);
  return CLI_OK;
fail:
  free(ms);
  kiln_error_prefix(&err, "%s", o->path);
  return cli_error("bench", &err);
}

/* Opens a bundle's model o->model_index (timed as load_ms). */
static int open_bundle(const bench_opts *o, kiln_bundle **bundle, const kiln_model **m, kiln_interp **it,
                       bench_result *r) {
  kiln_error err;
  double t0 = now_ms();
  if (kiln_bundle_open(o->path, &o->interp, bundle, &err) != KILN_OK) return cli_error("bench", &err);
  r->load_ms = now_ms() - t0;
  const int64_t i = o->model_index < 0 ? 0 : o->model_index;
  if (i >= kiln_bundle_model_count(*bundle))
    return cli_usage_error("bench", "--model-index %lld: %s holds %d models", (long long)i, o->path,
                           (int)kiln_bundle_model_count(*bundle));
  *m = kiln_bundle_model(*bundle, (int32_t)i);
  *it = kiln_bundle_interp(*bundle, (int32_t)i);
  return CLI_OK;
}

/* Opens o->path, a .tflite (into *model and *interp) or a bundle (*bundle);
 * *m and *it are the model and interpreter to measure. */
static int open_timed(const bench_opts *o, kiln_model **model, kiln_interp **interp, kiln_bundle **bundle,
                      const kiln_model **m, kiln_interp **it, bench_result *r) {
  if (kiln_bundle_detect(o->path)) return open_bundle(o, bundle, m, it, r);
  if (o->model_index >= 0) return cli_usage_error("bench", "--model-index needs a bundle");
  kiln_error err;
  double t0 = now_ms();
  if (kiln_model_load(o->path, model, &err) != KILN_OK) return cli_error("bench", &err);
  double t1 = now_ms();
  if (kiln_interp_create(*model, &o->interp, interp, &err) != KILN_OK) {
    kiln_error_prefix(&err, "%s", o->path);
    return cli_error("bench", &err);
  }
  r->load_ms = t1 - t0;
  r->create_ms = now_ms() - t1;
  *m = *model;
  *it = *interp;
  return CLI_OK;
}

static int run_bench(const bench_opts *o, const kiln_model *m, kiln_interp *it, bench_result *r) {
  r->mem = kiln_interp_memory(it);
  for (int32_t i = 0; i < m->n_ops; i++) r->macs += op_macs(m, &m->ops[i]);
  if (o->interp.profile && !(r->op_ms = calloc((size_t)m->n_ops + 1, sizeof *r->op_ms))) {
    fprintf(stderr, "kiln bench: out of memory\n");
    return CLI_FAIL;
  }
  uint64_t state = 20240917;
  for (int32_t i = 0; i < kiln_interp_input_count(it); i++) {
    kiln_tensor_view v = kiln_interp_input(it, i);
    fill_input(&v, &state);
  }
  int rc = measure(it, m, o, r);
  r->peak_rss_kb = peak_rss_kb();
  return rc;
}

static double gmacs(int64_t macs, double ms) { return ms > 0 ? (double)macs / (ms * 1e6) : 0.0; }

typedef struct type_total {
  const char *type;
  int count;
  double ms;
  int64_t macs;
} type_total;

/* Per-type totals of r->op_ms, by time descending, into totals; returns the
 * number of types. order gets op indices by time descending. */
static int profile_tables(const kiln_model *m, const bench_result *r, type_total *totals, int32_t *order) {
  int n_types = 0;
  for (int32_t i = 0; i < m->n_ops; i++) {
    const char *type = op_label(&m->ops[i]);
    int k = 0;
    while (k < n_types && strcmp(totals[k].type, type) != 0) k++;
    if (k == n_types) totals[n_types++] = (type_total){type, 0, 0, 0};
    totals[k].count++;
    totals[k].ms += r->op_ms[i];
    totals[k].macs += op_macs(m, &m->ops[i]);
    order[i] = i;
  }
  for (int a = 1; a < n_types; a++) /* insertion sorts, stable */
    for (int b = a; b > 0 && totals[b].ms > totals[b - 1].ms; b--) {
      type_total t = totals[b];
      totals[b] = totals[b - 1];
      totals[b - 1] = t;
    }
  for (int32_t a = 1; a < m->n_ops; a++)
    for (int32_t b = a; b > 0 && r->op_ms[order[b]] > r->op_ms[order[b - 1]]; b--) {
      int32_t t = order[b];
      order[b] = order[b - 1];
      order[b - 1] = t;
    }
  return n_types;
}

static double profile_total(const kiln_model *m, const bench_result *r) {
  double total = 0;
  for (int32_t i = 0; i < m->n_ops; i++) total += r->op_ms[i];
  return total;
}

static json_t *profile_json(const kiln_model *m, const bench_result *r, type_total *totals, int32_t *order) {
  int n_types = profile_tables(m, r, totals, order);
  double total = profile_total(m, r);
  json_t *by_type = json_array(), *top = json_array();
  for (int k = 0; k < n_types; k++)
    json_array_append_new(by_type, json_pack("{s:s, s:i, s:f, s:f, s:I, s:f}", "type", totals[k].type, "count",
                                             totals[k].count, "ms", totals[k].ms, "share",
                                             total > 0 ? totals[k].ms / total : 0.0, "macs",
                                             (json_int_t)totals[k].macs, "gmacs_per_s",
                                             gmacs(totals[k].macs, totals[k].ms)));
  for (int32_t k = 0; k < m->n_ops && k < TOP_OPS; k++) {
    const kiln_op *op = &m->ops[order[k]];
    char shape[256];
    op_shape(m, op, shape, sizeof shape);
    json_array_append_new(top, json_pack("{s:i, s:s, s:f, s:f, s:I, s:s}", "op", (int)order[k], "type",
                                         op_label(op), "ms", r->op_ms[order[k]], "share",
                                         total > 0 ? r->op_ms[order[k]] / total : 0.0, "macs",
                                         (json_int_t)op_macs(m, op), "shape", shape));
  }
  return json_pack("{s:o, s:o}", "by_type", by_type, "top_ops", top);
}

static void print_json(const bench_opts *o, const kiln_model *m, const bench_result *r, const char *isa,
                       int32_t threads, type_total *totals, int32_t *order) {
  const latency_stats *l = &r->latency;
  json_t *root = json_object();
  json_object_set_new(root, "model", json_string(o->path));
  json_object_set_new(root, "bundle", json_boolean(r->bundle));
  json_object_set_new(root, "model_index", json_integer(o->model_index < 0 ? 0 : o->model_index));
  json_object_set_new(root, "kernels", json_string(o->interp.force_ref ? "ref" : "optimized"));
  json_object_set_new(root, "isa", json_string(isa));
  json_object_set_new(root, "cpus", json_integer(kiln_system_cpus()));
  json_object_set_new(root, "threads", json_integer(threads));
  json_object_set_new(root, "warmup", json_integer(o->warmup));
  json_object_set_new(root, "iters", json_integer(o->iters));
  json_object_set_new(root, "load_ms", json_real(r->load_ms));
  json_object_set_new(root, "create_ms", json_real(r->create_ms));
  json_object_set_new(root, "open_to_ready_ms", json_real(r->load_ms + r->create_ms));
  json_object_set_new(root, "first_invoke_ms", json_real(r->first_invoke_ms));
  json_object_set_new(root, "latency_ms", json_pack("{s:f, s:f, s:f, s:f, s:f}", "min", l->min, "median",
                                                    l->median, "p90", l->p90, "max", l->max, "mean", l->mean));
  json_object_set_new(root, "fps", json_real(l->median > 0 ? 1e3 / l->median : 0.0));
  json_object_set_new(root, "macs", json_integer((json_int_t)r->macs));
  json_object_set_new(root, "gmacs_per_s", json_real(gmacs(r->macs, l->median)));
  json_object_set_new(root, "rss_before_load_bytes", json_integer((json_int_t)r->rss_before_kb * 1024));
  json_object_set_new(root, "peak_rss_bytes", json_integer((json_int_t)r->peak_rss_kb * 1024));
  json_object_set_new(root, "arena_bytes", json_integer((json_int_t)r->mem.arena_bytes));
  json_object_set_new(root, "scratch_bytes", json_integer((json_int_t)r->mem.scratch_bytes));
  json_object_set_new(root, "prepared_params_bytes", json_integer((json_int_t)r->mem.params_bytes));
  if (r->op_ms) json_object_set_new(root, "profile", profile_json(m, r, totals, order));
  char *s = json_dumps(root, JSON_INDENT(2) | JSON_PRESERVE_ORDER | JSON_REAL_PRECISION(9));
  if (s) puts(s);
  free(s);
  json_decref(root);
}

static void print_profile(const kiln_model *m, const bench_result *r, int64_t iters, type_total *totals,
                          int32_t *order) {
  int n_types = profile_tables(m, r, totals, order);
  double total = profile_total(m, r);
  printf("\nprofile: mean ms per invoke over %lld invokes, by op type\n", (long long)iters);
  printf("  %-28s %6s %10s %7s %9s\n", "type", "count", "ms", "share", "GMAC/s");
  for (int k = 0; k < n_types; k++) {
    printf("  %-28s %6d %10.3f %6.1f%%", totals[k].type, totals[k].count, totals[k].ms,
           total > 0 ? 100.0 * totals[k].ms / total : 0.0);
    if (totals[k].macs > 0) printf(" %9.1f", gmacs(totals[k].macs, totals[k].ms));
    printf("\n");
  }
  printf("  %-28s %6d %10.3f\n", "total", (int)m->n_ops, total);
  printf("\nslowest ops\n  %5s  %-22s %10s %7s  %s\n", "op", "type", "ms", "share", "shape");
  for (int32_t k = 0; k < m->n_ops && k < TOP_OPS; k++) {
    char shape[256];
    op_shape(m, &m->ops[order[k]], shape, sizeof shape);
    printf("  %5d  %-22s %10.3f %6.1f%%  %s\n", (int)order[k], op_label(&m->ops[order[k]]), r->op_ms[order[k]],
           total > 0 ? 100.0 * r->op_ms[order[k]] / total : 0.0, shape);
  }
}

static void print_text(const bench_opts *o, const kiln_model *m, const bench_result *r, const char *isa,
                       int32_t threads, type_total *totals, int32_t *order) {
  const latency_stats *l = &r->latency;
  printf("model: %s", o->path);
  if (r->bundle) printf(" (bundle, model %lld)", (long long)(o->model_index < 0 ? 0 : o->model_index));
  printf("\n");
  printf("kernels: %s (cpu: %s), %d thread%s of %d cpus\n", o->interp.force_ref ? "ref" : "optimized", isa,
         (int)threads, threads == 1 ? "" : "s", (int)kiln_system_cpus());
  if (r->bundle)
    printf("open to ready: %.3f ms (bundle open)\n", r->load_ms);
  else
    printf("open to ready: %.3f ms (load %.3f ms, create %.3f ms)\n", r->load_ms + r->create_ms, r->load_ms,
           r->create_ms);
  printf("first invoke: %.3f ms\n", r->first_invoke_ms);
  printf("latency over %lld invokes after %lld warm-ups: min %.3f  median %.3f  p90 %.3f  max %.3f  mean %.3f ms\n",
         (long long)o->iters, (long long)o->warmup, l->min, l->median, l->p90, l->max, l->mean);
  printf("throughput: %.1f inferences/s, %.3f GMAC per invoke, %.1f GMAC/s at the median\n",
         l->median > 0 ? 1e3 / l->median : 0.0, (double)r->macs * 1e-9, gmacs(r->macs, l->median));
  printf("memory: peak RSS %.1f MiB (%.1f MiB before load), arena %zu bytes, scratch %zu bytes, prepared params %zu bytes\n",
         (double)r->peak_rss_kb / 1024.0, (double)r->rss_before_kb / 1024.0, r->mem.arena_bytes, r->mem.scratch_bytes,
         r->mem.params_bytes);
  if (r->op_ms) print_profile(m, r, o->iters, totals, order);
}

static int parse(int argc, char **argv, bench_opts *o, bool *done) {
  cli_args a = {argc, argv, 1, "bench"};
  const char *v;
  bool bad = false;
  int64_t n;
  while (a.i < argc) {
    if (cli_flag(&a, "--help") || cli_flag(&a, "-h")) {
      fputs(help, stdout);
      *done = true;
      return CLI_OK;
    }
    if (cli_flag_value(&a, "--model-index", &v, &bad)) {
      if (bad || !cli_parse_int("bench", "--model-index", v, 0, KILN_BUNDLE_MAX_MODELS - 1, &o->model_index))
        return CLI_USAGE;
    } else if (cli_flag_value(&a, "--threads", &v, &bad)) {
      if (bad || !cli_parse_int("bench", "--threads", v, 1, 1024, &n)) return CLI_USAGE;
      o->interp.n_threads = (int32_t)n;
    } else if (cli_flag_value(&a, "--warmup", &v, &bad)) {
      if (bad || !cli_parse_int("bench", "--warmup", v, 0, 1000000, &o->warmup)) return CLI_USAGE;
    } else if (cli_flag_value(&a, "--iters", &v, &bad)) {
      if (bad || !cli_parse_int("bench", "--iters", v, 1, 1000000, &o->iters)) return CLI_USAGE;
    } else if (cli_flag(&a, "--json")) {
      o->json = true;
    } else if (cli_flag(&a, "--profile")) {
      o->interp.profile = true;
    } else if (cli_flag(&a, "--ref")) {
      o->interp.force_ref = true;
    } else if (argv[a.i][0] == '-') {
      return cli_usage_error("bench", "unknown option '%s'", argv[a.i]);
    } else if (!o->path) {
      o->path = argv[a.i++];
    } else {
      return cli_usage_error("bench", "unexpected argument '%s'", argv[a.i]);
    }
  }
  if (!o->path) return cli_usage_error("bench", "missing MODEL");
  return CLI_OK;
}

int cmd_bench(int argc, char **argv) {
  bench_opts o = {.warmup = 5, .iters = 50, .model_index = -1};
  bool done = false;
  int rc = parse(argc, argv, &o, &done);
  if (rc != CLI_OK || done) return rc;
  const char *kernels = getenv("KILN_KERNELS");
  if (kernels && strcmp(kernels, "ref") == 0) o.interp.force_ref = true;

  kiln_model *model = NULL;
  kiln_interp *interp = NULL;
  kiln_bundle *bundle = NULL;
  const kiln_model *m = NULL;
  kiln_interp *it = NULL;
  bench_result r = {0};
  type_total *totals = NULL;
  int32_t *order = NULL;
  r.rss_before_kb = peak_rss_kb();
  rc = open_timed(&o, &model, &interp, &bundle, &m, &it, &r);
  r.bundle = bundle != NULL;
  if (rc == CLI_OK) rc = run_bench(&o, m, it, &r);
  if (rc == CLI_OK && r.op_ms &&
      (!(totals = calloc((size_t)m->n_ops + 1, sizeof *totals)) || !(order = calloc((size_t)m->n_ops + 1, sizeof *order)))) {
    fprintf(stderr, "kiln bench: out of memory\n");
    rc = CLI_FAIL;
  }
  if (rc == CLI_OK) {
    char isa[128];
    kiln_system_isa(isa, (int)sizeof isa);
    int32_t threads = o.interp.n_threads > 0 ? o.interp.n_threads : kiln_system_cpus();
    if (o.json)
      print_json(&o, m, &r, isa, threads, totals, order);
    else
      print_text(&o, m, &r, isa, threads, totals, order);
  }
  free(order);
  free(totals);
  free(r.op_ms);
  kiln_interp_free(interp);
  kiln_model_free(model);
  kiln_bundle_free(bundle);
  return rc;
}
