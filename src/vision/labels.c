/*
 * Label files (kiln/vision.h): one label per line, or Coral-style "ID LABEL"
 * / "ID: LABEL" lines. Read whole, split in place; lines are trimmed.
 */
#include <ctype.h>
#include <stdlib.h>
#include <string.h>

#include "base/file.h"
#include "kiln/vision.h"

#define LABELS_MAX_CLASSES 1000000

struct kiln_labels {
  char *text;     /* the file, NUL-separated lines */
  char **by_id;   /* [n] label of class i, or NULL */
  int32_t n;
};

static char *trim(char *s) {
  while (*s && isspace((unsigned char)*s)) s++;
  char *e = s + strlen(s);
  while (e > s && isspace((unsigned char)e[-1])) *--e = '\0';
  return s;
}

/* "12 person" or "12: person" -> id 12, label "person"; false otherwise. */
static bool split_id(char *line, long *id, char **label) {
  char *end;
  if (!isdigit((unsigned char)line[0])) return false;
  long v = strtol(line, &end, 10);
  if (end == line || (*end != ':' && !isspace((unsigned char)*end))) return false;
  if (*end == ':') end++;
  *id = v;
  *label = trim(end);
  return **label != '\0';
}

kiln_status kiln_labels_load(const char *path, kiln_labels **out, kiln_error *err) {
  *out = NULL;
  kiln_mapped_file f;
  kiln_status s = kiln_file_map(path, &f, err);
  if (s != KILN_OK) return s;
  s = kiln_labels_parse(f.data, f.size, path, out, err);
  kiln_file_unmap(&f);
  return s;
}

kiln_status kiln_labels_from_model(const kiln_model *model, kiln_labels **out, kiln_error *err) {
  *out = NULL;
  for (int32_t i = 0; i < model->n_metadata; i++)
    if (strcmp(model->metadata[i].name, "kiln_labels") == 0)
      return kiln_labels_parse(model->metadata[i].data, model->metadata[i].bytes,
                               "the model's kiln_labels metadata", out, err);
  return KILN_OK;
}

kiln_status kiln_labels_parse(const void *bytes, size_t size, const char *path, kiln_labels **out,
                              kiln_error *err) {
  *out = NULL;
  kiln_labels *l = kiln_calloc(1, sizeof *l);
  char *text = kiln_malloc(size + 1);
  if (!l || !text) {
    kiln_free(l);
    kiln_free(text);
    return kiln_fail(err, KILN_ERR_NOMEM, "%s: out of memory", path);
  }
  if (size) memcpy(text, bytes, size);
  text[size] = '\0';
  l->text = text;
  if (memchr(text, '\0', size)) {
    kiln_labels_free(l);
    return kiln_fail(err, KILN_ERR_FORMAT, "%s: not a text file (NUL byte)", path);
  }
  /* Split lines; drop one trailing empty line. */
  int32_t n_lines = 0;
  for (char *p = text; *p; p++) n_lines += *p == '\n';
  n_lines += size > 0 && text[size - 1] != '\n';
  if (n_lines > LABELS_MAX_CLASSES) {
    kiln_labels_free(l);
    return kiln_fail(err, KILN_ERR_LIMIT, "%s: more than %d lines", path, LABELS_MAX_CLASSES);
  }
  char **lines = kiln_calloc((size_t)n_lines + 1, sizeof *lines);
  if (!lines) {
    kiln_labels_free(l);
    return kiln_fail(err, KILN_ERR_NOMEM, "%s: out of memory", path);
  }
  int32_t k = 0;
  for (char *p = text; *p && k < n_lines;) {
    char *nl = strchr(p, '\n');
    if (nl) *nl = '\0';
    lines[k++] = trim(p);
    if (!nl) break;
    p = nl + 1;
  }
  /* Coral style when every non-empty line starts with an id. */
  bool with_ids = k > 0;
  long max_id = -1;
  for (int32_t i = 0; i < k && with_ids; i++) {
    long id;
    char *label;
    if (!lines[i][0]) continue;
    with_ids = split_id(lines[i], &id, &label) && id >= 0 && id < LABELS_MAX_CLASSES;
    if (with_ids && id > max_id) max_id = id;
  }
  if (with_ids && max_id >= 0) {
    l->n = (int32_t)max_id + 1;
    l->by_id = kiln_calloc((size_t)l->n, sizeof *l->by_id);
    if (!l->by_id) {
      kiln_free(lines);
      kiln_labels_free(l);
      return kiln_fail(err, KILN_ERR_NOMEM, "%s: out of memory", path);
    }
    for (int32_t i = 0; i < k; i++) {
      long id;
      char *label;
      if (lines[i][0] && split_id(lines[i], &id, &label)) l->by_id[id] = label;
    }
    kiln_free(lines);
  } else {
    l->n = k;
    l->by_id = lines;
  }
  *out = l;
  return KILN_OK;
}

const char *kiln_labels_get(const kiln_labels *labels, int32_t class_id) {
  if (!labels || class_id < 0 || class_id >= labels->n) return NULL;
  const char *s = labels->by_id[class_id];
  return s && *s ? s : NULL;
}

bool kiln_labels_has_background(const kiln_labels *labels) {
  const char *first = kiln_labels_get(labels, 0);
  return first && (strcmp(first, "???") == 0 || strcmp(first, "background") == 0 ||
                   strcmp(first, "__background__") == 0);
}

void kiln_labels_free(kiln_labels *labels) {
  if (!labels) return;
  kiln_free(labels->by_id);
  kiln_free(labels->text);
  kiln_free(labels);
}
