/*
 * kiln/bundle.h: ready-to-run CPU bundles, the output of
 * `kiln compile --target cpu`.
 *
 * A bundle is one file holding one or more models, each already prepared
 * for this machine's kernels: the model itself (the graph after kiln's
 * load-time passes, so fp16 weights are already float32), every op's packed
 * weights (GEMM panels, depthwise tiles, folded requantization), 64-byte
 * aligned so they are used straight from the mapped file, and the activation
 * memory plan. Opening a bundle maps the file, checks it (magic, version,
 * byte order, size, an XXH3 checksum of the whole file, the instruction set
 * it was packed for), parses the models and prepares them without packing
 * or planning again, which is faster than kiln_model_load +
 * kiln_interp_create of the .tflite, and gives bit-identical results (the
 * same kernels run on the same packed data).
 *
 *   const char *paths[] = {"ssd.tflite", "classifier.tflite"};
 *   kiln_bundle_info info;
 *   if (kiln_bundle_write(paths, 2, "robot.kbundle", &info, &err) != KILN_OK) ...
 *   printf("shared arena saves %zu bytes\n", info.saved_bytes);
 *
 *   kiln_bundle *b;
 *   if (kiln_bundle_open("robot.kbundle", NULL, &b, &err) != KILN_OK) ...
 *   kiln_interp *ssd = kiln_bundle_interp(b, 0);   // owned by the bundle
 *   kiln_tensor_view in = kiln_interp_input(ssd, 0);
 *   memcpy(in.data, pixels, in.bytes);
 *   kiln_interp_invoke(ssd, &err);
 *   kiln_bundle_free(b);
 *
 * Co-compiled models share ONE activation arena (and one scratch area and
 * thread pool): its size is the largest model's arena, not the sum. So the
 * interpreters of one bundle must never be invoked at the same time, and a
 * model's inputs and outputs are only valid until another model of the same
 * bundle is invoked: fill the inputs right before each invoke and read the
 * outputs before invoking another model. (Open the bundle twice for
 * concurrent use.)
 *
 * The packed weights are laid out for one kernel set (kernels/cpu.c: e.g.
 * AVX-512 VNNI). Opening a bundle on a CPU that lacks an instruction set it
 * was packed for is refused with a message naming what is missing; on a CPU
 * with more, the bundle's kernels are used (the same results). A bundle is
 * written on (or with KILN_ISA_MASK set for) the machine that runs it.
 */
#ifndef KILN_BUNDLE_H
#define KILN_BUNDLE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "kiln/base.h"
#include "kiln/interp.h"
#include "kiln/model.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Most models one bundle holds. */
#define KILN_BUNDLE_MAX_MODELS 16

/* The first 8 bytes of every bundle file. */
#define KILN_BUNDLE_MAGIC "KILNBNDL"

typedef struct kiln_bundle kiln_bundle;

typedef struct kiln_bundle_model_info {
  char name[128];       /* the model file's base name ("ssd.tflite"), truncated */
  int32_t n_ops;
  size_t model_bytes;   /* the stored model (.tflite flatbuffer after the load-time passes) */
  size_t packed_bytes;  /* packed weights stored for it */
  size_t params_bytes;  /* prepared parameters of its interpreter (packed weights included) */
  size_t arena_bytes;   /* its own activation arena (what it needs alone) */
  size_t scratch_bytes; /* per-thread scratch it needs */
} kiln_bundle_model_info;

typedef struct kiln_bundle_info {
  int32_t n_models;
  kiln_bundle_model_info models[KILN_BUNDLE_MAX_MODELS];
  uint32_t isa;             /* instruction-set bits the packed weights' kernels need */
  char isa_name[96];        /* the same in words: "avx2+fma avx512 avx512vnni" ("ref": none) */
  size_t shared_arena_bytes; /* the one arena the models share: the largest own arena */
  size_t sum_arena_bytes;   /* what separate interpreters would take: the sum */
  size_t saved_bytes;       /* sum_arena_bytes - shared_arena_bytes */
  size_t file_bytes;
} kiln_bundle_info;

/* Loads each .tflite in model_paths (n_models in [1, KILN_BUNDLE_MAX_MODELS]),
 * prepares it for this machine's kernels and writes the bundle to out_path
 * atomically (a temporary file and rename). info (may be NULL) receives what
 * was written, the memory saving included. Fails naming the model and op for
 * a model kiln cannot run (as kiln_interp_create would) and on I/O errors;
 * out_path is then untouched. */
kiln_status kiln_bundle_write(const char *const *model_paths, int32_t n_models,
                              const char *out_path, kiln_bundle_info *info, kiln_error *err);

/* Whether the file at path starts with KILN_BUNDLE_MAGIC (false when it
 * cannot be read). For commands that accept a .tflite or a bundle. */
bool kiln_bundle_detect(const char *path);

/* Maps and checks the bundle at path and creates one interpreter per model
 * with options (NULL: defaults; force_ref runs the reference kernels and
 * leaves the packed weights unused). Refuses (KILN_ERR_FORMAT) a file that
 * is not a bundle, truncated or corrupted (checksum), or of another
 * version or byte order, and (KILN_ERR_UNSUPPORTED) a bundle packed for an
 * instruction set this CPU lacks; messages start with path. *out must be
 * freed with kiln_bundle_free. */
kiln_status kiln_bundle_open(const char *path, const kiln_interp_options *options,
                             kiln_bundle **out, kiln_error *err);

int32_t kiln_bundle_model_count(const kiln_bundle *bundle);
/* Model i's interpreter and model (NULL when i is out of range), owned by
 * the bundle: valid until kiln_bundle_free; do not free them. */
kiln_interp *kiln_bundle_interp(kiln_bundle *bundle, int32_t i);
const kiln_model *kiln_bundle_model(const kiln_bundle *bundle, int32_t i);
/* What the bundle holds (as kiln_bundle_write reported it). */
void kiln_bundle_get_info(const kiln_bundle *bundle, kiln_bundle_info *info);

/* Frees the interpreters, models and mapping. NULL is a no-op. */
void kiln_bundle_free(kiln_bundle *bundle);

#ifdef __cplusplus
}
#endif
#endif
