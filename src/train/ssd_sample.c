/*
 * One training sample of SSD transfer learning (train/ssd_int.h): a
 * dataset image, decoded and (optionally) augmented, resized to the model
 * input, run through the frozen body for its feature maps, and its boxes
 * matched to the anchors as targets.
 *
 * Without augmentation the input is made exactly as kiln_detector makes it
 * at inference (kiln_image_to_tensor), and the feature maps are cached as
 * float16; the first use goes through float16 too, so every epoch sees the
 * same values. With augmentation, image i of epoch e draws from an RNG
 * seeded by (seed, e, i), in this order: crop (one draw, then the window's
 * draws), flip (one draw), colour jitter (its three draws).
 */
#include <string.h>
#include <time.h>

#include "base/half.h"
#include "kiln/data.h"
#include "train/ssd_int.h"

uint64_t ssd_seed(uint64_t seed, uint64_t a, uint64_t b) {
  uint64_t z = seed;
  const uint64_t parts[2] = {a, b};
  for (int i = 0; i < 2; i++) {
    z += 0x9e3779b97f4a7c15ull * (parts[i] + 1);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    z ^= z >> 31;
  }
  return z;
}

static double now_seconds(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* Copies the dataset image's boxes (pixels) into the trainer's box arrays;
 * crowd and difficult boxes get label -1. */
static int32_t load_boxes(ssd_trainer *t, const kiln_data_image *im) {
  for (int32_t i = 0; i < im->n_boxes; i++) {
    const kiln_data_box *b = &im->boxes[i];
    float *q = t->box_xyxy + (size_t)i * 4;
    q[0] = b->xmin;
    q[1] = b->ymin;
    q[2] = b->xmax;
    q[3] = b->ymax;
    t->box_labels[i] = b->flags & (KILN_BOX_CROWD | KILN_BOX_DIFFICULT) ? -1 : b->label;
  }
  return im->n_boxes;
}

/* Augments img into t->pixels (input size, values 0..255) and the boxes
 * with it; returns the boxes kept. */
static kiln_status augment(ssd_trainer *t, const kiln_image *img, int32_t index, int64_t epoch,
                           int32_t *count, kiln_error *err) {
  const ssd_layout *l = &t->layout;
  kiln_rng rng;
  kiln_rng_seed(&rng, ssd_seed(t->opt.seed, (uint64_t)epoch, (uint64_t)index));
  float window[4] = {0.0f, 0.0f, (float)img->width, (float)img->height};
  if (kiln_rng_uniform(&rng) < t->opt.crop_probability)
    kiln_aug_random_crop_window(&rng, img->width, img->height, 0.3f, 1.0f, 0.5f, 2.0f, window);
  kiln_fimage f = {t->pixels, l->input_h, l->input_w, 3};
  kiln_boxes boxes = {t->box_xyxy, t->box_labels, *count};
  kiln_status s = kiln_aug_crop_resize(NULL, img, window, 0.0f, &f, &boxes, 0.5f, err);
  if (s != KILN_OK) return s;
  if (t->opt.hflip && kiln_rng_uniform(&rng) < 0.5f) kiln_aug_hflip(&f, &boxes);
  if (t->opt.color_jitter > 0.0f)
    kiln_aug_color_jitter(&f, &rng, t->opt.color_jitter, t->opt.color_jitter,
                          t->opt.color_jitter, 255.0f);
  *count = boxes.count;
  return KILN_OK;
}

/* Runs the body on its current input and copies the feature maps into the
 * heads' inputs at slot (through float16 into the cache when caching). */
static kiln_status run_body(ssd_trainer *t, int32_t index, int32_t slot, kiln_error *err) {
  kiln_status s = kiln_interp_invoke(t->interp, err);
  if (s != KILN_OK) return s;
  uint16_t *cache = t->cache ? t->cache + (size_t)index * t->feature_floats : NULL;
  for (int32_t k = 0; k < t->layout.n_heads; k++) {
    const kiln_tensor_view v = kiln_interp_output(t->interp, k);
    const size_t n = v.bytes / sizeof(float);
    float *dst = kiln_net_act(t->heads[k], 0) + (size_t)slot * n;
    const float *src = v.data;
    if (cache) {
      for (size_t i = 0; i < n; i++) cache[i] = kiln_float_to_half(src[i]);
      cache += n;
    } else {
      memcpy(dst, src, n * sizeof(float));
    }
  }
  if (t->cache) t->cached[index] = 1;
  return KILN_OK;
}

/* Copies cached features of image index into slot. */
static void from_cache(ssd_trainer *t, int32_t index, int32_t slot) {
  const uint16_t *src = t->cache + (size_t)index * t->feature_floats;
  for (int32_t k = 0; k < t->layout.n_heads; k++) {
    const ssd_head *h = &t->layout.heads[k];
    const size_t n = (size_t)h->h * h->w * h->c;
    float *dst = kiln_net_act(t->heads[k], 0) + (size_t)slot * n;
    for (size_t i = 0; i < n; i++) dst[i] = kiln_half_to_float(src[i]);
    src += n;
  }
}

/* Matches the boxes (pixels of a w x h image) and writes slot's targets. */
static void targets(ssd_trainer *t, int32_t count, float w, float h, int32_t slot) {
  int32_t n_gt = 0, n_ignore = 0;
  for (int32_t i = 0; i < count; i++) {
    const float *b = t->box_xyxy + (size_t)i * 4;
    float *q = t->box_labels[i] < 0 ? t->ignore + (size_t)n_ignore++ * 4
                                     : t->gt + (size_t)n_gt * 4;
    if (t->box_labels[i] >= 0) t->gt_labels[n_gt++] = t->box_labels[i];
    q[0] = b[1] / h;
    q[1] = b[0] / w;
    q[2] = b[3] / h;
    q[3] = b[2] / w;
  }
  const int32_t n = t->n_anchors;
  int32_t *match = t->match + (size_t)slot * n, *col = t->columns + (size_t)slot * n;
  float *bt = t->box_targets + (size_t)slot * n * 4;
  ssd_match(t->corners, n, t->gt, n_gt, t->ignore, n_ignore, t->opt.match_iou, match);
  for (int32_t i = 0; i < n; i++) {
    col[i] = match[i] >= 0 ? t->gt_labels[match[i]] + 1 : 0;
    if (match[i] >= 0)
      ssd_encode_box(t->gt + (size_t)match[i] * 4, t->anchors + (size_t)i * 4, &t->coder,
                     bt + (size_t)i * 4);
    else
      memset(bt + (size_t)i * 4, 0, 4 * sizeof(float));
  }
}

kiln_status ssd_sample(ssd_trainer *t, int32_t index, int64_t epoch, int32_t slot,
                       kiln_error *err) {
  const double t0 = now_seconds();
  const int32_t di = t->train[index];
  const kiln_data_image *im = &t->ds->images[di];
  int32_t count = load_boxes(t, im);
  float w = (float)im->width, h = (float)im->height; /* the boxes' image */
  kiln_status s = KILN_OK;
  if (t->cache && t->cached[index]) {
    from_cache(t, index, slot);
  } else {
    kiln_image img;
    s = kiln_dataset_load_image(t->ds, di, &img, err);
    if (s != KILN_OK) return s;
    kiln_tensor_view in = kiln_interp_input(t->interp, 0);
    if (t->augment) {
      s = augment(t, &img, index, epoch, &count, err);
      float *dst = in.data;
      const size_t n = (size_t)t->layout.input_h * t->layout.input_w * 3;
      for (size_t i = 0; i < n && s == KILN_OK; i++) dst[i] = (t->pixels[i] - 127.5f) / 127.5f;
      w = (float)t->layout.input_w;
      h = (float)t->layout.input_h;
    } else {
      s = kiln_image_to_tensor(&img, NULL, &in, err);
    }
    kiln_image_free(&img);
    if (s == KILN_OK) s = run_body(t, index, slot, err);
    if (s == KILN_OK && t->cache) from_cache(t, index, slot);
  }
  if (s != KILN_OK) return s;
  targets(t, count, w, h, slot);
  t->feature_seconds += now_seconds() - t0;
  return KILN_OK;
}
