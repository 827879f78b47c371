/*
 * The interpreter (kiln/interp.h): create = look up every op, check the
 * graph's data flow and quantization, prepare each op in order, plan the
 * activation arena; invoke = call each op's eval. Invoke allocates nothing.
 */
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "base/threadpool.h"
#include "kernels/cpu.h"
#include "kiln/interp.h"
#include "runtime/interp_int.h"
#include "runtime/planner.h"

struct kiln_interp {
  const kiln_model *model;
  kiln_interp_options options;
  kiln_pool pool; /* rt tensors, nodes, op params, arena, scratch */
  kiln_rt_tensor *tensors;
  kiln_node *nodes;
  const kiln_op_impl **impls;
  uint8_t *arena;
  uint8_t *scratch; /* n_threads * scratch_stride */
  size_t scratch_stride;
  kiln_threadpool *threads;
  bool own_threads;
  uint32_t isa;           /* ISA bits prepare used */
  size_t *offsets;        /* [n_tensors] arena offsets or KILN_NO_OFFSET */
  kiln_packed_rec *packed; /* what prepare packed, in order */
  kiln_memory_stats mem;
  kiln_op_profile *profile;
};

static const char *op_name(const kiln_op *op) {
  if (op->code == KILN_OP_CUSTOM && op->custom_code) return op->custom_code;
  return kiln_opcode_name(op->code);
}

static kiln_status check_quant(const kiln_model *m, kiln_error *err) {
  for (int32_t i = 0; i < m->n_tensors; i++) {
    const kiln_tensor *t = &m->tensors[i];
    if (t->quant.count == 0) continue;
    int32_t lo = INT32_MIN, hi = INT32_MAX;
    if (t->dtype == KILN_I8) lo = -128, hi = 127;
    else if (t->dtype == KILN_U8) lo = 0, hi = 255;
    else if (t->dtype == KILN_I16) lo = -32768, hi = 32767;
    else if (t->dtype != KILN_I32 && t->dtype != KILN_I64) continue; /* float: range info only */
    for (int32_t k = 0; k < t->quant.count; k++) {
      if (!(t->quant.scale[k] > 0.0f))
        return kiln_fail(err, KILN_ERR_FORMAT, "tensor %d '%s': quantization scale %g is not positive",
                         (int)i, t->name, (double)t->quant.scale[k]);
      if (t->quant.zero_point[k] < lo || t->quant.zero_point[k] > hi)
        return kiln_fail(err, KILN_ERR_FORMAT, "tensor %d '%s': zero point %d out of %s range",
                         (int)i, t->name, (int)t->quant.zero_point[k], kiln_dtype_name(t->dtype));
    }
  }
  return KILN_OK;
}

/* Every op input must be a constant, a graph input, a variable, or produced
 * by an earlier op; op outputs must not be constants or graph inputs. */
static kiln_status check_dataflow(const kiln_model *m, kiln_error *err) {
  uint8_t *ready = kiln_calloc((size_t)m->n_tensors + 1, 1);
  if (!ready) return kiln_fail(err, KILN_ERR_NOMEM, "out of memory");
  kiln_status s = KILN_OK;
  for (int32_t i = 0; i < m->n_tensors; i++)
    ready[i] = m->tensors[i].data != NULL || (m->tensors[i].flags & KILN_TENSOR_VARIABLE);
  for (int32_t i = 0; i < m->n_inputs; i++) {
    if (m->tensors[m->inputs[i]].data) {
      s = kiln_fail(err, KILN_ERR_FORMAT, "graph input %d (tensor %d '%s') is a constant", (int)i,
                    (int)m->inputs[i], m->tensors[m->inputs[i]].name);
      goto done;
    }
    ready[m->inputs[i]] = 1;
  }
  for (int32_t i = 0; i < m->n_ops && s == KILN_OK; i++) {
    const kiln_op *op = &m->ops[i];
    for (int32_t k = 0; k < op->n_inputs; k++) {
      int32_t t = op->inputs[k];
      if (t >= 0 && !ready[t]) {
        s = kiln_fail(err, KILN_ERR_FORMAT, "op %d (%s): input %d (tensor %d '%s') is never computed before it",
                      (int)i, op_name(op), (int)k, (int)t, m->tensors[t].name);
        goto done;
      }
    }
    for (int32_t k = 0; k < op->n_outputs; k++) {
      int32_t t = op->outputs[k];
      if (m->tensors[t].data || ready[t] == 2 ||
          (ready[t] && !(m->tensors[t].flags & KILN_TENSOR_VARIABLE))) {
        s = kiln_fail(err, KILN_ERR_FORMAT, "op %d (%s): output %d (tensor %d '%s') is already defined",
                      (int)i, op_name(op), (int)k, (int)t, m->tensors[t].name);
        goto done;
      }
      ready[t] = 2;
    }
  }
  for (int32_t i = 0; i < m->n_outputs; i++) {
    if (!ready[m->outputs[i]]) {
      s = kiln_fail(err, KILN_ERR_FORMAT, "graph output %d (tensor %d '%s') is never computed",
                    (int)i, (int)m->outputs[i], m->tensors[m->outputs[i]].name);
      goto done;
    }
  }
done:
  kiln_free(ready);
  return s;
}

static kiln_status lookup_ops(kiln_interp *it, kiln_error *err) {
  const kiln_model *m = it->model;
  for (int32_t i = 0; i < m->n_ops; i++) {
    const kiln_op *op = &m->ops[i];
    it->impls[i] = kiln_op_lookup(op->code, op->custom_code);
    if (!it->impls[i]) {
      if (op->code == KILN_OP_CUSTOM)
        return kiln_fail(err, KILN_ERR_UNSUPPORTED, "op %d: custom op '%s' is not supported by kiln",
                         (int)i, op->custom_code ? op->custom_code : "");
      return kiln_fail(err, KILN_ERR_UNSUPPORTED, "op %d (%s, builtin code %d): not supported by kiln",
                       (int)i, kiln_opcode_name(op->code), (int)op->code);
    }
  }
  return KILN_OK;
}

static kiln_status setup_tensors(kiln_interp *it, kiln_error *err) {
  const kiln_model *m = it->model;
  it->tensors = kiln_pool_alloc(&it->pool, (size_t)m->n_tensors * sizeof *it->tensors, 64);
  if (!it->tensors && m->n_tensors) return kiln_fail(err, KILN_ERR_NOMEM, "out of memory");
  for (int32_t i = 0; i < m->n_tensors; i++) {
    const kiln_tensor *t = &m->tensors[i];
    kiln_rt_tensor *rt = &it->tensors[i];
    rt->name = t->name;
    rt->dtype = t->dtype;
    rt->rank = t->rank;
    memcpy(rt->shape, t->shape, sizeof rt->shape);
    rt->quant = &t->quant;
    rt->bytes = kiln_tensor_bytes(t);
    if (t->data) {
      rt->data = (void *)t->data; /* kernels never write constants (is_const) */
      rt->is_const = true;
    }
  }
  return KILN_OK;
}

static kiln_status prepare_nodes(kiln_interp *it, const kiln_interp_setup *setup,
                                 kiln_error *err) {
  const kiln_model *m = it->model;
  it->nodes = kiln_pool_alloc(&it->pool, (size_t)m->n_ops * sizeof *it->nodes, 64);
  if (!it->nodes && m->n_ops) return kiln_fail(err, KILN_ERR_NOMEM, "out of memory");
  kiln_prepare_ctx ctx = {m, NULL, &it->pool, err, it->options.force_ref, it->options.n_threads};
  ctx.isa = it->isa;
  ctx.record_tail = &it->packed;
  if (setup) {
    ctx.stored = setup->stored;
    ctx.n_stored = setup->n_stored;
  }
  size_t params_before = it->pool.total_bytes;
  for (int32_t i = 0; i < m->n_ops; i++) {
    const kiln_op *op = &m->ops[i];
    kiln_node *node = &it->nodes[i];
    node->op = op;
    node->index = i;
    node->n_inputs = op->n_inputs;
    node->n_outputs = op->n_outputs;
    node->inputs = kiln_pool_alloc(&it->pool, ((size_t)op->n_inputs + 1) * sizeof(kiln_rt_tensor *), 8);
    node->outputs = kiln_pool_alloc(&it->pool, ((size_t)op->n_outputs + 1) * sizeof(kiln_rt_tensor *), 8);
    if (!node->inputs || !node->outputs) return kiln_fail(err, KILN_ERR_NOMEM, "out of memory");
    for (int32_t k = 0; k < op->n_inputs; k++)
      node->inputs[k] = op->inputs[k] >= 0 ? &it->tensors[op->inputs[k]] : NULL;
    for (int32_t k = 0; k < op->n_outputs; k++) node->outputs[k] = &it->tensors[op->outputs[k]];
    ctx.node = node;
    ctx.seq = 0;
    kiln_status s = it->impls[i]->prepare(node, &ctx);
    if (s != KILN_OK) return s;
    for (int32_t k = 0; k < op->n_outputs; k++) {
      kiln_rt_tensor *o = node->outputs[k];
      int64_t n = kiln_rt_elements(o);
      o->bytes = (size_t)n * kiln_dtype_size(o->dtype);
    }
    if (node->scratch_bytes > it->mem.scratch_bytes) it->mem.scratch_bytes = node->scratch_bytes;
  }
  it->mem.params_bytes = it->pool.total_bytes - params_before + ctx.stored_bytes;
  return KILN_OK;
}

/* Takes a bundle's offsets for the planned buffers, checking that each lies
 * in the arena. */
static kiln_status use_plan(kiln_interp *it, const kiln_interp_setup *setup, const int32_t *slot,
                            kiln_plan_item *items, int32_t count, kiln_error *err) {
  /* No plan needs more than all its buffers side by side. */
  size_t side_by_side = 0;
  for (int32_t k = 0; k < count; k++)
    side_by_side += (items[k].bytes + KILN_PLAN_ALIGN - 1) / KILN_PLAN_ALIGN * KILN_PLAN_ALIGN;
  if (setup->arena_bytes > side_by_side)
    return kiln_fail(err, KILN_ERR_FORMAT,
                     "memory plan: a %zu-byte arena for buffers of %zu bytes in all",
                     setup->arena_bytes, side_by_side);
  for (int32_t i = 0; i < it->model->n_tensors; i++) {
    if (slot[i] < 0) continue;
    const size_t off = setup->arena_offsets[i], bytes = items[slot[i]].bytes;
    if (off == KILN_NO_OFFSET || off % KILN_PLAN_ALIGN != 0 || off > setup->arena_bytes ||
        bytes > setup->arena_bytes - off)
      return kiln_fail(err, KILN_ERR_FORMAT,
                       "memory plan: tensor %d '%s' (%zu bytes) has no place in the %zu-byte arena",
                       (int)i, it->tensors[i].name, bytes, setup->arena_bytes);
    items[slot[i]].offset = off;
  }
  return KILN_OK;
}

void kiln_interp_bind_memory(kiln_interp *it, uint8_t *arena, uint8_t *scratch,
                             size_t scratch_stride) {
  it->arena = arena;
  it->scratch = scratch;
  it->scratch_stride = scratch_stride;
  for (int32_t i = 0; i < it->model->n_tensors; i++)
    if (it->offsets[i] != KILN_NO_OFFSET) it->tensors[i].data = arena + it->offsets[i];
}

static kiln_status plan_arena(kiln_interp *it, const kiln_interp_setup *setup, kiln_error *err) {
  const kiln_model *m = it->model;
  int32_t n = m->n_tensors;
  kiln_plan_item *items = kiln_calloc((size_t)n + 1, sizeof *items);
  int32_t *slot = kiln_calloc((size_t)n + 1, sizeof *slot);
  it->offsets = kiln_pool_alloc(&it->pool, ((size_t)n + 1) * sizeof *it->offsets, 8);
  if (!items || !slot || !it->offsets) {
    kiln_free(items);
    kiln_free(slot);
    return kiln_fail(err, KILN_ERR_NOMEM, "out of memory");
  }
  for (int32_t i = 0; i < n; i++) slot[i] = -1;
  int32_t count = 0;
  const int32_t end = m->n_ops;
#define TOUCH(t, when)                                                     \
  do {                                                                     \
    int32_t t_ = (t);                                                      \
    if (t_ >= 0 && !it->tensors[t_].is_const) {                           \
      if (slot[t_] < 0) {                                                  \
        slot[t_] = count;                                                  \
        items[count].bytes = it->tensors[t_].bytes;                        \
        items[count].first = (when);                                       \
        items[count].last = (when);                                        \
        count++;                                                           \
      }                                                                    \
      if ((when) < items[slot[t_]].first) items[slot[t_]].first = (when);  \
      if ((when) > items[slot[t_]].last) items[slot[t_]].last = (when);    \
    }                                                                      \
  } while (0)
  for (int32_t i = 0; i < m->n_inputs; i++) TOUCH(m->inputs[i], -1);
  for (int32_t i = 0; i < m->n_ops; i++) {
    for (int32_t k = 0; k < m->ops[i].n_inputs; k++) TOUCH(m->ops[i].inputs[k], i);
    for (int32_t k = 0; k < m->ops[i].n_outputs; k++) TOUCH(m->ops[i].outputs[k], i);
  }
  for (int32_t i = 0; i < m->n_outputs; i++) TOUCH(m->outputs[i], end);
  for (int32_t i = 0; i < n; i++) {
    if (slot[i] >= 0 && (m->tensors[i].flags & KILN_TENSOR_VARIABLE)) {
      items[slot[i]].first = -1;
      items[slot[i]].last = end;
    }
  }
#undef TOUCH
  size_t unplanned = 0;
  for (int32_t k = 0; k < count; k++) unplanned += items[k].bytes;
  size_t arena_bytes = 0;
  kiln_status s;
  if (setup && setup->arena_offsets) {
    arena_bytes = setup->arena_bytes;
    s = use_plan(it, setup, slot, items, count, err);
  } else {
    s = kiln_plan_memory(items, count, &arena_bytes, err);
  }
  if (s == KILN_OK) {
    for (int32_t i = 0; i < n; i++)
      it->offsets[i] = slot[i] >= 0 ? items[slot[i]].offset : KILN_NO_OFFSET;
    it->mem.arena_bytes = arena_bytes;
    it->mem.unplanned_bytes = unplanned;
  }
  if (s == KILN_OK && !(setup && setup->defer_memory)) {
    const size_t stride = (it->mem.scratch_bytes + 63) / 64 * 64;
    uint8_t *arena = kiln_pool_alloc(&it->pool, arena_bytes, 64);
    uint8_t *scratch = kiln_pool_alloc(&it->pool, stride * (size_t)it->options.n_threads, 64);
    if (!arena || !scratch)
      s = kiln_fail(err, KILN_ERR_NOMEM, "out of memory for a %zu-byte arena", arena_bytes);
    else
      kiln_interp_bind_memory(it, arena, scratch, stride);
  }
  kiln_free(items);
  kiln_free(slot);
  return s;
}

kiln_status kiln_interp_create(const kiln_model *model, const kiln_interp_options *options,
                               kiln_interp **out, kiln_error *err) {
  return kiln_interp_create_setup(model, options, NULL, out, err);
}

kiln_status kiln_interp_create_setup(const kiln_model *model, const kiln_interp_options *options,
                                     const kiln_interp_setup *setup, kiln_interp **out,
                                     kiln_error *err) {
  *out = NULL;
  kiln_interp *it = kiln_calloc(1, sizeof *it);
  if (!it) return kiln_fail(err, KILN_ERR_NOMEM, "out of memory");
  kiln_pool_init(&it->pool);
  it->model = model;
  if (options) it->options = *options;
  const char *kernels = getenv("KILN_KERNELS");
  if (kernels && strcmp(kernels, "ref") == 0) it->options.force_ref = true;
  if (it->options.n_threads <= 0) it->options.n_threads = kiln_cpu_count();
  it->isa = it->options.force_ref ? 0 : setup ? setup->isa : kiln_cpu_isa();
  it->impls = kiln_calloc((size_t)model->n_ops + 1, sizeof *it->impls);
  kiln_status s = it->impls ? KILN_OK : kiln_fail(err, KILN_ERR_NOMEM, "out of memory");
  if (s == KILN_OK) s = lookup_ops(it, err);
  if (s == KILN_OK && setup && setup->threads) {
    it->threads = setup->threads;
  } else if (s == KILN_OK && it->options.n_threads > 1) {
    s = kiln_threadpool_create(it->options.n_threads, &it->threads, err);
    it->own_threads = true;
  }
  if (s == KILN_OK) s = check_quant(model, err);
  if (s == KILN_OK) s = check_dataflow(model, err);
  if (s == KILN_OK) s = setup_tensors(it, err);
  if (s == KILN_OK) s = prepare_nodes(it, setup, err);
  if (s == KILN_OK) s = plan_arena(it, setup, err);
  if (s == KILN_OK && it->options.profile) {
    it->profile = kiln_pool_alloc(&it->pool, ((size_t)model->n_ops + 1) * sizeof *it->profile, 8);
    if (!it->profile) s = kiln_fail(err, KILN_ERR_NOMEM, "out of memory");
    for (int32_t i = 0; s == KILN_OK && i < model->n_ops; i++) {
      it->profile[i].op_index = i;
      it->profile[i].op_name = op_name(&model->ops[i]);
    }
  }
  if (s != KILN_OK) {
    kiln_interp_free(it);
    return s;
  }
  *out = it;
  return KILN_OK;
}

static double now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

kiln_status kiln_interp_invoke(kiln_interp *it, kiln_error *err) {
  (void)err;
  kiln_eval_ctx ctx = {it->scratch, it->scratch_stride, it->threads, it->options.n_threads};
  const int32_t n = it->model->n_ops;
  if (it->profile || it->options.observer) {
    for (int32_t i = 0; i < n; i++) {
      double t0 = it->profile ? now_ms() : 0;
      it->impls[i]->eval(&it->nodes[i], &ctx);
      if (it->profile) it->profile[i].ms = now_ms() - t0;
      if (it->options.observer) it->options.observer(it->options.observer_ctx, it, i);
    }
  } else {
    for (int32_t i = 0; i < n; i++) it->impls[i]->eval(&it->nodes[i], &ctx);
  }
  return KILN_OK;
}

int32_t kiln_interp_input_count(const kiln_interp *it) { return it->model->n_inputs; }
int32_t kiln_interp_output_count(const kiln_interp *it) { return it->model->n_outputs; }

kiln_tensor_view kiln_interp_tensor(kiln_interp *it, int32_t index) {
  kiln_tensor_view v;
  memset(&v, 0, sizeof v);
  if (index < 0 || index >= it->model->n_tensors) return v;
  const kiln_rt_tensor *t = &it->tensors[index];
  v.name = t->name;
  v.dtype = t->dtype;
  v.rank = t->rank;
  v.shape = t->shape;
  v.quant = t->quant;
  v.data = t->data;
  v.bytes = t->bytes;
  return v;
}

kiln_tensor_view kiln_interp_input(kiln_interp *it, int32_t i) {
  if (i < 0 || i >= it->model->n_inputs) return kiln_interp_tensor(it, -1);
  return kiln_interp_tensor(it, it->model->inputs[i]);
}

kiln_tensor_view kiln_interp_output(kiln_interp *it, int32_t i) {
  if (i < 0 || i >= it->model->n_outputs) return kiln_interp_tensor(it, -1);
  return kiln_interp_tensor(it, it->model->outputs[i]);
}

kiln_memory_stats kiln_interp_memory(const kiln_interp *it) { return it->mem; }

int32_t kiln_interp_profile(const kiln_interp *it, const kiln_op_profile **out) {
  *out = it->profile;
  return it->profile ? it->model->n_ops : 0;
}

void kiln_interp_free(kiln_interp *it) {
  if (!it) return;
  if (it->own_threads) kiln_threadpool_free(it->threads);
  kiln_pool_destroy(&it->pool);
  kiln_free(it->impls);
  kiln_free(it);
}

const size_t *kiln_interp_arena_offsets(const kiln_interp *it) { return it->offsets; }

const kiln_packed_rec *kiln_interp_packed(const kiln_interp *it) { return it->packed; }

uint32_t kiln_interp_isa(const kiln_interp *it) { return it->isa; }

int32_t kiln_interp_threads(const kiln_interp *it) { return it->options.n_threads; }

int32_t kiln_system_cpus(void) { return kiln_cpu_count(); }

void kiln_system_isa(char *buf, int cap) { kiln_cpu_describe(buf, cap); }
