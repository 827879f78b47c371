/*
 * TFLite_Detection_PostProcess reference kernel (see
 * kernels/ref/detection_postprocess_ref.h for shapes and guarantees).
 *
 * Every floating-point expression mirrors detection_postprocess.cc: the
 * decode runs in double and rounds to float once per quantity, IoU runs in
 * float with std::max/std::min's NaN behaviour, and products are kept in
 * separate statements so no compiler may fuse them into FMAs. Orders that
 * decide ties follow the libstdc++ algorithms LiteRT's binaries use:
 * std::stable_sort (ties by index), std::partial_sort (a binary heap whose
 * exact sift order is reproduced below), std::inplace_merge (ties keep the
 * earlier class first), and ArgMaxVector (first maximum).
 */
#include "kernels/ref/detection_postprocess_ref.h"

#include <math.h>
#include <string.h>

void kiln_f32_detection_decode_ref(const float *encodings, int32_t enc_stride,
                                   const float *anchors, int32_t n, float y_scale, float x_scale,
                                   float h_scale, float w_scale, float *boxes) {
  for (int32_t i = 0; i < n; i++) {
    const float *e = encodings + (size_t)i * (size_t)enc_stride;
    const float *a = anchors + 4 * (size_t)i;
    double yc = (double)e[0] / (double)y_scale;
    yc = yc * (double)a[2];
    yc = yc + (double)a[0];
    double xc = (double)e[1] / (double)x_scale;
    xc = xc * (double)a[3];
    xc = xc + (double)a[1];
    double hh = 0.5 * exp((double)e[2] / (double)h_scale);
    hh = hh * (double)a[2];
    double hw = 0.5 * exp((double)e[3] / (double)w_scale);
    hw = hw * (double)a[3];
    const float ycenter = (float)yc, xcenter = (float)xc;
    const float half_h = (float)hh, half_w = (float)hw;
    float *b = boxes + 4 * (size_t)i;
    b[0] = ycenter - half_h;
    b[1] = xcenter - half_w;
    b[2] = ycenter + half_h;
    b[3] = xcenter + half_w;
  }
}

void kiln_u8_detection_dequantize_ref(const uint8_t *q, size_t n, int32_t zero_point, float scale,
                                      float *out) {
  const float zp = (float)zero_point;
  for (size_t i = 0; i < n; i++) out[i] = ((float)q[i] - zp) * scale;
}

void kiln_s8_detection_dequantize_ref(const int8_t *q, size_t n, int32_t zero_point, float scale,
                                      float *out) {
  const float zp = (float)zero_point;
  for (size_t i = 0; i < n; i++) out[i] = ((float)q[i] - zp) * scale;
}

/* std::max<float> / std::min<float>: with a NaN they return the first
 * argument. */
static float max_f(float a, float b) { return a < b ? b : a; }
static float min_f(float a, float b) { return b < a ? b : a; }

static float iou(const float *boxes, int32_t i, int32_t j) {
  const float *a = boxes + 4 * (size_t)i;
  const float *b = boxes + 4 * (size_t)j;
  const float area_a = (a[2] - a[0]) * (a[3] - a[1]);
  const float area_b = (b[2] - b[0]) * (b[3] - b[1]);
  if (area_a <= 0 || area_b <= 0) return 0.0f;
  const float ymin = max_f(a[0], b[0]);
  const float xmin = max_f(a[1], b[1]);
  const float ymax = min_f(a[2], b[2]);
  const float xmax = min_f(a[3], b[3]);
  const float inter = max_f(ymax - ymin, 0.0f) * max_f(xmax - xmin, 0.0f);
  const float sum = area_a + area_b;
  return inter / (sum - inter);
}

/* ---- Orders ---- */

/* Indices 0..n-1 sorted by values descending, ties by index (what
 * std::stable_sort gives with `values[i] > values[j]`). Bottom-up merge
 * sort; tmp holds n entries. */
static void stable_argsort_desc(const float *values, int32_t n, int32_t *idx, int32_t *tmp) {
  for (int32_t i = 0; i < n; i++) idx[i] = i;
  for (int64_t width = 1; width < n; width *= 2) {
    for (int64_t lo = 0; lo < n; lo += 2 * width) {
      const int64_t mid = lo + width < n ? lo + width : n;
      const int64_t hi = lo + 2 * width < n ? lo + 2 * width : n;
      int64_t i = lo, j = mid, k = lo;
      while (i < mid && j < hi) tmp[k++] = values[idx[j]] > values[idx[i]] ? idx[j++] : idx[i++];
      while (i < mid) tmp[k++] = idx[i++];
      while (j < hi) tmp[k++] = idx[j++];
    }
    memcpy(idx, tmp, (size_t)n * sizeof *idx);
  }
}

/* libstdc++'s heap algorithms with comp(a, b) = values[a] > values[b], on
 * the index array f. */
static bool comes_first(const float *values, int32_t a, int32_t b) { return values[a] > values[b]; }

static void heap_push(int32_t *f, ptrdiff_t hole, ptrdiff_t top, int32_t value,
                      const float *values) {
  ptrdiff_t parent = (hole - 1) / 2;
  while (hole > top && comes_first(values, f[parent], value)) {
    f[hole] = f[parent];
    hole = parent;
    parent = (hole - 1) / 2;
  }
  f[hole] = value;
}

static void heap_adjust(int32_t *f, ptrdiff_t hole, ptrdiff_t len, int32_t value,
                        const float *values) {
  const ptrdiff_t top = hole;
  ptrdiff_t child = hole;
  while (child < (len - 1) / 2) {
    child = 2 * (child + 1);
    if (comes_first(values, f[child], f[child - 1])) child--;
    f[hole] = f[child];
    hole = child;
  }
  if ((len & 1) == 0 && child == (len - 2) / 2) {
    child = 2 * (child + 1);
    f[hole] = f[child - 1];
    hole = child - 1;
  }
  heap_push(f, hole, top, value, values);
}

/* Moves the heap top of f[0..len) to *result and reinserts *result's old
 * value (std::__pop_heap). */
static void heap_pop(int32_t *f, ptrdiff_t len, int32_t *result, const float *values) {
  const int32_t value = *result;
  *result = f[0];
  heap_adjust(f, 0, len, value, values);
}

/* std::partial_sort(f, f + middle, f + last, comp). */
static void partial_sort_desc(int32_t *f, ptrdiff_t middle, ptrdiff_t last, const float *values) {
  if (middle >= 2) {
    for (ptrdiff_t parent = (middle - 2) / 2;; parent--) {
      heap_adjust(f, parent, middle, f[parent], values);
      if (parent == 0) break;
    }
  }
  for (ptrdiff_t i = middle; i < last; i++) {
    if (comes_first(values, f[i], f[0])) heap_pop(f, middle, &f[i], values);
  }
  for (ptrdiff_t len = middle; len > 1;) {
    len--;
    heap_pop(f, len, &f[len], values);
  }
}

/* optimized_ops::ArgMaxVector: the first index of the maximum. */
static int32_t argmax(const float *values, int32_t n) {
  float best = values[0];
  int32_t at = 0;
  for (int32_t i = 1; i < n; i++) {
    if (values[i] > best) {
      best = values[i];
      at = i;
    }
  }
  return at;
}

/* ---- Scratch ---- */

typedef struct nms_scratch {
  float *keep_scores;  /* [N] */
  int32_t *keep_idx;   /* [N] */
  int32_t *sorted;     /* [N] */
  int32_t *sort_tmp;   /* [N] */
  int32_t *selected;   /* [N] */
  uint8_t *active;     /* [N] */
  float *row_scores;   /* [N]: best class score (fast) or one class's scores (regular) */
  int32_t *class_idx;  /* fast: [N][num_categories] */
  int32_t *row_tmp;    /* fast: [C] */
  int32_t *merged_idx; /* regular: [dpc + max_detections], then a copy */
  float *merged_score;
  int32_t *merge_tmp_idx;
  float *merge_tmp_score;
} nms_scratch;

static size_t take(size_t *offset, size_t bytes) {
  const size_t at = *offset;
  *offset += (bytes + 15) & ~(size_t)15;
  return at;
}

static int32_t num_categories(const kiln_detpp_params *p) {
  return p->max_classes_per_detection < p->num_classes ? p->max_classes_per_detection
                                                       : p->num_classes;
}

static int32_t regular_per_class(const kiln_detpp_params *p) {
  return p->detections_per_class < p->max_detections ? p->detections_per_class
                                                     : p->max_detections;
}

/* Lays the scratch out; with base NULL only measures it. */
static size_t layout(const kiln_detpp_params *p, uint8_t *base, nms_scratch *s) {
  const size_t n = (size_t)p->num_boxes;
  size_t off = 0;
  const size_t keep_scores = take(&off, n * sizeof(float));
  const size_t keep_idx = take(&off, n * sizeof(int32_t));
  const size_t sorted = take(&off, n * sizeof(int32_t));
  const size_t sort_tmp = take(&off, n * sizeof(int32_t));
  const size_t selected = take(&off, n * sizeof(int32_t));
  const size_t active = take(&off, n);
  const size_t row_scores = take(&off, n * sizeof(float));
  size_t class_idx = 0, row_tmp = 0, m_idx = 0, m_score = 0, t_idx = 0, t_score = 0;
  if (p->use_regular_nms) {
    const size_t cap = (size_t)regular_per_class(p) + (size_t)p->max_detections;
    m_idx = take(&off, cap * sizeof(int32_t));
    m_score = take(&off, cap * sizeof(float));
    t_idx = take(&off, cap * sizeof(int32_t));
    t_score = take(&off, cap * sizeof(float));
  } else {
    class_idx = take(&off, n * (size_t)num_categories(p) * sizeof(int32_t));
    row_tmp = take(&off, (size_t)p->num_classes * sizeof(int32_t));
  }
  if (base) {
    s->keep_scores = (float *)(void *)(base + keep_scores);
    s->keep_idx = (int32_t *)(void *)(base + keep_idx);
    s->sorted = (int32_t *)(void *)(base + sorted);
    s->sort_tmp = (int32_t *)(void *)(base + sort_tmp);
    s->selected = (int32_t *)(void *)(base + selected);
    s->active = base + active;
    s->row_scores = (float *)(void *)(base + row_scores);
    s->class_idx = (int32_t *)(void *)(base + class_idx);
    s->row_tmp = (int32_t *)(void *)(base + row_tmp);
    s->merged_idx = (int32_t *)(void *)(base + m_idx);
    s->merged_score = (float *)(void *)(base + m_score);
    s->merge_tmp_idx = (int32_t *)(void *)(base + t_idx);
    s->merge_tmp_score = (float *)(void *)(base + t_score);
  }
  return off;
}

size_t kiln_detection_nms_scratch_bytes(const kiln_detpp_params *p) {
  return layout(p, NULL, NULL);
}

/* ---- NMS ---- */

/* NonMaxSuppressionSingleClassHelper: greedy NMS over the scores >=
 * threshold, best first; writes the kept anchor indices to s->selected and
 * returns their count (<= max_det). */
static int32_t nms_single(const kiln_detpp_params *p, const float *boxes, const float *scores,
                          int32_t max_det, nms_scratch *s) {
  int32_t kept = 0;
  for (int32_t i = 0; i < p->num_boxes; i++) {
    if (scores[i] >= p->score_threshold) {
      s->keep_scores[kept] = scores[i];
      s->keep_idx[kept] = i;
      kept++;
    }
  }
  stable_argsort_desc(s->keep_scores, kept, s->sorted, s->sort_tmp);
  const int32_t out_size = kept < max_det ? kept : max_det;
  memset(s->active, 1, (size_t)kept);
  int32_t n_active = kept, n_sel = 0;
  for (int32_t i = 0; i < kept; i++) {
    if (n_active == 0 || n_sel >= out_size) break;
    if (!s->active[i]) continue;
    const int32_t box = s->keep_idx[s->sorted[i]];
    s->selected[n_sel++] = box;
    s->active[i] = 0;
    n_active--;
    for (int32_t j = i + 1; j < kept; j++) {
      if (s->active[j] && iou(boxes, box, s->keep_idx[s->sorted[j]]) > p->iou_threshold) {
        s->active[j] = 0;
        n_active--;
      }
    }
  }
  return n_sel;
}

static int32_t nms_fast(const kiln_detpp_params *p, const float *boxes, const float *scores,
                        nms_scratch *s, float *out_boxes, float *out_classes, float *out_scores) {
  const int32_t n_cat = num_categories(p);
  const int32_t offset = p->num_classes_with_bg - p->num_classes;
  for (int32_t row = 0; row < p->num_boxes; row++) {
    const float *row_scores = scores + (size_t)row * (size_t)p->num_classes_with_bg + offset;
    int32_t *classes = s->class_idx + (size_t)row * (size_t)n_cat;
    if (n_cat == 1) {
      classes[0] = argmax(row_scores, p->num_classes);
    } else {
      for (int32_t c = 0; c < p->num_classes; c++) s->row_tmp[c] = c;
      partial_sort_desc(s->row_tmp, n_cat, p->num_classes, row_scores);
      memcpy(classes, s->row_tmp, (size_t)n_cat * sizeof *classes);
    }
    s->row_scores[row] = row_scores[classes[0]];
  }
  const int32_t n_sel = nms_single(p, boxes, s->row_scores, p->max_detections, s);
  for (int32_t o = 0; o < n_sel; o++) {
    const int32_t box = s->selected[o];
    const float *row_scores = scores + (size_t)box * (size_t)p->num_classes_with_bg + offset;
    const int32_t *classes = s->class_idx + (size_t)box * (size_t)n_cat;
    for (int32_t c = 0; c < n_cat; c++) {
      const size_t slot = (size_t)p->max_classes_per_detection * (size_t)o + (size_t)c;
      memcpy(out_boxes + 4 * slot, boxes + 4 * (size_t)box, 4 * sizeof(float));
      out_classes[slot] = (float)classes[c];
      out_scores[slot] = row_scores[classes[c]];
    }
  }
  return n_sel;
}

/* Merges the score-sorted runs [0, mid) and [mid, end) of the kept list;
 * on equal scores the earlier run (earlier classes) stays first. */
static void merge_runs(nms_scratch *s, int32_t mid, int32_t end) {
  int32_t i = 0, j = mid, k = 0;
  while (i < mid && j < end) {
    const bool right = s->merged_score[j] > s->merged_score[i];
    const int32_t from = right ? j++ : i++;
    s->merge_tmp_idx[k] = s->merged_idx[from];
    s->merge_tmp_score[k++] = s->merged_score[from];
  }
  while (i < mid) {
    s->merge_tmp_idx[k] = s->merged_idx[i];
    s->merge_tmp_score[k++] = s->merged_score[i++];
  }
  while (j < end) {
    s->merge_tmp_idx[k] = s->merged_idx[j];
    s->merge_tmp_score[k++] = s->merged_score[j++];
  }
  memcpy(s->merged_idx, s->merge_tmp_idx, (size_t)end * sizeof(int32_t));
  memcpy(s->merged_score, s->merge_tmp_score, (size_t)end * sizeof(float));
}

static int32_t nms_regular(const kiln_detpp_params *p, const float *boxes, const float *scores,
                           nms_scratch *s, float *out_boxes, float *out_classes,
                           float *out_scores) {
  const int32_t cb = p->num_classes_with_bg;
  const int32_t offset = cb - p->num_classes;
  const int32_t per_class = regular_per_class(p);
  int32_t size = 0;
  for (int32_t col = 0; col < p->num_classes; col++) {
    for (int32_t row = 0; row < p->num_boxes; row++)
      s->row_scores[row] = scores[(size_t)row * (size_t)cb + (size_t)(col + offset)];
    const int32_t k = nms_single(p, boxes, s->row_scores, per_class, s);
    if (k == 0) continue;
    for (int32_t i = 0; i < k; i++) {
      s->merged_score[size + i] = s->row_scores[s->selected[i]];
      s->merged_idx[size + i] = s->selected[i] * cb + col + offset;
    }
    merge_runs(s, size, size + k);
    size = size + k < p->max_detections ? size + k : p->max_detections;
  }
  for (int32_t o = 0; o < size; o++) {
    const int32_t anchor = s->merged_idx[o] / cb;
    const int32_t cls = s->merged_idx[o] - anchor * cb - offset;
    memcpy(out_boxes + 4 * (size_t)o, boxes + 4 * (size_t)anchor, 4 * sizeof(float));
    out_classes[o] = (float)cls;
    out_scores[o] = s->merged_score[o];
  }
  return size;
}

int32_t kiln_f32_detection_nms_ref(const kiln_detpp_params *p, const float *boxes,
                                   const float *scores, void *scratch, float *out_boxes,
                                   float *out_classes, float *out_scores) {
  const size_t slots = (size_t)p->max_detections * (size_t)p->max_classes_per_detection;
  memset(out_boxes, 0, slots * 4 * sizeof(float));
  memset(out_classes, 0, slots * sizeof(float));
  memset(out_scores, 0, slots * sizeof(float));
  nms_scratch s;
  layout(p, scratch, &s);
  if (p->use_regular_nms)
    return nms_regular(p, boxes, scores, &s, out_boxes, out_classes, out_scores);
  return nms_fast(p, boxes, scores, &s, out_boxes, out_classes, out_scores);
}
