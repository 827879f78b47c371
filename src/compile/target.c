/*
 * Targets: targets/NAME.json -> kiln_target. Every field is checked (type,
 * range, known names) and every message names the file and the field, e.g.
 * "targets/x.json: ops.SOFTMAX.limits[1].value: expected an integer >= 1".
 * Unknown fields are refused so that a misspelt limit cannot silently
 * loosen a rule. The fields are described in docs/compiler.md.
 */
#include <dirent.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "compile/compile_int.h"

const char *const compile_limit_names[LIMIT_COUNT] = {
    [LIMIT_NO_FUSED_ACTIVATION] = "no_fused_activation",
    [LIMIT_XY_ONLY] = "xy_only",
    [LIMIT_INPUT_1D] = "input_1d",
    [LIMIT_OUTPUT_1D] = "output_1d",
    [LIMIT_MAX_INPUT_ELEMENTS] = "max_input_elements",
    [LIMIT_CONSTANT_INPUT] = "constant_input",
    [LIMIT_STRIDES_ONE] = "strides_one",
    [LIMIT_LEADING_ONES_ONLY] = "leading_ones_only",
    [LIMIT_DEFAULT_WEIGHTS_FORMAT] = "default_weights_format",
    [LIMIT_CONSTANT_ZERO_PAD_ONLY] = "constant_zero_pad_only",
    [LIMIT_BATCH_ONE] = "batch_one",
};

static const kiln_dtype known_dtypes[] = {KILN_F32, KILN_F16, KILN_I32, KILN_U8,
                                          KILN_I64, KILN_BOOL, KILN_I16, KILN_I8};

/* Parsing state: the file for messages, the error, and a field path. */
typedef struct tparse {
  const char *path;
  kiln_error *err;
  char field[160];
} tparse;

static kiln_status bad(tparse *p, const char *what) {
  return kiln_fail(p->err, KILN_ERR_FORMAT, "%s: %s: %s", p->path, p->field, what);
}

static void set_field(tparse *p, const char *fmt, const char *a, const char *b) {
  snprintf(p->field, sizeof p->field, fmt, a, b);
}

/* A required non-empty string. */
static kiln_status get_string(tparse *p, json_t *obj, const char *key, char **out) {
  set_field(p, "%s%s", key, "");
  json_t *v = json_object_get(obj, key);
  if (!v) return bad(p, "missing");
  if (!json_is_string(v) || !json_string_value(v)[0]) return bad(p, "expected a non-empty string");
  *out = kiln_strdup(json_string_value(v));
  return *out ? KILN_OK : kiln_fail(p->err, KILN_ERR_NOMEM, "%s: out of memory", p->path);
}

/* A required number (> 0, or >= 0 with zero_ok); null allowed with null_ok
 * (then *out = 0 and *was_null = true). */
static kiln_status get_number(tparse *p, json_t *obj, const char *key, bool zero_ok, bool null_ok,
                              double *out, bool *was_null) {
  set_field(p, "%s%s", key, "");
  json_t *v = json_object_get(obj, key);
  if (!v) return bad(p, "missing");
  if (was_null) *was_null = false;
  if (json_is_null(v) && null_ok) {
    *out = 0;
    if (was_null) *was_null = true;
    return KILN_OK;
  }
  if (!json_is_number(v))
    return bad(p, null_ok ? "expected a number or null" : "expected a number");
  double x = json_number_value(v);
  if (!(x > 0 || (zero_ok && x == 0)) || x > 1e30)
    return bad(p, zero_ok ? "expected a number >= 0" : "expected a number > 0");
  *out = x;
  return KILN_OK;
}

static kiln_status parse_dtypes(tparse *p, json_t *obj, kiln_target *t) {
  set_field(p, "%s%s", "dtypes", "");
  json_t *v = json_object_get(obj, "dtypes");
  if (!v) return bad(p, "missing");
  if (!json_is_array(v) || json_array_size(v) == 0) return bad(p, "expected a non-empty array of dtype names");
  size_t i;
  json_t *e;
  json_array_foreach(v, i, e) {
    snprintf(p->field, sizeof p->field, "dtypes[%zu]", i);
    const char *s = json_is_string(e) ? json_string_value(e) : "";
    bool found = false;
    for (size_t k = 0; k < sizeof known_dtypes / sizeof known_dtypes[0]; k++) {
      if (strcmp(s, kiln_dtype_name(known_dtypes[k])) == 0) {
        t->dtype_mask |= 1u << known_dtypes[k];
        found = true;
      }
    }
    if (!found) return bad(p, "expected a dtype name (float32, float16, int32, uint8, int64, bool, int16, int8)");
  }
  return KILN_OK;
}

static bool is_builtin_name(const char *s) {
  for (int32_t c = 0; c < 256; c++)
    if (strcmp(kiln_opcode_name(c), s) == 0 && strcmp(s, "UNKNOWN") != 0) return true;
  return false;
}

static kiln_status parse_limit(tparse *p, const char *op, size_t i, json_t *v, target_limit *l) {
  char base[120];
  snprintf(base, sizeof base, "ops.%.60s.limits[%zu]", op, i);
  set_field(p, "%s%s", base, "");
  if (!json_is_object(v)) return bad(p, "expected an object {\"limit\", \"reason\"[, \"value\"]}");
  const char *key;
  json_t *f;
  json_object_foreach(v, key, f) {
    if (strcmp(key, "limit") != 0 && strcmp(key, "value") != 0 && strcmp(key, "reason") != 0) {
      set_field(p, "%s.%s", base, key);
      return bad(p, "unknown field (known: limit, value, reason)");
    }
  }
  set_field(p, "%s.%s", base, "limit");
  json_t *name = json_object_get(v, "limit");
  if (!json_is_string(name)) return bad(p, "expected a limit name");
  l->kind = LIMIT_COUNT;
  for (int k = 0; k < LIMIT_COUNT; k++)
    if (strcmp(json_string_value(name), compile_limit_names[k]) == 0) l->kind = (limit_kind)k;
  if (l->kind == LIMIT_COUNT) {
    char msg[400];
    int n = snprintf(msg, sizeof msg, "unknown limit '%.40s' (known:", json_string_value(name));
    for (int k = 0; k < LIMIT_COUNT && n < (int)sizeof msg; k++)
      n += snprintf(msg + n, sizeof msg - (size_t)n, " %s", compile_limit_names[k]);
    if (n < (int)sizeof msg) snprintf(msg + n, sizeof msg - (size_t)n, ")");
    return bad(p, msg);
  }
  json_t *value = json_object_get(v, "value");
  bool needs_value = l->kind == LIMIT_MAX_INPUT_ELEMENTS || l->kind == LIMIT_CONSTANT_INPUT;
  set_field(p, "%s.%s", base, "value");
  if (needs_value) {
    int64_t lo = l->kind == LIMIT_CONSTANT_INPUT ? 0 : 1;
    if (!json_is_integer(value) || json_integer_value(value) < lo)
      return bad(p, lo ? "expected an integer >= 1" : "expected an input index >= 0");
    l->value = json_integer_value(value);
  } else if (value) {
    return bad(p, "this limit takes no value");
  }
  set_field(p, "%s.%s", base, "reason");
  json_t *reason = json_object_get(v, "reason");
  if (!json_is_string(reason) || !json_string_value(reason)[0]) return bad(p, "expected a non-empty string");
  l->reason = kiln_strdup(json_string_value(reason));
  return l->reason ? KILN_OK : kiln_fail(p->err, KILN_ERR_NOMEM, "%s: out of memory", p->path);
}

static kiln_status parse_rule(tparse *p, const char *op, json_t *v, target_rule *r) {
  char base[100];
  snprintf(base, sizeof base, "ops.%.60s", op);
  set_field(p, "%s%s", base, "");
  if (!json_is_object(v)) return bad(p, "expected an object");
  static const char *const fields[] = {"supported", "custom", "status", "reason", "limits"};
  const char *key;
  json_t *f;
  json_object_foreach(v, key, f) {
    bool known = false;
    for (size_t k = 0; k < sizeof fields / sizeof fields[0]; k++) known |= strcmp(key, fields[k]) == 0;
    if (!known) {
      set_field(p, "%s.%s", base, key);
      return bad(p, "unknown field (known: supported, custom, status, reason, limits)");
    }
  }
  r->op = kiln_strdup(op);
  if (!r->op) return kiln_fail(p->err, KILN_ERR_NOMEM, "%s: out of memory", p->path);
  json_t *custom = json_object_get(v, "custom");
  set_field(p, "%s.%s", base, "custom");
  if (custom && !json_is_boolean(custom)) return bad(p, "expected true or false");
  r->custom = custom && json_is_true(custom);
  set_field(p, "%s%s", base, "");
  if (!r->custom && !is_builtin_name(op))
    return bad(p, "not a TFLite builtin operator name (custom ops need \"custom\": true)");
  json_t *supported = json_object_get(v, "supported");
  set_field(p, "%s.%s", base, "supported");
  if (!json_is_boolean(supported)) return bad(p, "expected true or false");
  r->supported = json_is_true(supported);
  json_t *status = json_object_get(v, "status");
  json_t *reason = json_object_get(v, "reason");
  json_t *limits = json_object_get(v, "limits");
  if (r->supported) {
    set_field(p, "%s.%s", base, status ? "status" : "reason");
    if (status || reason) return bad(p, "only unsupported ops take a status or reason (limits carry their own)");
  } else {
    set_field(p, "%s.%s", base, "limits");
    if (limits) return bad(p, "an unsupported op takes no limits");
    r->status = STATUS_NOT_SUPPORTED;
    set_field(p, "%s.%s", base, "status");
    if (status) {
      const char *s = json_is_string(status) ? json_string_value(status) : "";
      if (strcmp(s, "not_supported") == 0) r->status = STATUS_NOT_SUPPORTED;
      else if (strcmp(s, "dtype") == 0) r->status = STATUS_DTYPE;
      else if (strcmp(s, "unspecified") == 0) r->status = STATUS_UNSPECIFIED;
      else return bad(p, "expected \"not_supported\", \"dtype\" or \"unspecified\"");
    }
    set_field(p, "%s.%s", base, "reason");
    if (!json_is_string(reason) || !json_string_value(reason)[0]) return bad(p, "expected a non-empty string");
    r->reason = kiln_strdup(json_string_value(reason));
    if (!r->reason) return kiln_fail(p->err, KILN_ERR_NOMEM, "%s: out of memory", p->path);
  }
  if (limits) {
    set_field(p, "%s.%s", base, "limits");
    if (!json_is_array(limits)) return bad(p, "expected an array");
    r->limits = kiln_calloc(json_array_size(limits) + 1, sizeof *r->limits);
    if (!r->limits) return kiln_fail(p->err, KILN_ERR_NOMEM, "%s: out of memory", p->path);
    size_t i;
    json_t *e;
    json_array_foreach(limits, i, e) {
      kiln_status s = parse_limit(p, op, i, e, &r->limits[i]);
      r->n_limits = (int32_t)i + 1;
      if (s != KILN_OK) return s;
    }
  }
  return KILN_OK;
}

static kiln_status parse_ops(tparse *p, json_t *obj, kiln_target *t) {
  set_field(p, "%s%s", "ops", "");
  json_t *ops = json_object_get(obj, "ops");
  if (!ops) return bad(p, "missing");
  if (!json_is_object(ops) || json_object_size(ops) == 0) return bad(p, "expected a non-empty object of op rules");
  t->rules = kiln_calloc(json_object_size(ops), sizeof *t->rules);
  if (!t->rules) return kiln_fail(p->err, KILN_ERR_NOMEM, "%s: out of memory", p->path);
  const char *key;
  json_t *v;
  json_object_foreach(ops, key, v) {
    kiln_status s = parse_rule(p, key, v, &t->rules[t->n_rules++]);
    if (s != KILN_OK) return s;
  }
  return KILN_OK;
}

static kiln_status parse_notes(tparse *p, json_t *obj) {
  json_t *notes = json_object_get(obj, "notes");
  set_field(p, "%s%s", "notes", "");
  if (!notes) return KILN_OK;
  if (!json_is_object(notes)) return bad(p, "expected an object of strings");
  const char *key;
  json_t *v;
  json_object_foreach(notes, key, v) {
    set_field(p, "notes.%.60s%s", key, "");
    if (!json_is_string(v)) return bad(p, "expected a string");
  }
  return KILN_OK;
}

static const char *const top_fields[] = {
    "name", "description", "kind", "device_name", "mapped_status", "parameter_memory_bytes",
    "parameter_read_bytes_per_s", "link_bytes_per_s", "macs_per_s", "float_macs_per_s",
    "op_overhead_s", "inference_overhead_s", "dtypes", "max_innermost_dims", "single_subgraph",
    "host_target", "notes", "ops"};

static kiln_status parse_scalars(tparse *p, json_t *obj, kiln_target *t) {
  kiln_status s;
  char *kind = NULL;
  if ((s = get_string(p, obj, "name", &t->name)) != KILN_OK ||
      (s = get_string(p, obj, "description", &t->description)) != KILN_OK ||
      (s = get_string(p, obj, "kind", &kind)) != KILN_OK)
    return s;
  bool is_cpu = strcmp(kind, "cpu") == 0, is_acc = strcmp(kind, "accelerator") == 0;
  kiln_free(kind);
  if (!is_cpu && !is_acc) return bad(p, "expected \"accelerator\" or \"cpu\"");
  t->is_cpu = is_cpu;
  if ((s = get_string(p, obj, "device_name", &t->device_name)) != KILN_OK ||
      (s = get_string(p, obj, "mapped_status", &t->mapped_status)) != KILN_OK)
    return s;
  set_field(p, "%s%s", "parameter_memory_bytes", "");
  json_t *mem = json_object_get(obj, "parameter_memory_bytes");
  if (!mem) return bad(p, "missing");
  if (json_is_null(mem) && is_cpu) {
    t->param_memory_bytes = -1;
  } else if (json_is_integer(mem) && json_integer_value(mem) >= 0) {
    t->param_memory_bytes = json_integer_value(mem);
  } else {
    return bad(p, is_cpu ? "expected an integer >= 0 or null" : "expected an integer >= 0 (bytes)");
  }
  bool link_null, float_null;
  if ((s = get_number(p, obj, "parameter_read_bytes_per_s", false, false, &t->param_read_bytes_per_s, NULL)) != KILN_OK ||
      (s = get_number(p, obj, "link_bytes_per_s", false, is_cpu, &t->link_bytes_per_s, &link_null)) != KILN_OK ||
      (s = get_number(p, obj, "macs_per_s", false, false, &t->macs_per_s, NULL)) != KILN_OK ||
      (s = get_number(p, obj, "float_macs_per_s", false, true, &t->float_macs_per_s, &float_null)) != KILN_OK ||
      (s = get_number(p, obj, "op_overhead_s", true, false, &t->op_overhead_s, NULL)) != KILN_OK ||
      (s = get_number(p, obj, "inference_overhead_s", true, false, &t->inference_overhead_s, NULL)) != KILN_OK)
    return s;
  if (float_null) t->float_macs_per_s = t->macs_per_s;
  set_field(p, "%s%s", "max_innermost_dims", "");
  json_t *dims = json_object_get(obj, "max_innermost_dims");
  if (!dims) return bad(p, "missing");
  if (json_is_null(dims)) t->max_innermost_dims = 0;
  else if (json_is_integer(dims) && json_integer_value(dims) >= 1 && json_integer_value(dims) <= KILN_MAX_RANK)
    t->max_innermost_dims = (int32_t)json_integer_value(dims);
  else return bad(p, "expected an integer in [1, 6] or null");
  set_field(p, "%s%s", "single_subgraph", "");
  json_t *single = json_object_get(obj, "single_subgraph");
  if (!json_is_boolean(single)) return bad(p, single ? "expected true or false" : "missing");
  t->single_subgraph = json_is_true(single);
  return KILN_OK;
}

static kiln_status load_file(const char *path, bool is_host, kiln_target **out, kiln_error *err);

static kiln_status load_host(tparse *p, json_t *obj, kiln_target *t, bool is_host) {
  set_field(p, "%s%s", "host_target", "");
  json_t *host = json_object_get(obj, "host_target");
  if (!host) return bad(p, "missing");
  if (json_is_null(host)) {
    if (!t->is_cpu) return bad(p, "an accelerator needs a host target (the CPU that runs its unmapped ops)");
    return KILN_OK;
  }
  if (!json_is_string(host) || !json_string_value(host)[0] || strchr(json_string_value(host), '/'))
    return bad(p, "expected a target name or null");
  if (is_host || t->is_cpu) return bad(p, "a CPU target (or a host target) has no host target: use null");
  const char *slash = strrchr(p->path, '/');
  size_t dir_len = slash ? (size_t)(slash - p->path) + 1 : 0;
  char hp[4096];
  snprintf(hp, sizeof hp, "%.*s%s.json", (int)dir_len, p->path, json_string_value(host));
  kiln_status s = load_file(hp, true, &t->host, p->err);
  if (s != KILN_OK) {
    kiln_error_prefix(p->err, "%s: host_target '%s'", p->path, json_string_value(host));
    return s;
  }
  if (!t->host->is_cpu) return bad(p, "the host target must be of kind \"cpu\"");
  return KILN_OK;
}

static kiln_status load_file(const char *path, bool is_host, kiln_target **out, kiln_error *err) {
  *out = NULL;
  json_error_t jerr;
  json_t *obj = json_load_file(path, JSON_REJECT_DUPLICATES, &jerr);
  if (!obj) {
    if (jerr.line <= 0) return kiln_fail(err, KILN_ERR_IO, "%s: %s", path, jerr.text);
    return kiln_fail(err, KILN_ERR_FORMAT, "%s: line %d column %d: %s", path, jerr.line, jerr.column, jerr.text);
  }
  tparse p = {path, err, ""};
  kiln_target *t = kiln_calloc(1, sizeof *t);
  kiln_status s = KILN_OK;
  if (!t || !(t->path = kiln_strdup(path))) {
    s = kiln_fail(err, KILN_ERR_NOMEM, "%s: out of memory", path);
    goto done;
  }
  if (!json_is_object(obj)) {
    s = kiln_fail(err, KILN_ERR_FORMAT, "%s: expected a JSON object", path);
    goto done;
  }
  const char *key;
  json_t *v;
  json_object_foreach(obj, key, v) {
    bool known = false;
    for (size_t k = 0; k < sizeof top_fields / sizeof top_fields[0]; k++) known |= strcmp(key, top_fields[k]) == 0;
    if (!known) {
      set_field(&p, "%.100s%s", key, "");
      s = bad(&p, "unknown field (docs/compiler.md lists the fields)");
      goto done;
    }
  }
  if ((s = parse_scalars(&p, obj, t)) != KILN_OK || (s = parse_dtypes(&p, obj, t)) != KILN_OK ||
      (s = parse_notes(&p, obj)) != KILN_OK || (s = parse_ops(&p, obj, t)) != KILN_OK ||
      (s = load_host(&p, obj, t, is_host)) != KILN_OK)
    goto done;
done:
  json_decref(obj);
  if (s != KILN_OK) {
    kiln_target_free(t);
    return s;
  }
  *out = t;
  return KILN_OK;
}

kiln_status kiln_target_load(const char *path, kiln_target **out, kiln_error *err) {
  return load_file(path, false, out, err);
}

static int cmp_str(const void *a, const void *b) {
  return strcmp(*(const char *const *)a, *(const char *const *)b);
}

char *kiln_target_list(const char *targets_dir, kiln_error *err) {
  DIR *d = opendir(targets_dir);
  if (!d) {
    kiln_fail(err, KILN_ERR_IO, "%s: cannot open the targets directory", targets_dir);
    return NULL;
  }
  char *names[256];
  size_t n = 0, bytes = 1;
  struct dirent *e;
  while ((e = readdir(d)) && n < sizeof names / sizeof names[0]) {
    size_t len = strlen(e->d_name);
    if (len <= 5 || e->d_name[0] == '.' || strcmp(e->d_name + len - 5, ".json") != 0) continue;
    names[n] = kiln_malloc(len - 4);
    if (!names[n]) break;
    memcpy(names[n], e->d_name, len - 5);
    names[n][len - 5] = '\0';
    bytes += len - 5 + 2;
    n++;
  }
  closedir(d);
  qsort(names, n, sizeof names[0], cmp_str);
  char *out = kiln_malloc(bytes);
  if (out) {
    out[0] = '\0';
    for (size_t i = 0; i < n; i++) {
      if (i) strcat(out, ", ");
      strcat(out, names[i]);
    }
  } else {
    kiln_fail(err, KILN_ERR_NOMEM, "out of memory");
  }
  for (size_t i = 0; i < n; i++) kiln_free(names[i]);
  return out;
}

kiln_status kiln_target_open(const char *targets_dir, const char *name, kiln_target **out,
                             kiln_error *err) {
  *out = NULL;
  size_t len = strlen(name);
  if (strchr(name, '/') || (len > 5 && strcmp(name + len - 5, ".json") == 0))
    return kiln_target_load(name, out, err);
  char path[4096];
  snprintf(path, sizeof path, "%s/%s.json", targets_dir, name);
  FILE *f = fopen(path, "rb");
  if (!f) {
    kiln_error lerr;
    char *list = kiln_target_list(targets_dir, &lerr);
    kiln_status s;
    if (!list) s = kiln_fail(err, KILN_ERR_INVALID_ARG, "unknown target '%s' (%s)", name, lerr.msg);
    else s = kiln_fail(err, KILN_ERR_INVALID_ARG, "unknown target '%s' (available in %s: %s)", name,
                       targets_dir, list[0] ? list : "none");
    kiln_free(list);
    return s;
  }
  fclose(f);
  return kiln_target_load(path, out, err);
}

const char *kiln_target_name(const kiln_target *target) { return target->name; }
const char *kiln_target_description(const kiln_target *target) { return target->description; }
bool kiln_target_is_cpu(const kiln_target *target) { return target->is_cpu; }

void kiln_target_free(kiln_target *t) {
  if (!t) return;
  for (int32_t i = 0; i < t->n_rules; i++) {
    target_rule *r = &t->rules[i];
    for (int32_t k = 0; k < r->n_limits; k++) kiln_free(r->limits[k].reason);
    kiln_free(r->limits);
    kiln_free(r->op);
    kiln_free(r->reason);
  }
  kiln_free(t->rules);
  kiln_target_free(t->host);
  kiln_free(t->path);
  kiln_free(t->name);
  kiln_free(t->description);
  kiln_free(t->device_name);
  kiln_free(t->mapped_status);
  kiln_free(t);
}

const char *compile_op_type(const kiln_op *op) {
  if (op->code == KILN_OP_CUSTOM) return op->custom_code ? op->custom_code : "CUSTOM";
  return kiln_opcode_name(op->code);
}

const target_rule *target_rule_for(const kiln_target *t, const kiln_op *op) {
  const bool custom = op->code == KILN_OP_CUSTOM;
  const char *type = compile_op_type(op);
  for (int32_t i = 0; i < t->n_rules; i++)
    if (t->rules[i].custom == custom && strcmp(t->rules[i].op, type) == 0) return &t->rules[i];
  return NULL;
}
