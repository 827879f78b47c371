/*
 * runtime/bundle_format.h: the layout of a kiln bundle file (kiln/bundle.h),
 * shared by the writer (bundle_write.c), the loader (bundle.c) and tests.
 *
 * All integers are in the writer's byte order (checked through byte_order)
 * and every offset counts from the start of the file:
 *
 *   header                     kiln_bundle_header
 *   model records              n_models x kiln_bundle_model_rec
 *   per model: arena offsets   n_tensors x uint64 (KILN_BUNDLE_NO_OFFSET: not in the arena)
 *              packed records  n_packed x kiln_bundle_packed_rec, sorted by op then seq
 *   per model: the model       a .tflite flatbuffer (after kiln_model_simplify)
 *   packed blobs               each KILN_BUNDLE_ALIGN-aligned
 *
 * Models and blobs start on KILN_BUNDLE_ALIGN bytes, so with the file
 * mapped at a page boundary they are used in place. The checksum is XXH3-64
 * of every byte after the checksum field, so the magic, version and byte
 * order can be told apart from corruption.
 */
#ifndef KILN_RUNTIME_BUNDLE_FORMAT_H
#define KILN_RUNTIME_BUNDLE_FORMAT_H

#include <stddef.h>
#include <stdint.h>

#include "kiln/bundle.h"

#define KILN_BUNDLE_VERSION 1u
#define KILN_BUNDLE_BYTE_ORDER 0x01020304u
#define KILN_BUNDLE_ALIGN 64u
#define KILN_BUNDLE_NO_OFFSET UINT64_MAX

/* The writer's architecture: packed layouts differ between them. */
#define KILN_BUNDLE_ARCH_OTHER 0u
#define KILN_BUNDLE_ARCH_X86_64 1u
#define KILN_BUNDLE_ARCH_ARM64 2u
#if defined(__x86_64__)
#define KILN_BUNDLE_ARCH KILN_BUNDLE_ARCH_X86_64
#elif defined(__aarch64__)
#define KILN_BUNDLE_ARCH KILN_BUNDLE_ARCH_ARM64
#else
#define KILN_BUNDLE_ARCH KILN_BUNDLE_ARCH_OTHER
#endif

typedef struct kiln_bundle_header {
  char magic[8];          /* KILN_BUNDLE_MAGIC, no NUL */
  uint32_t version;       /* KILN_BUNDLE_VERSION */
  uint32_t byte_order;    /* KILN_BUNDLE_BYTE_ORDER as the writer stored it */
  uint64_t checksum;      /* XXH3-64 of bytes [KILN_BUNDLE_CHECKED_FROM, file_bytes) */
  uint64_t file_bytes;
  uint32_t header_bytes;  /* sizeof(kiln_bundle_header) */
  uint32_t arch;          /* KILN_BUNDLE_ARCH_* */
  uint32_t isa;           /* ISA bits (kernels/cpu.h) prepare had when writing */
  uint32_t n_models;
  uint64_t models_offset; /* the model records */
  uint32_t isa_required;  /* the bits of the kernels the blobs are laid out for */
  uint32_t reserved;      /* 0 */
} kiln_bundle_header;

#define KILN_BUNDLE_CHECKED_FROM (offsetof(kiln_bundle_header, checksum) + sizeof(uint64_t))

typedef struct kiln_bundle_model_rec {
  char name[128];          /* NUL-terminated */
  uint64_t model_offset, model_bytes;
  uint64_t offsets_offset; /* n_tensors uint64 */
  uint64_t packed_offset;  /* n_packed kiln_bundle_packed_rec */
  uint64_t arena_bytes;    /* the model's own arena (its plan) */
  uint64_t scratch_bytes;  /* per-thread scratch when written */
  uint64_t params_bytes;   /* prepared parameters when written */
  uint64_t packed_bytes;   /* sum of its blobs */
  int32_t n_tensors, n_ops, n_packed, reserved;
} kiln_bundle_model_rec;

typedef struct kiln_bundle_packed_rec {
  int32_t op, seq;  /* op index, order of the blob within the op's prepare */
  uint32_t info;    /* the op's word (kiln_packed.info) */
  uint32_t isa;     /* the ISA bits of its kernels (kiln_packed.isa) */
  uint64_t offset, bytes;
} kiln_bundle_packed_rec;

_Static_assert(sizeof(kiln_bundle_header) == 64, "bundle header layout");
_Static_assert(sizeof(kiln_bundle_model_rec) == 208, "bundle model record layout");
_Static_assert(sizeof(kiln_bundle_packed_rec) == 32, "bundle packed record layout");

/* XXH3-64 of a bundle image's checked bytes (file_bytes >= header). */
uint64_t kiln_bundle_checksum(const uint8_t *file, size_t file_bytes);

/* Fills info from a checked bundle image. */
void kiln_bundle_info_from(const uint8_t *file, kiln_bundle_info *info);

/* "avx2+fma avx512" for ISA bits; "ref" for none. */
void kiln_bundle_isa_name(uint32_t isa, char *buf, size_t cap);

#endif
