/*
 * fuzz/harness.h: what the dataset fuzz targets share. Importers read
 * folders, so each run writes the input (split into files) into a scratch
 * folder on tmpfs (/dev/shm, else $TMPDIR) made once per process, beside
 * four small distinct 16x12 PNGs at the names the seed annotations use, and
 * runs the real kiln_data_import on it: no parser logic is duplicated here.
 *
 * Inputs that hold several files are cut at FZ_SEP (also in the
 * dictionaries): part 0 is the first file, part 1 the second, ...
 */
#ifndef KILN_FUZZ_HARNESS_H
#define KILN_FUZZ_HARNESS_H

#include <stddef.h>
#include <stdint.h>

#include "kiln/data.h"

#define FZ_SEP "@@KILN-FILE@@"
#define FZ_MAX_PARTS 8

typedef struct fz_part {
  const uint8_t *data;
  size_t size;
} fz_part;

/* Cuts data at FZ_SEP into at most max parts (the last keeps the rest);
 * returns the number of parts (>= 1). */
int fz_split(const uint8_t *data, size_t size, fz_part *parts, int max);

/* Empties the scratch folder and returns its path. */
const char *fz_reset(void);
/* Writes a file at rel (parent folders made) in the scratch folder. */
void fz_write(const char *rel, const void *data, size_t size);
/* Writes test image i (0..3, all different) at rel. */
void fz_write_image(const char *rel, int i);
/* Imports rel inside the scratch folder ("" for the folder itself) as
 * format on one thread with small limits (1 Mpx per image, 16 MiB
 * extracted), checks the result's invariants (abort() on a broken one so
 * libFuzzer reports it) and frees it. */
void fz_import(const char *rel, kiln_data_format format);

/* A TCP connection to 127.0.0.1:port for the server targets, with a
 * receive timeout of timeout_s. Retries (up to ~10 s) while the loopback's
 * ephemeral ports are all in TIME_WAIT after many short connections;
 * abort()s when it cannot connect. */
int fz_connect(int port, int timeout_s);

#endif
