/* POST /v2/models/{m}/infer: the Open Inference Protocol v2 request on a
 * worker's interpreter. Inputs come as JSON numbers (flat or nested,
 * row-major) or, with Triton's binary tensor extension, as raw
 * little-endian bytes after a JSON header of Inference-Header-Content-Length
 * bytes (parameters.binary_data_size per input). Every input of the model
 * must be given once, with the model's exact datatype and shape; outputs
 * are all of them or the ones named, as JSON or, asked with
 * parameters.binary_data (per output) or binary_data_output (request),
 * as bytes after the JSON header. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/half.h"
#include "serve/serve_int.h"

typedef struct infer_req {
  serve_response *resp; /* set to the error */
  const char *model_name;
  kiln_interp *it;
  const uint8_t *bin;   /* binary region after the JSON header */
  size_t bin_len, bin_used;
} infer_req;

static void shape_text(const int32_t *shape, int32_t rank, char *buf, size_t cap) {
  size_t n = (size_t)snprintf(buf, cap, "[");
  for (int32_t d = 0; d < rank && n < cap; d++)
    n += (size_t)snprintf(buf + n, cap - n, "%s%d", d ? "," : "", (int)shape[d]);
  if (n < cap) snprintf(buf + n, cap - n, "]");
}

static int64_t elements(const kiln_tensor_view *v) {
  int64_t n = 1;
  for (int32_t d = 0; d < v->rank; d++) n *= v->shape[d];
  return n;
}

/* Stores JSON value v as element i of dst (dtype dt); false with the
 * reason in why when it does not fit. */
static bool put_value(kiln_dtype dt, const json_t *v, void *dst, int64_t i, const char **why) {
  if (dt == KILN_BOOL) {
    if (!json_is_boolean(v)) return *why = "not true or false", false;
    ((uint8_t *)dst)[i] = json_is_true(v);
    return true;
  }
  if (dt == KILN_F32 || dt == KILN_F16) {
    if (!json_is_number(v)) return *why = "not a number", false;
    float f = (float)json_number_value(v);
    if (dt == KILN_F32) ((float *)dst)[i] = f;
    else ((uint16_t *)dst)[i] = kiln_float_to_half(f);
    return true;
  }
  if (!json_is_integer(v)) return *why = "not an integer", false;
  json_int_t x = json_integer_value(v);
  int64_t lo, hi;
  switch (dt) {
    case KILN_I8: lo = INT8_MIN, hi = INT8_MAX; break;
    case KILN_U8: lo = 0, hi = UINT8_MAX; break;
    case KILN_I16: lo = INT16_MIN, hi = INT16_MAX; break;
    case KILN_I32: lo = INT32_MIN, hi = INT32_MAX; break;
    default: lo = INT64_MIN, hi = INT64_MAX; break;
  }
  if (x < lo || x > hi) return *why = "out of the datatype's range", false;
  switch (dt) {
    case KILN_I8: ((int8_t *)dst)[i] = (int8_t)x; break;
    case KILN_U8: ((uint8_t *)dst)[i] = (uint8_t)x; break;
    case KILN_I16: ((int16_t *)dst)[i] = (int16_t)x; break;
    case KILN_I32: ((int32_t *)dst)[i] = (int32_t)x; break;
    default: ((int64_t *)dst)[i] = (int64_t)x; break;
  }
  return true;
}

/* Walks data (nested arrays allowed) in row-major order into view. */
static bool fill_json(infer_req *q, const kiln_tensor_view *v, const json_t *data, int depth,
                      int64_t *count, int64_t total) {
  if (depth > KILN_MAX_RANK) {
    serve_error(q->resp, 400, "input '%s': data nested deeper than %d levels", v->name, KILN_MAX_RANK);
    return false;
  }
  size_t i;
  const json_t *e;
  json_array_foreach(data, i, e) {
    if (json_is_array(e)) {
      if (!fill_json(q, v, e, depth + 1, count, total)) return false;
      continue;
    }
    if (*count >= total) {
      serve_error(q->resp, 400, "input '%s': more than %lld values in data", v->name, (long long)total);
      return false;
    }
    const char *why;
    if (!put_value(v->dtype, e, v->data, *count, &why)) {
      serve_error(q->resp, 400, "input '%s': data[%lld] is %s for %s", v->name, (long long)*count,
                  why, serve_datatype(v->dtype));
      return false;
    }
    (*count)++;
  }
  return true;
}

static int32_t find_input(kiln_interp *it, const char *name) {
  for (int32_t i = 0; i < kiln_interp_input_count(it); i++)
    if (strcmp(kiln_interp_input(it, i).name, name) == 0) return i;
  return -1;
}

static int32_t find_output(kiln_interp *it, const char *name) {
  for (int32_t i = 0; i < kiln_interp_output_count(it); i++)
    if (strcmp(kiln_interp_output(it, i).name, name) == 0) return i;
  return -1;
}

static bool check_shape(infer_req *q, const kiln_tensor_view *v, const json_t *shape) {
  char want[96], got[96];
  shape_text(v->shape, v->rank, want, sizeof want);
  bool same = json_is_array(shape) && json_array_size(shape) == (size_t)v->rank;
  for (int32_t d = 0; same && d < v->rank; d++) {
    const json_t *x = json_array_get(shape, (size_t)d);
    same = json_is_integer(x) && json_integer_value(x) == v->shape[d];
  }
  if (same) return true;
  if (!json_is_array(shape)) {
    serve_error(q->resp, 400, "input '%s': shape must be an array of integers (the model's is %s)", v->name, want);
    return false;
  }
  size_t n = (size_t)snprintf(got, sizeof got, "[");
  for (size_t d = 0; d < json_array_size(shape) && n < sizeof got; d++) {
    const json_t *x = json_array_get(shape, d);
    n += json_is_integer(x) ? (size_t)snprintf(got + n, sizeof got - n, "%s%lld", d ? "," : "", (long long)json_integer_value(x))
                            : (size_t)snprintf(got + n, sizeof got - n, "%s?", d ? "," : "");
  }
  if (n < sizeof got) snprintf(got + n, sizeof got - n, "]");
  serve_error(q->resp, 400, "input '%s': shape %s does not match the model's %s", v->name, got, want);
  return false;
}

/* One element of "inputs". seen[] marks inputs already given. */
static bool read_input(infer_req *q, const json_t *in, bool *seen) {
  const char *name = json_string_value(json_object_get(in, "name"));
  const char *dtype = json_string_value(json_object_get(in, "datatype"));
  if (!json_is_object(in) || !name || !dtype) {
    serve_error(q->resp, 400, "each input needs \"name\", \"datatype\" and \"shape\"");
    return false;
  }
  int32_t idx = find_input(q->it, name);
  if (idx < 0) {
    serve_error(q->resp, 400, "model '%s' has no input '%s'", q->model_name, name);
    return false;
  }
  if (seen[idx]) {
    serve_error(q->resp, 400, "input '%s' given twice", name);
    return false;
  }
  seen[idx] = true;
  kiln_tensor_view v = kiln_interp_input(q->it, idx);
  if (strcmp(dtype, serve_datatype(v.dtype)) != 0) {
    serve_error(q->resp, 400, "input '%s': datatype %s does not match the model's %s", name, dtype,
                serve_datatype(v.dtype));
    return false;
  }
  if (!check_shape(q, &v, json_object_get(in, "shape"))) return false;
  const json_t *bin_size = json_object_get(json_object_get(in, "parameters"), "binary_data_size");
  const json_t *data = json_object_get(in, "data");
  if (bin_size) {
    if (data) {
      serve_error(q->resp, 400, "input '%s': both data and binary_data_size", name);
      return false;
    }
    json_int_t n = json_is_integer(bin_size) ? json_integer_value(bin_size) : -1;
    if (n != (json_int_t)v.bytes) {
      serve_error(q->resp, 400, "input '%s': binary_data_size %lld, but %s %s takes %zu bytes", name,
                  (long long)n, serve_datatype(v.dtype), "of this shape", v.bytes);
      return false;
    }
    if (v.bytes > q->bin_len - q->bin_used) {
      serve_error(q->resp, 400, "input '%s': %zu binary bytes wanted, %zu left in the body", name, v.bytes,
                  q->bin_len - q->bin_used);
      return false;
    }
    memcpy(v.data, q->bin + q->bin_used, v.bytes);
    q->bin_used += v.bytes;
    return true;
  }
  if (!json_is_array(data)) {
    serve_error(q->resp, 400, "input '%s': data must be an array (or use binary_data_size)", name);
    return false;
  }
  int64_t count = 0, total = elements(&v);
  if (!fill_json(q, &v, data, 1, &count, total)) return false;
  if (count != total) {
    serve_error(q->resp, 400, "input '%s': %lld values in data, the shape has %lld", name,
                (long long)count, (long long)total);
    return false;
  }
  return true;
}

static json_t *value_json(const kiln_tensor_view *v, int64_t i) {
  switch (v->dtype) {
    case KILN_F32: {
      float f = ((const float *)v->data)[i];
      return isfinite(f) ? json_real(f) : json_null();
    }
    case KILN_F16: {
      float f = kiln_half_to_float(((const uint16_t *)v->data)[i]);
      return isfinite(f) ? json_real(f) : json_null();
    }
    case KILN_BOOL: return json_boolean(((const uint8_t *)v->data)[i] != 0);
    case KILN_I8: return json_integer(((const int8_t *)v->data)[i]);
    case KILN_U8: return json_integer(((const uint8_t *)v->data)[i]);
    case KILN_I16: return json_integer(((const int16_t *)v->data)[i]);
    case KILN_I32: return json_integer(((const int32_t *)v->data)[i]);
    case KILN_I64: return json_integer(((const int64_t *)v->data)[i]);
  }
  return json_null();
}

static json_t *output_json(const kiln_tensor_view *v, bool binary) {
  json_t *shape = json_array(), *o;
  for (int32_t d = 0; d < v->rank; d++) json_array_append_new(shape, json_integer(v->shape[d]));
  if (binary) {
    return json_pack("{s:s, s:s, s:o, s:{s:I}}", "name", v->name, "datatype", serve_datatype(v->dtype),
                     "shape", shape, "parameters", "binary_data_size", (json_int_t)v->bytes);
  }
  json_t *data = json_array();
  int64_t n = elements(v);
  for (int64_t i = 0; i < n; i++)
    if (json_array_append_new(data, value_json(v, i)) != 0) break;
  o = json_pack("{s:s, s:s, s:o, s:o}", "name", v->name, "datatype", serve_datatype(v->dtype),
                "shape", shape, "data", data);
  return o;
}

typedef serve_out_pick out_pick;

/* Which outputs to return, and how; *n_out of them into picks. */
static bool pick_outputs(infer_req *q, const json_t *root, out_pick *picks, int32_t *n_out) {
  const json_t *all_bin = json_object_get(json_object_get(root, "parameters"), "binary_data_output");
  bool binary_all = json_is_true(all_bin);
  const json_t *outs = json_object_get(root, "outputs");
  int32_t n_model = kiln_interp_output_count(q->it);
  *n_out = 0;
  if (!outs) {
    for (int32_t i = 0; i < n_model; i++) picks[(*n_out)++] = (out_pick){i, binary_all};
    return true;
  }
  if (!json_is_array(outs) || json_array_size(outs) == 0 || json_array_size(outs) > (size_t)n_model) {
    serve_error(q->resp, 400, "\"outputs\" must list 1 to %d of the model's outputs", (int)n_model);
    return false;
  }
  size_t i;
  const json_t *o;
  json_array_foreach(outs, i, o) {
    const char *name = json_string_value(json_object_get(o, "name"));
    int32_t idx = name ? find_output(q->it, name) : -1;
    if (idx < 0) {
      serve_error(q->resp, 400, "model '%s' has no output '%s'", q->model_name, name ? name : "(no name)");
      return false;
    }
    for (int32_t k = 0; k < *n_out; k++)
      if (picks[k].index == idx) {
        serve_error(q->resp, 400, "output '%s' asked twice", name);
        return false;
      }
    const json_t *b = json_object_get(json_object_get(o, "parameters"), "binary_data");
    picks[(*n_out)++] = (out_pick){idx, b ? json_is_true(b) : binary_all};
  }
  return true;
}

/* Renders the response: JSON, or JSON header + binary outputs. */
static void respond(serve_request *r, kiln_interp *it, const json_t *id, const out_pick *picks, int32_t n) {
  json_t *outs = json_array();
  size_t bin_bytes = 0;
  for (int32_t k = 0; k < n; k++) {
    kiln_tensor_view v = kiln_interp_output(it, picks[k].index);
    json_array_append_new(outs, output_json(&v, picks[k].binary));
    if (picks[k].binary) bin_bytes += v.bytes;
  }
  json_t *root = json_pack("{s:s, s:s}", "model_name", r->model->name, "model_version", "1");
  if (root && id) json_object_set(root, "id", (json_t *)id);
  if (root) json_object_set_new(root, "outputs", outs);
  else json_decref(outs);
  if (bin_bytes == 0) {
    serve_json(&r->resp, 200, root);
    return;
  }
  char *head = root ? json_dumps(root, JSON_COMPACT | JSON_PRESERVE_ORDER | JSON_REAL_PRECISION(9)) : NULL;
  json_decref(root);
  size_t hlen = head ? strlen(head) : 0;
  char *body = head ? kiln_malloc(hlen + bin_bytes) : NULL;
  if (!body) {
    free(head);
    serve_error(&r->resp, 503, "out of memory for a %zu-byte response", hlen + bin_bytes);
    return;
  }
  memcpy(body, head, hlen);
  free(head);
  size_t off = hlen;
  for (int32_t k = 0; k < n; k++) {
    if (!picks[k].binary) continue;
    kiln_tensor_view v = kiln_interp_output(it, picks[k].index);
    memcpy(body + off, v.data, v.bytes);
    off += v.bytes;
  }
  serve_response_clear(&r->resp);
  r->resp = (serve_response){.status = 200, .body = body, .len = off, .free_body = kiln_free,
                             .content_type = "application/octet-stream", .infer_header_len = (int64_t)hlen};
}

bool serve_infer_parse(kiln_interp *it, const char *model_name, const uint8_t *body, size_t len,
                       int64_t header_len, serve_infer_plan *plan, serve_response *resp) {
  infer_req q = {.resp = resp, .model_name = model_name, .it = it};
  plan->root = NULL;
  plan->n_out = 0;
  size_t json_len = len;
  if (header_len >= 0) {
    if ((uint64_t)header_len > len) {
      serve_error(resp, 400, "Inference-Header-Content-Length %lld is more than the body's %zu bytes",
                  (long long)header_len, len);
      return false;
    }
    json_len = (size_t)header_len;
    q.bin = body + json_len;
    q.bin_len = len - json_len;
  }
  json_error_t jerr;
  json_t *root = json_loadb((const char *)body, json_len, JSON_REJECT_DUPLICATES, &jerr);
  if (!root) {
    serve_error(resp, 400, "invalid JSON: %s (line %d, column %d)", jerr.text, jerr.line, jerr.column);
    return false;
  }
  int32_t n_in = kiln_interp_input_count(it), n_out_model = kiln_interp_output_count(it);
  bool seen[64] = {0};
  const json_t *inputs = json_object_get(root, "inputs"), *id = json_object_get(root, "id");
  bool ok = false;
  if (!json_is_object(root) || !json_is_array(inputs)) {
    serve_error(resp, 400, "the request must be a JSON object with an \"inputs\" array");
  } else if (n_in > 64 || n_out_model > 64) {
    serve_error(resp, 400, "model '%s' has more than 64 inputs or outputs", model_name);
  } else if (id && !json_is_string(id)) {
    serve_error(resp, 400, "\"id\" must be a string");
  } else {
    size_t i;
    const json_t *in;
    ok = true;
    json_array_foreach(inputs, i, in) {
      if (!(ok = read_input(&q, in, seen))) break;
    }
    for (int32_t k = 0; ok && k < n_in; k++) {
      if (!seen[k]) {
        serve_error(resp, 400, "input '%s' missing", kiln_interp_input(it, k).name);
        ok = false;
      }
    }
    if (ok && q.bin_used != q.bin_len) {
      serve_error(resp, 400, "%zu bytes after the JSON header, the inputs take %zu", q.bin_len, q.bin_used);
      ok = false;
    }
    if (ok) ok = pick_outputs(&q, root, plan->picks, &plan->n_out);
  }
  if (ok) plan->root = root;
  else json_decref(root);
  return ok;
}

void serve_run_infer(serve_slot *slot, serve_request *r) {
  serve_infer_plan plan;
  if (!serve_infer_parse(slot->interp, r->model->name, r->body, r->len, r->header_len, &plan, &r->resp)) return;
  kiln_error err;
  if (kiln_interp_invoke(slot->interp, &err) != KILN_OK) serve_error(&r->resp, 500, "%s", err.msg);
  else respond(r, slot->interp, json_object_get(plan.root, "id"), plan.picks, plan.n_out);
  json_decref(plan.root);
}
