/*
 * data/split.c: deterministic, stratified train/val/test assignment.
 *
 * The images to assign are grouped by stratum (class; for detection the
 * most frequent box label, ties to the lowest index; -1 for background
 * images), each group is ordered by splitmix64(seed ^ first 64 bits of the
 * image hash) (then by the whole hash), and the groups are laid end to end
 * in stratum order. Walking that sequence, each position goes to the split
 * furthest below its fraction of the positions so far (largest
 * (p + 1) * f_k - given_k; ties in the order train, val, test): every prefix
 * is within one image of the fractions per split, so every group is within
 * two and the whole within one. A group with images but no training image
 * gets one from its largest other split. Nothing here depends on import
 * order or threads.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "data/data_int.h"

static uint64_t splitmix64(uint64_t x) {
  x += 0x9E3779B97F4A7C15ull;
  x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
  x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
  return x ^ (x >> 31);
}

static uint64_t hash64(const char *hex) {
  uint64_t v = 0;
  for (int i = 0; i < 16 && hex[i]; i++) {
    char c = hex[i];
    v = v << 4 | (uint64_t)(c <= '9' ? c - '0' : c - 'a' + 10);
  }
  return v;
}

static int32_t stratum(const kiln_dataset *ds, const kiln_data_image *im, int32_t *count) {
  if (ds->task == KILN_TASK_CLASSIFY) return im->label;
  if (im->n_boxes == 0) return -1;
  for (int32_t k = 0; k < im->n_boxes; k++) count[im->boxes[k].label]++;
  int32_t best = -1;
  for (int32_t k = 0; k < im->n_boxes; k++) {
    int32_t l = im->boxes[k].label;
    if (best < 0 || count[l] > count[best] || (count[l] == count[best] && l < best)) best = l;
  }
  for (int32_t k = 0; k < im->n_boxes; k++) count[im->boxes[k].label] = 0;
  return best;
}

typedef struct split_key {
  int32_t stratum;
  int32_t stratum_split; /* the split given */
  uint64_t key;
  const char *hash;
  int32_t index;
} split_key;

static int by_stratum_key(const void *a, const void *b) {
  const split_key *x = a, *y = b;
  if (x->stratum != y->stratum) return x->stratum < y->stratum ? -1 : 1;
  if (x->key != y->key) return x->key < y->key ? -1 : 1;
  int c = strcmp(x->hash, y->hash);
  return c ? c : (x->index > y->index) - (x->index < y->index);
}

/* Assigns the images now in split `from` to the splits whose fractions
 * frac[k] (k = 0..3, summing to 1) give; returns how many changed. */
static kiln_status assign(kiln_dataset *ds, kiln_split from, const double frac[KILN_SPLIT_COUNT],
                          uint64_t seed, int32_t *changed, kiln_error *err) {
  *changed = 0;
  int32_t n = 0;
  for (int32_t i = 0; i < ds->n_images; i++) n += ds->images[i].split == from;
  if (n == 0) return KILN_OK;
  split_key *keys = kiln_malloc((size_t)n * sizeof *keys);
  int32_t *count = kiln_calloc((size_t)ds->n_labels + 1, sizeof *count);
  if (!keys || !count) {
    kiln_free(keys);
    kiln_free(count);
    return kiln_fail(err, KILN_ERR_NOMEM, "out of memory splitting %d images", n);
  }
  int32_t m = 0;
  for (int32_t i = 0; i < ds->n_images; i++) {
    const kiln_data_image *im = &ds->images[i];
    if (im->split != from) continue;
    keys[m++] = (split_key){stratum(ds, im, count), 0, splitmix64(seed ^ hash64(im->hash)), im->hash, i};
  }
  kiln_free(count);
  qsort(keys, (size_t)n, sizeof *keys, by_stratum_key);
  static const int order[KILN_SPLIT_COUNT] = {KILN_SPLIT_TRAIN, KILN_SPLIT_VAL, KILN_SPLIT_TEST,
                                              KILN_SPLIT_UNASSIGNED};
  double given[KILN_SPLIT_COUNT] = {0};
  for (int32_t g = 0; g < n;) {
    int32_t end = g, in_group[KILN_SPLIT_COUNT] = {0};
    for (; end < n && keys[end].stratum == keys[g].stratum; end++) {
      /* the split furthest below its share of the positions so far */
      int best = -1;
      double best_deficit = 0;
      for (int o = 0; o < KILN_SPLIT_COUNT; o++) {
        int k = order[o];
        if (frac[k] <= 0) continue;
        double deficit = (end + 1) * frac[k] - given[k];
        if (best < 0 || deficit > best_deficit + 1e-9) {
          best = k;
          best_deficit = deficit;
        }
      }
      given[best] += 1;
      in_group[best]++;
      keys[end].stratum_split = best;
    }
    if (in_group[KILN_SPLIT_TRAIN] == 0 && frac[KILN_SPLIT_TRAIN] > 0) {
      int big = -1;
      for (int k = 0; k < KILN_SPLIT_COUNT; k++)
        if (in_group[k] > 0 && (big < 0 || in_group[k] > in_group[big])) big = k;
      for (int32_t p = g; p < end; p++)
        if (keys[p].stratum_split == big) {
          keys[p].stratum_split = KILN_SPLIT_TRAIN;
          given[big] -= 1;
          given[KILN_SPLIT_TRAIN] += 1;
          break;
        }
    }
    g = end;
  }
  for (int32_t p = 0; p < n; p++) {
    kiln_data_image *im = &ds->images[keys[p].index];
    if (im->split != (kiln_split)keys[p].stratum_split) ++*changed;
    im->split = (kiln_split)keys[p].stratum_split;
  }
  kiln_free(keys);
  return KILN_OK;
}

kiln_split_options kiln_split_options_default(void) {
  kiln_split_options o = {0.8f, 0.1f, 0.1f, 0};
  return o;
}

kiln_status kiln_dataset_split(kiln_dataset *ds, const kiln_split_options *options, kiln_error *err) {
  kiln_split_options o = options ? *options : kiln_split_options_default();
  if (!(o.train >= 0 && o.val >= 0 && o.test >= 0) || fabs((double)o.train + o.val + o.test - 1.0) > 1e-4)
    return kiln_fail(err, KILN_ERR_INVALID_ARG,
                     "split fractions %g/%g/%g must be non-negative and sum to 1", (double)o.train,
                     (double)o.val, (double)o.test);
  double frac[KILN_SPLIT_COUNT] = {0, o.train, o.val, o.test};
  double sum = frac[1] + frac[2] + frac[3];
  for (int k = 1; k < KILN_SPLIT_COUNT; k++) frac[k] /= sum;
  int32_t changed;
  return assign(ds, KILN_SPLIT_UNASSIGNED, frac, o.seed, &changed, err);
}

kiln_status kiln_dataset_carve(kiln_dataset *ds, kiln_split from, kiln_split to, float fraction,
                               uint64_t seed, int32_t *moved, kiln_error *err) {
  if (!(fraction >= 0 && fraction <= 1) || from == to || (unsigned)from >= KILN_SPLIT_COUNT ||
      (unsigned)to >= KILN_SPLIT_COUNT)
    return kiln_fail(err, KILN_ERR_INVALID_ARG, "carve %g of %s into %s: need 0..1 and two different splits",
                     (double)fraction, kiln_split_name(from), kiln_split_name(to));
  double frac[KILN_SPLIT_COUNT] = {0};
  frac[from] = 1.0 - fraction;
  frac[to] = fraction;
  int32_t changed;
  kiln_status s = assign(ds, from, frac, seed, &changed, err);
  if (moved) *moved = changed;
  return s;
}
