/*
 * Segmentation: a model cut between ops (in execution order) into
 * standalone models for a pipeline of devices. A tensor produced in segment
 * p (or a graph input: p = -1) and needed up to segment l (its last
 * consumer's, or past the end for a graph output) is an output of segments
 * p..l-1 and an input of segments p+1..l, so segment k's inputs are exactly
 * segment k-1's outputs, in the same order (tensor index; the first
 * segment's inputs and the last one's outputs keep the model's order).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "compile/compile_int.h"

kiln_status compile_cuts_by_params(const kiln_compiled_model *cm, int32_t n_segments, int32_t *cuts,
                                   kiln_error *err) {
  const int32_t n_ops = cm->n_ops;
  if (n_segments < 2 || n_segments > n_ops)
    return kiln_fail(err, KILN_ERR_INVALID_ARG, "%s: cannot split %d ops into %d segments (at most one per op)",
                     cm->source_path, (int)n_ops, (int)n_segments);
  int64_t total = 0;
  for (int32_t i = 0; i < n_ops; i++) total += cm->ops[i].param_bytes;
  int32_t prev = 0;
  for (int32_t k = 1; k < n_segments; k++) {
    const int32_t lo = prev + 1, hi = n_ops - (n_segments - k);
    int32_t best = lo;
    if (total > 0) {
      /* prefix[c] = bytes of ops [0, c); pick c closest to k/n of the total. */
      const double goal = (double)total * k / n_segments;
      double best_gap = -1;
      int64_t prefix = 0;
      for (int32_t c = 1; c <= hi; c++) {
        prefix += cm->ops[c - 1].param_bytes;
        double gap = (double)prefix - goal;
        if (gap < 0) gap = -gap;
        if (c >= lo && (best_gap < 0 || gap < best_gap)) {
          best_gap = gap;
          best = c;
        }
      }
    } else {
      best = (int32_t)((int64_t)n_ops * k / n_segments);
      if (best < lo) best = lo;
      if (best > hi) best = hi;
    }
    cuts[k - 1] = best;
    prev = best;
  }
  return KILN_OK;
}

static int cmp_i32(const void *a, const void *b) {
  int32_t x = *(const int32_t *)a, y = *(const int32_t *)b;
  return (x > y) - (x < y);
}

kiln_status compile_cuts_by_tensors(const kiln_model *m, const char *const *names, int32_t n,
                                    int32_t *cuts, int32_t *n_cuts, kiln_error *err) {
  char unknown[300] = "";
  size_t len = 0;
  *n_cuts = 0;
  for (int32_t i = 0; i < n; i++) {
    int32_t x = kiln_model_find_tensor(m, names[i]);
    if (x < 0) {
      if (len < sizeof unknown)
        len += (size_t)snprintf(unknown + len, sizeof unknown - len, "%s'%s'", len ? ", " : "", names[i]);
      continue;
    }
    int32_t producer = -1;
    for (int32_t o = 0; o < m->n_ops && producer < 0; o++)
      for (int32_t k = 0; k < m->ops[o].n_outputs; k++)
        if (m->ops[o].outputs[k] == x) producer = o;
    if (producer < 0)
      return kiln_fail(err, KILN_ERR_INVALID_ARG,
                       "--intermediate-tensors: '%s' is not computed by an op (a graph input or a constant)", names[i]);
    if (producer == m->n_ops - 1)
      return kiln_fail(err, KILN_ERR_INVALID_ARG,
                       "--intermediate-tensors: '%s' comes from the last op; there is nothing after it to cut", names[i]);
    cuts[(*n_cuts)++] = producer + 1;
  }
  if (unknown[0])
    return kiln_fail(err, KILN_ERR_INVALID_ARG, "--intermediate-tensors: no tensor named %s in the model", unknown);
  qsort(cuts, (size_t)*n_cuts, sizeof *cuts, cmp_i32);
  int32_t k = 0;
  for (int32_t i = 0; i < *n_cuts; i++)
    if (k == 0 || cuts[i] != cuts[k - 1]) cuts[k++] = cuts[i];
  *n_cuts = k;
  return KILN_OK;
}

typedef struct split_state {
  const kiln_model *m;
  int32_t n_seg;
  int32_t *seg_of_op;  /* [n_ops] */
  int32_t *prod_seg;   /* [n_tensors]: -1 graph input, -2 neither produced nor input */
  int32_t *last_seg;   /* [n_tensors]: n_seg for graph outputs, -1 unused */
  int32_t *map;        /* [n_tensors] old -> new index in the segment being built */
} split_state;

static bool crosses_in(const split_state *s, int32_t x, int32_t k) {
  return !s->m->tensors[x].data && s->prod_seg[x] >= -1 && s->prod_seg[x] < k && s->last_seg[x] >= k;
}

static bool crosses_out(const split_state *s, int32_t x, int32_t k) {
  return !s->m->tensors[x].data && s->prod_seg[x] >= -1 && s->prod_seg[x] <= k && s->last_seg[x] > k;
}

static int32_t seg_tensor(split_state *s, kiln_model *seg, int32_t x, kiln_error *err) {
  if (x < 0) return -1;
  if (s->map[x] >= 0) return s->map[x];
  const kiln_tensor *t = &s->m->tensors[x];
  int32_t y = kiln_model_add_tensor(seg, t->name, t->dtype, t->rank, t->shape, t->quant.count ? &t->quant : NULL,
                                    t->data, err);
  if (y >= 0) {
    seg->tensors[y].flags = t->flags;
    s->map[x] = y;
  }
  return y;
}

static kiln_status build_segment(split_state *s, int32_t k, kiln_model **out, kiln_error *err) {
  const kiln_model *m = s->m;
  kiln_model *seg = NULL;
  kiln_status st = kiln_model_new(&seg, err);
  if (st != KILN_OK) return st;
  int32_t *ins = kiln_malloc((size_t)(m->n_tensors + 1) * sizeof *ins);
  int32_t *outs = kiln_malloc((size_t)(m->n_tensors + 1) * sizeof *outs);
  int32_t n_in = 0, n_out = 0;
  if (!ins || !outs) {
    st = kiln_fail(err, KILN_ERR_NOMEM, "out of memory splitting the model");
    goto done;
  }
  for (int32_t x = 0; x < m->n_tensors; x++) s->map[x] = -1;
  /* Inputs: the model's order for the first segment, tensor order after. */
  if (k == 0) {
    for (int32_t i = 0; i < m->n_inputs; i++)
      if (crosses_in(s, m->inputs[i], 0)) ins[n_in++] = m->inputs[i];
  } else {
    for (int32_t x = 0; x < m->n_tensors; x++)
      if (crosses_in(s, x, k)) ins[n_in++] = x;
  }
  for (int32_t i = 0; i < n_in; i++)
    if ((ins[i] = seg_tensor(s, seg, ins[i], err)) < 0) goto fail;
  for (int32_t i = 0; i < m->n_ops; i++) {
    if (s->seg_of_op[i] != k) continue;
    const kiln_op *op = &m->ops[i];
    int32_t in_idx[64], out_idx[64];
    if (op->n_inputs > 64 || op->n_outputs > 64) {
      st = kiln_fail(err, KILN_ERR_UNSUPPORTED, "op %d (%s): more than 64 inputs or outputs", (int)i, compile_op_type(op));
      goto done;
    }
    for (int32_t q = 0; q < op->n_inputs; q++)
      if ((in_idx[q] = seg_tensor(s, seg, op->inputs[q], err)) < 0 && op->inputs[q] >= 0) goto fail;
    for (int32_t q = 0; q < op->n_outputs; q++)
      if ((out_idx[q] = seg_tensor(s, seg, op->outputs[q], err)) < 0) goto fail;
    int32_t o = kiln_model_add_op(seg, op->code, op->custom_code, in_idx, op->n_inputs, out_idx, op->n_outputs,
                                  &op->options, op->custom_options, op->custom_options_bytes, err);
    if (o < 0) goto fail;
    seg->ops[o].version = op->version;
  }
  if (k == s->n_seg - 1) {
    for (int32_t i = 0; i < m->n_outputs; i++) outs[n_out++] = m->outputs[i];
  } else {
    for (int32_t x = 0; x < m->n_tensors; x++)
      if (crosses_out(s, x, k)) outs[n_out++] = x;
  }
  for (int32_t i = 0; i < n_out; i++)
    if ((outs[i] = seg_tensor(s, seg, outs[i], err)) < 0) goto fail;
  if ((st = kiln_model_set_io(seg, ins, n_in, outs, n_out, err)) != KILN_OK) goto done;
  char desc[256];
  snprintf(desc, sizeof desc, "segment %d of %d of: %s", (int)k, (int)s->n_seg, m->description);
  char *d = kiln_model_alloc(seg, strlen(desc) + 1);
  kiln_metadata *md = kiln_model_alloc(seg, (size_t)(m->n_metadata + 1) * sizeof *md);
  if (!d || !md) {
    st = kiln_fail(err, KILN_ERR_NOMEM, "out of memory splitting the model");
    goto done;
  }
  memcpy(d, desc, strlen(desc) + 1);
  seg->description = d;
  /* Metadata entries (e.g. min_runtime_version) are copied. */
  for (int32_t i = 0; i < m->n_metadata; i++) {
    uint8_t *bytes = kiln_model_alloc(seg, m->metadata[i].bytes + 1);
    char *name = kiln_model_alloc(seg, strlen(m->metadata[i].name) + 1);
    if (!bytes || !name) {
      st = kiln_fail(err, KILN_ERR_NOMEM, "out of memory splitting the model");
      goto done;
    }
    memcpy(bytes, m->metadata[i].data, m->metadata[i].bytes);
    memcpy(name, m->metadata[i].name, strlen(m->metadata[i].name) + 1);
    md[i] = (kiln_metadata){name, bytes, m->metadata[i].bytes};
  }
  seg->metadata = md;
  seg->n_metadata = m->n_metadata;
  goto done;
fail:
  st = err ? err->status : KILN_ERR_INTERNAL;
done:
  kiln_free(ins);
  kiln_free(outs);
  if (st != KILN_OK) {
    kiln_model_free(seg);
    seg = NULL;
  }
  *out = seg;
  return st;
}

kiln_status kiln_compile_split(const kiln_model *model, const int32_t *cuts, int32_t n_cuts,
                               kiln_model **segments, kiln_error *err) {
  for (int32_t i = 0; i < n_cuts; i++)
    if (cuts[i] <= (i ? cuts[i - 1] : 0) || cuts[i] >= model->n_ops)
      return kiln_fail(err, KILN_ERR_INVALID_ARG, "cut %d at op %d: cuts must increase within (0, %d)", (int)i,
                       (int)cuts[i], (int)model->n_ops);
  split_state s = {model, n_cuts + 1, NULL, NULL, NULL, NULL};
  const size_t nt = (size_t)model->n_tensors + 1, no = (size_t)model->n_ops + 1;
  s.seg_of_op = kiln_malloc(no * sizeof(int32_t));
  s.prod_seg = kiln_malloc(nt * sizeof(int32_t));
  s.last_seg = kiln_malloc(nt * sizeof(int32_t));
  s.map = kiln_malloc(nt * sizeof(int32_t));
  kiln_status st = KILN_OK;
  int32_t built = 0;
  if (!s.seg_of_op || !s.prod_seg || !s.last_seg || !s.map) {
    st = kiln_fail(err, KILN_ERR_NOMEM, "out of memory splitting the model");
    goto done;
  }
  for (int32_t i = 0, k = 0; i < model->n_ops; i++) {
    while (k < n_cuts && i >= cuts[k]) k++;
    s.seg_of_op[i] = k;
  }
  for (int32_t x = 0; x < model->n_tensors; x++) {
    s.prod_seg[x] = -2;
    s.last_seg[x] = -1;
  }
  for (int32_t i = 0; i < model->n_inputs; i++) s.prod_seg[model->inputs[i]] = -1;
  for (int32_t i = 0; i < model->n_ops; i++) {
    const kiln_op *op = &model->ops[i];
    for (int32_t k = 0; k < op->n_outputs; k++) s.prod_seg[op->outputs[k]] = s.seg_of_op[i];
    for (int32_t k = 0; k < op->n_inputs; k++)
      if (op->inputs[k] >= 0 && s.last_seg[op->inputs[k]] < s.seg_of_op[i]) s.last_seg[op->inputs[k]] = s.seg_of_op[i];
  }
  for (int32_t i = 0; i < model->n_outputs; i++) s.last_seg[model->outputs[i]] = s.n_seg;
  for (; built < s.n_seg; built++)
    if ((st = build_segment(&s, built, &segments[built], err)) != KILN_OK) break;
  if (st != KILN_OK) {
    kiln_error_prefix(err, "segment %d of %d", (int)built, (int)s.n_seg);
    for (int32_t i = 0; i < built; i++) {
      kiln_model_free(segments[i]);
      segments[i] = NULL;
    }
  }
done:
  kiln_free(s.seg_of_op);
  kiln_free(s.prod_seg);
  kiln_free(s.last_seg);
  kiln_free(s.map);
  return st;
}
