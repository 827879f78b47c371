/*
 * kiln/compile.h: the edge compiler behind `kiln compile`. For one target
 * (an accelerator such as the Coral Edge TPU, or this machine's CPU), it
 * decides which ops of a .tflite model the target runs and why the others
 * run on the CPU, assigns the parameters of the mapped ops to the target's
 * on-chip memory (in execution order, the rest streamed over the host link
 * on every inference), estimates latency from the target's figures, splits
 * a model into pipeline segments, and writes the compiled models with the
 * report embedded as "kiln_compile" metadata.
 *
 * Targets are data: targets/NAME.json files (docs/compiler.md describes
 * every field), found in a targets directory.
 *
 *   kiln_target *t;
 *   kiln_compile_result *r;
 *   if (kiln_target_open(dir, "edgetpu-usb3", &t, &err) != KILN_OK) ...
 *   const char *paths[] = {"ssd_int8.tflite"};
 *   if (kiln_compile(paths, 1, t, NULL, &r, &err) != KILN_OK) ...
 *   if (kiln_compile_write(r, "out", &err) != KILN_OK) ...   // out/ssd_int8_edgetpu-usb3.*
 *   char *text = kiln_compile_report_text(r);                // what the CLI prints
 *   printf("%s", text);
 *   kiln_free(text);
 *   kiln_compile_free(r);
 *   kiln_target_free(t);
 *
 * Everything kiln_compile returns is owned by the result; the target must
 * outlive it.
 */
#ifndef KILN_COMPILE_H
#define KILN_COMPILE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "kiln/base.h"
#include "kiln/model.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ---- Targets ---- */

typedef struct kiln_target kiln_target;

/* Parses and validates one target file (every field; messages name the file
 * and the field). The target's host target (the "host_target" field, which
 * estimates the ops that run on the CPU) is loaded from the same directory.
 * *out must be freed with kiln_target_free. */
kiln_status kiln_target_load(const char *path, kiln_target **out, kiln_error *err);

/* Opens target `name` from targets_dir (targets_dir/NAME.json), or, when
 * name ends in ".json" or contains '/', the file it names. An unknown name
 * fails with KILN_ERR_INVALID_ARG listing the available targets. */
kiln_status kiln_target_open(const char *targets_dir, const char *name, kiln_target **out,
                             kiln_error *err);

/* The target names in targets_dir, sorted, as one kiln_malloc'd string
 * "cpu, edgetpu-pcie, ..." (the caller frees it), or NULL on error. */
char *kiln_target_list(const char *targets_dir, kiln_error *err);

const char *kiln_target_name(const kiln_target *target);
const char *kiln_target_description(const kiln_target *target);
/* True for a CPU target (`kiln compile --target cpu` writes a bundle). */
bool kiln_target_is_cpu(const kiln_target *target);
void kiln_target_free(kiln_target *target);

/* ---- Compiling ---- */

typedef struct kiln_compile_options {
  /* > 1: split the (single) model into this many segments of roughly equal
   * parameter bytes. 0 or 1: no split. */
  int32_t num_segments;
  /* Cut after the op producing each named tensor instead (n > 0). */
  const char *const *intermediate_tensors;
  int32_t n_intermediate_tensors;
} kiln_compile_options;

/* One op as the target sees it. */
typedef struct kiln_compiled_op {
  int32_t index;       /* op index in the model */
  const char *type;    /* "CONV_2D", or a custom op's name */
  bool on_device;      /* runs on the target's device; false: on the host CPU (for
                        * a CPU target: false means kiln cannot run it) */
  const char *status;  /* the compiler's status string ("Mapped to Edge TPU", ...) */
  const char *reason;  /* why it is not mapped, naming the tensor or limit; NULL when mapped */
  int64_t param_bytes; /* bytes of the constants this op is the first user of */
  int64_t on_chip_bytes, off_chip_bytes; /* of param_bytes, for ops on the device */
  int64_t macs;        /* multiply-accumulates (conv, FC) or elements touched (others) */
  double seconds;      /* estimated time of this op */
} kiln_compiled_op;

typedef struct kiln_compiled_model {
  char *name;          /* output stem: "ssd_int8", "ssd_int8_segment_0_of_2" */
  char *source_path;   /* the input .tflite */
  size_t source_bytes;
  kiln_model *model;   /* the (segment) graph that was compiled */
  char *output_path;   /* set by kiln_compile_write, else NULL */
  size_t output_bytes;
  int32_t n_ops;
  kiln_compiled_op *ops;
  int32_t device_ops, cpu_ops, subgraphs;
  int32_t first_cpu_op;     /* first op after which the device stops (-1: none) */
  bool quantized;           /* has int8/uint8 activations */
  int64_t param_bytes;      /* all constants of the model */
  int64_t device_param_bytes, cpu_param_bytes, unused_param_bytes;
  int64_t on_chip_bytes, off_chip_bytes;
  int64_t link_in_bytes, link_out_bytes; /* activations over the host link */
  double device_seconds, cpu_seconds, transfer_seconds, overhead_seconds;
  double latency_seconds; /* the sum of the four above */
  /* Compiled alone (the whole on-chip budget, no other model): */
  int64_t alone_on_chip_bytes;
  double alone_latency_seconds;
  uint64_t caching_token;
} kiln_compiled_model;

typedef struct kiln_compile_result {
  const kiln_target *target;
  int32_t n_models;
  kiln_compiled_model *models;
  bool co_compiled;  /* several models sharing one on-chip budget and token */
  int32_t segments;  /* > 0: models are the segments of one model */
  int64_t on_chip_capacity; /* -1: the target has no on-chip parameter memory */
  int64_t on_chip_used, on_chip_remaining;
  /* One inference of each model in turn with one caching token, and the
   * same with separately compiled models (each switch reloads the cache).
   * For segments: the sum of the segments, and throughput = the slowest. */
  double set_latency_seconds, set_fps, separate_latency_seconds;
  double compile_ms;
  int32_t unquantized_models; /* models with no int8/uint8 activation */
  char *bundle_path;  /* CPU target: the bundle kiln_compile_write wrote */
  /* CPU target: the bundle's activation arena shared by its models, what
   * separate interpreters would take (the sum), the difference, file size. */
  int64_t bundle_shared_arena_bytes, bundle_sum_arena_bytes, bundle_saved_bytes, bundle_file_bytes;
} kiln_compile_result;

/* Compiles n_models .tflite files (co-compiled when n_models > 1: one
 * on-chip budget filled in the given order, one caching token) for target.
 * options may be NULL. Fails on an unreadable or corrupt model (the
 * reader's message), on segmentation options that do not fit the model
 * (more segments than ops, unknown tensor names) and with several models
 * and segmentation together. A float model for an accelerator compiles (every
 * op "Operation is working on an unsupported data type") and is counted in
 * unquantized_models. */
kiln_status kiln_compile(const char *const *model_paths, int32_t n_models,
                         const kiln_target *target, const kiln_compile_options *options,
                         kiln_compile_result **out, kiln_error *err);

/* Writes, creating out_dir if needed, for each model
 * OUT/<name>_<target>.tflite (the graph with "kiln_compile" metadata; not
 * written for an unquantized model on an accelerator, nothing would run
 * there) and OUT/<name>_<target>.log (the text report), OUT/report.json,
 * and for a CPU target OUT/bundle.kbundle (kiln/bundle.h). All files are
 * written atomically. Fills output_path/output_bytes and bundle_path. */
kiln_status kiln_compile_write(kiln_compile_result *result, const char *out_dir, kiln_error *err);

/* The text report of all models (the Edge TPU compiler's lines, then
 * kiln's per-layer caching table and estimate). kiln_malloc'd; NULL when
 * out of memory. */
char *kiln_compile_report_text(const kiln_compile_result *result);
/* The same for one model (its .log file). */
char *kiln_compile_model_report_text(const kiln_compile_result *result, int32_t model);
/* The JSON report (report.json). kiln_malloc'd; NULL when out of memory. */
char *kiln_compile_report_json(const kiln_compile_result *result);

void kiln_compile_free(kiln_compile_result *result);

/* Splits model between ops at n_cuts cut positions (cut k: the first op of
 * segment k+1; strictly increasing in (0, n_ops)). Segment k's inputs are
 * exactly segment k-1's outputs; tensors needed by a later segment pass
 * through the segments between. Each segment is a standalone model
 * (n_cuts + 1 of them, owned by the caller). */
kiln_status kiln_compile_split(const kiln_model *model, const int32_t *cuts, int32_t n_cuts,
                               kiln_model **segments, kiln_error *err);

#ifdef __cplusplus
}
#endif
#endif
