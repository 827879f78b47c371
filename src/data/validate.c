/*
 * data/validate.c: db_finish, the part of importing every format shares:
 * 1. read, hash (SHA-256, libsodium) and fully decode every image once, on
 *    the thread pool (results per item, so the outcome does not depend on
 *    the thread count); PGM/PPM files are kept in memory like IDX pixels;
 * 2. report unreadable images, duplicates by hash, size mismatches;
 * 3. convert boxes to pixels, clamp or skip them, report;
 * 4. report images without annotations;
 * 5. build the public arrays (labels sorted by name when the data did not
 *    number them), then label health (< 10 images, > 100:1) and whether
 *    anything is left to train on.
 * Messages are emitted serially in item order.
 */
#include <math.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/file.h"
#include "base/threadpool.h"
#include "data/data_int.h"

#define DECODE_CHUNK 32
#define FEW_IMAGES 10
#define MAX_RATIO 100.0
#define SMALL_BOX 0.01 /* of the image side, AutoML's minimum */
#define ROUNDING_PX 1e-3 /* conversion noise clamped without a message */

typedef struct decode_result {
  kiln_status status;
  char *msg;           /* kiln_malloc'd, on failure */
  uint8_t *pixels;     /* PGM/PPM files: kept pixels (kiln_malloc) */
  int32_t width, height, channels;
} decode_result;

typedef struct decode_job {
  dbuild *db;
  decode_result *res;
  uint64_t max_pixels;
} decode_job;

static void hash_hex(crypto_hash_sha256_state *st, char hex[KILN_DATA_HASH_HEX + 1]) {
  unsigned char digest[crypto_hash_sha256_BYTES];
  crypto_hash_sha256_final(st, digest);
  sodium_bin2hex(hex, KILN_DATA_HASH_HEX + 1, digest, sizeof digest);
}

static void hash_pixels(const uint8_t *px, int32_t w, int32_t h, int32_t c,
                        char hex[KILN_DATA_HASH_HEX + 1]) {
  char header[32];
  size_t n = netpbm_header(header, w, h, c);
  crypto_hash_sha256_state st;
  crypto_hash_sha256_init(&st);
  crypto_hash_sha256_update(&st, (const unsigned char *)header, n);
  crypto_hash_sha256_update(&st, px, (unsigned long long)w * (unsigned long long)h * (unsigned long long)c);
  hash_hex(&st, hex);
}

static void fail_result(decode_result *r, const kiln_error *e) {
  r->status = e->status ? e->status : KILN_ERR_FORMAT;
  r->msg = kiln_strdup(e->msg);
  if (!r->msg) r->status = KILN_ERR_NOMEM; /* the message is the point */
}

static void decode_file(const decode_job *job, ditem *it, decode_result *r) {
  kiln_error e = {0};
  kiln_mapped_file f;
  if (kiln_file_map(it->path, &f, &e) != KILN_OK) {
    /* its message starts with the file system path: name the image instead */
    char reason[KILN_ERROR_MSG_MAX];
    size_t n = strlen(it->path);
    snprintf(reason, sizeof reason, "%s",
             strncmp(e.msg, it->path, n) == 0 && e.msg[n] == ':' ? e.msg + n + 2 : e.msg);
    kiln_fail(&e, e.status, "%s: %s", it->name, reason);
    fail_result(r, &e);
    return;
  }
  if (netpbm_magic(f.data, f.size)) {
    const uint8_t *px;
    if (netpbm_parse(f.data, f.size, job->max_pixels, &r->width, &r->height, &r->channels, &px,
                     &e) != KILN_OK) {
      kiln_error_prefix(&e, "%s", it->name);
      fail_result(r, &e);
    } else {
      size_t bytes = (size_t)r->width * (size_t)r->height * (size_t)r->channels;
      r->pixels = kiln_malloc(bytes);
      if (!r->pixels) {
        r->status = KILN_ERR_NOMEM;
      } else {
        memcpy(r->pixels, px, bytes);
        hash_pixels(r->pixels, r->width, r->height, r->channels, it->hash);
      }
    }
    kiln_file_unmap(&f);
    return;
  }
  crypto_hash_sha256_state st;
  crypto_hash_sha256_init(&st);
  crypto_hash_sha256_update(&st, f.data, f.size);
  hash_hex(&st, it->hash);
  kiln_image_options io = {job->max_pixels};
  kiln_image img;
  if (kiln_image_decode_memory(f.data, f.size, it->name, &io, &img, &e) != KILN_OK) {
    fail_result(r, &e);
  } else {
    r->width = img.width;
    r->height = img.height;
    r->channels = 3;
    kiln_image_free(&img);
  }
  kiln_file_unmap(&f);
}

static void decode_task(void *ctx, int32_t task, int32_t thread) {
  (void)thread;
  const decode_job *job = ctx;
  dbuild *db = job->db;
  int32_t end = (task + 1) * DECODE_CHUNK;
  if (end > db->n_items) end = db->n_items;
  for (int32_t i = task * DECODE_CHUNK; i < end; i++) {
    ditem *it = &db->items[i];
    if (it->skip) continue;
    if (it->pixels)
      hash_pixels(it->pixels, it->width, it->height, it->channels, it->hash);
    else
      decode_file(job, it, &job->res[i]);
  }
}

/* Step 1 and the unreadable-image messages. */
static kiln_status decode_all(dbuild *db) {
  if (sodium_init() < 0) return KILN_ERR_INTERNAL;
  decode_result *res = kiln_calloc((size_t)db->n_items + 1, sizeof *res);
  if (!res) return KILN_ERR_NOMEM;
  int32_t threads = db->opt->threads > 0 ? db->opt->threads : kiln_cpu_count();
  int32_t tasks = (db->n_items + DECODE_CHUNK - 1) / DECODE_CHUNK;
  if (threads > tasks) threads = tasks > 0 ? tasks : 1;
  kiln_threadpool *pool = NULL;
  kiln_error e;
  if (threads > 1 && kiln_threadpool_create(threads, &pool, &e) != KILN_OK) pool = NULL;
  decode_job job = {db, res, db->opt->max_pixels};
  kiln_threadpool_run(pool, decode_task, &job, tasks);
  kiln_threadpool_free(pool);
  kiln_status s = KILN_OK;
  for (int32_t i = 0; i < db->n_items; i++) {
    ditem *it = &db->items[i];
    decode_result *r = &res[i];
    if (s == KILN_OK && r->status == KILN_ERR_NOMEM) s = KILN_ERR_NOMEM;
    if (s != KILN_OK || it->skip || it->pixels) {
      kiln_free(r->pixels);
    } else if (r->status != KILN_OK) {
      s = db_problem(db, KILN_ISSUE_UNREADABLE_IMAGE, "%s; skipped", r->msg);
      it->skip = true;
    } else if (it->expected_hash && strcmp(it->expected_hash, it->hash) != 0) {
      s = db_problem(db, KILN_ISSUE_UNREADABLE_IMAGE,
                     "%s: content does not match its name (SHA-256 %.12s...): changed or corrupt; skipped",
                     it->name, it->hash);
      it->skip = true;
      kiln_free(r->pixels);
    } else {
      it->width = r->width;
      it->height = r->height;
      it->channels = r->channels;
      if (r->pixels) {
        if (db_keep(db, r->pixels) != KILN_OK) {
          kiln_free(r->pixels);
          s = KILN_ERR_NOMEM;
        } else {
          it->pixels = r->pixels;
        }
      }
    }
    kiln_free(r->msg);
  }
  kiln_free(res);
  return s;
}

typedef struct sort_key {
  const char *key;
  int32_t index;
} sort_key;

static int by_key(const void *a, const void *b) {
  const sort_key *x = a, *y = b;
  int c = strcmp(x->key, y->key);
  return c ? c : (x->index > y->index) - (x->index < y->index);
}

static kiln_status find_duplicates(dbuild *db) {
  sort_key *order = kiln_malloc(((size_t)db->n_items + 1) * sizeof *order);
  if (!order) return KILN_ERR_NOMEM;
  int32_t n = 0;
  for (int32_t i = 0; i < db->n_items; i++)
    if (!db->items[i].skip) order[n++] = (sort_key){db->items[i].hash, i};
  qsort(order, (size_t)n, sizeof *order, by_key);
  kiln_status s = KILN_OK;
  const ditem *keep = NULL;
  for (int32_t k = 0; k < n && s == KILN_OK; k++) {
    ditem *it = &db->items[order[k].index];
    if (!keep || strcmp(keep->hash, it->hash) != 0) {
      keep = it;
      continue;
    }
    char note[512] = "";
    if (keep->label >= 0 && it->label >= 0 && keep->label != it->label)
      snprintf(note, sizeof note, "; it is labelled '%s', the kept copy '%s'",
               db->label_names[it->label], db->label_names[keep->label]);
    if (keep->split != it->split && it->split != KILN_SPLIT_UNASSIGNED)
      snprintf(note + strlen(note), sizeof note - strlen(note), "; it is in %s, the kept copy in %s",
               kiln_split_name(it->split), kiln_split_name(keep->split));
    s = db_problem(db, KILN_ISSUE_DUPLICATE, "%s: same content as %s (SHA-256 %.12s...); skipped%s",
                   it->name, keep->name, it->hash, note);
    it->skip = true;
  }
  kiln_free(order);
  return s;
}

static kiln_status check_declared_size(dbuild *db, ditem *it) {
  if (!it->declared_w || !it->declared_h) return KILN_OK;
  if (it->declared_w == it->width && it->declared_h == it->height) return KILN_OK;
  char where[512];
  db_where(&it->declared_at, where, sizeof where);
  bool rotated = it->declared_w == it->height && it->declared_h == it->width;
  return db_problem(db, KILN_ISSUE_SIZE_MISMATCH,
                    "%s: declared size %dx%d but %s is %dx%d%s; boxes kept as written", where,
                    it->declared_w, it->declared_h, it->name, it->width, it->height,
                    rotated ? " (rotated: EXIF orientation?)" : "");
}

/* Pixel corners of a box from its native form. */
static void to_pixels(const dbox *b, int32_t w, int32_t h, double px[4]) {
  const float *v = b->v;
  switch ((dbox_form)b->form) {
    case DBOX_CORNERS_PX:
      for (int k = 0; k < 4; k++) px[k] = v[k];
      break;
    case DBOX_XYWH_PX:
      px[0] = v[0];
      px[1] = v[1];
      px[2] = (double)v[0] + v[2];
      px[3] = (double)v[1] + v[3];
      break;
    case DBOX_CENTER_REL:
      px[0] = ((double)v[0] - (double)v[2] / 2) * w;
      px[1] = ((double)v[1] - (double)v[3] / 2) * h;
      px[2] = ((double)v[0] + (double)v[2] / 2) * w;
      px[3] = ((double)v[1] + (double)v[3] / 2) * h;
      break;
    case DBOX_CORNERS_REL:
      px[0] = (double)v[0] * w;
      px[1] = (double)v[1] * h;
      px[2] = (double)v[2] * w;
      px[3] = (double)v[3] * h;
      break;
  }
}

static double clampd(double v, double lo, double hi) { return v < lo ? lo : v > hi ? hi : v; }

/* Converts, clamps and checks an item's boxes in place (v becomes pixel
 * corners, form DBOX_CORNERS_PX); skipped boxes are removed. */
static kiln_status check_boxes(dbuild *db, ditem *it) {
  int32_t kept = 0;
  for (int32_t k = 0; k < it->n_boxes; k++) {
    dbox *b = &it->boxes[k];
    double px[4] = {0, 0, 0, 0}, c[4];
    to_pixels(b, it->width, it->height, px);
    double lim[4] = {it->width, it->height, it->width, it->height};
    bool moved = false;
    for (int q = 0; q < 4; q++) {
      c[q] = clampd(px[q], 0, lim[q]);
      if (fabs(c[q] - px[q]) > ROUNDING_PX) moved = true;
    }
    char where[600], native[160], a[32], bb[32], cc[32], d[32];
    db_where(&b->where, where, sizeof where);
    if (db->shared_ann)
      snprintf(where + strlen(where), sizeof where - strlen(where), " (%s)", it->name);
    fmt_box(native, sizeof native, (dbox_form)b->form, b->v);
    kiln_status s = KILN_OK;
    if (c[2] <= c[0] || c[3] <= c[1]) {
      s = db_problem(db, KILN_ISSUE_BOX_EMPTY, "%s: box %s lies outside the %dx%d image; skipped",
                     where, native, it->width, it->height);
      it->dropped_boxes = true;
      if (s != KILN_OK) return s;
      continue;
    }
    fmt_num(a, sizeof a, (float)c[0]);
    fmt_num(bb, sizeof bb, (float)c[1]);
    fmt_num(cc, sizeof cc, (float)c[2]);
    fmt_num(d, sizeof d, (float)c[3]);
    if (moved)
      s = db_problem(db, KILN_ISSUE_BOX_CLAMPED,
                     "%s: box %s extends outside the %dx%d image; clamped to (%s,%s)-(%s,%s)", where,
                     native, it->width, it->height, a, bb, cc, d);
    double bw = c[2] - c[0], bh = c[3] - c[1];
    if (s == KILN_OK && (bw < SMALL_BOX * it->width || bh < SMALL_BOX * it->height)) {
      char ws[32], hs[32];
      fmt_num(ws, sizeof ws, (float)bw);
      fmt_num(hs, sizeof hs, (float)bh);
      s = db_problem(db, KILN_ISSUE_BOX_SMALL,
                     "%s: box %s is %sx%s pixels, under 1%% of the %dx%d image's %s; kept", where,
                     native, ws, hs, it->width, it->height,
                     bw < SMALL_BOX * it->width ? "width" : "height");
    }
    if (s != KILN_OK) return s;
    dbox *o = &it->boxes[kept++];
    *o = *b;
    for (int q = 0; q < 4; q++) o->v[q] = (float)c[q];
    o->form = DBOX_CORNERS_PX;
  }
  it->n_boxes = kept;
  return KILN_OK;
}

/* quiet: after an annotation error, where these would only echo it. */
static kiln_status check_annotations(dbuild *db, ditem *it, bool quiet) {
  if (db->task == KILN_TASK_CLASSIFY) {
    if (it->label >= 0) return KILN_OK;
    it->skip = true;
    if (quiet) return KILN_OK;
    if (it->expected_ann)
      return db_problem(db, KILN_ISSUE_UNANNOTATED, "%s: no label (%s); skipped", it->name,
                        it->expected_ann);
    return db_problem(db, KILN_ISSUE_UNANNOTATED, "%s: no label; skipped", it->name);
  }
  if (it->n_boxes > 0 || quiet) return KILN_OK;
  if (it->dropped_boxes)
    return db_problem(db, KILN_ISSUE_UNANNOTATED,
                      "%s: no usable boxes left (see above); kept as a background image", it->name);
  if (it->annotated)
    return db_problem(db, KILN_ISSUE_UNANNOTATED,
                      "%s: no objects annotated%s%s; kept as a background image", it->name,
                      it->ann_file ? " in " : "", it->ann_file ? it->ann_file : "");
  if (it->expected_ann)
    return db_problem(db, KILN_ISSUE_UNANNOTATED,
                      "%s: no annotation file (expected %s); kept as a background image", it->name,
                      it->expected_ann);
  return db_problem(db, KILN_ISSUE_UNANNOTATED, "%s: no annotation; kept as a background image",
                    it->name);
}

/* Free label lists are numbered by sorted name. */
static kiln_status sort_labels(dbuild *db) {
  if (db->labels_fixed || db->n_labels < 2) return KILN_OK;
  int32_t n = db->n_labels;
  sort_key *order = kiln_malloc((size_t)n * sizeof *order);
  int32_t *remap = kiln_malloc((size_t)n * sizeof *remap);
  if (!order || !remap) {
    kiln_free(order);
    kiln_free(remap);
    return KILN_ERR_NOMEM;
  }
  for (int32_t i = 0; i < n; i++) order[i] = (sort_key){db->label_names[i], i};
  qsort(order, (size_t)n, sizeof *order, by_key);
  for (int32_t k = 0; k < n; k++) {
    remap[order[k].index] = k;
    db->label_names[k] = (char *)order[k].key;
  }
  for (int32_t i = 0; i < db->n_items; i++) {
    ditem *it = &db->items[i];
    if (it->label >= 0) it->label = remap[it->label];
    for (int32_t k = 0; k < it->n_boxes; k++) it->boxes[k].label = remap[it->boxes[k].label];
  }
  kiln_free(order);
  kiln_free(remap);
  return KILN_OK;
}

/* Step 5: the public arrays. */
static kiln_status build_public(dbuild *db) {
  kiln_dataset *ds = db->ds;
  int64_t n_boxes = 0;
  int32_t n = 0;
  for (int32_t i = 0; i < db->n_items; i++) {
    if (db->items[i].skip) continue;
    n++;
    n_boxes += db->items[i].n_boxes;
  }
  ds->labels = kiln_calloc((size_t)db->n_labels + 1, sizeof *ds->labels);
  ds->images = kiln_calloc((size_t)n + 1, sizeof *ds->images);
  kiln_data_box *boxes = kiln_calloc((size_t)n_boxes + 1, sizeof *boxes);
  if (!ds->labels || !ds->images || !boxes || db_keep(db, boxes) != KILN_OK) {
    kiln_free(boxes);
    return KILN_ERR_NOMEM;
  }
  for (int32_t k = 0; k < db->n_labels; k++) ds->labels[k] = db->label_names[k];
  ds->n_labels = db->n_labels;
  kiln_data_box *next = boxes;
  for (int32_t i = 0; i < db->n_items; i++) {
    const ditem *it = &db->items[i];
    if (it->skip) continue;
    kiln_data_image *im = &ds->images[ds->n_images++];
    memcpy(im->hash, it->hash, sizeof im->hash);
    im->path = it->pixels ? NULL : it->path;
    im->source = it->origin ? it->origin : it->name;
    im->pixels = it->pixels;
    im->width = it->width;
    im->height = it->height;
    im->channels = it->channels;
    im->split = it->split;
    im->label = db->task == KILN_TASK_CLASSIFY ? it->label : -1;
    im->n_boxes = db->task == KILN_TASK_DETECT ? it->n_boxes : 0;
    im->boxes = next;
    for (int32_t k = 0; k < im->n_boxes; k++) {
      const dbox *b = &it->boxes[k];
      next[k] = (kiln_data_box){b->v[0], b->v[1], b->v[2], b->v[3], b->label, b->flags};
    }
    next += im->n_boxes;
  }
  return KILN_OK;
}

/* Label health and whether anything is left to train on. */
static kiln_status check_health(dbuild *db) {
  kiln_dataset *ds = db->ds;
  const char *top = db->display;
  if (ds->n_errors > 0) return KILN_OK; /* counts of a dataset that failed mean little */
  if (ds->n_images == 0) return db_problem(db, KILN_ISSUE_UNUSABLE, "%s: no usable images", top);
  int32_t *count = kiln_calloc((size_t)ds->n_labels + 1, sizeof *count);
  uint8_t *seen = kiln_calloc((size_t)ds->n_labels + 1, 1);
  if (!count || !seen) {
    kiln_free(count);
    kiln_free(seen);
    return KILN_ERR_NOMEM;
  }
  int64_t total_boxes = 0;
  for (int32_t i = 0; i < ds->n_images; i++) {
    const kiln_data_image *im = &ds->images[i];
    if (im->label >= 0) count[im->label]++;
    for (int32_t k = 0; k < im->n_boxes; k++) {
      int32_t l = im->boxes[k].label;
      if (!seen[l]) count[l]++;
      seen[l] = 1;
    }
    for (int32_t k = 0; k < im->n_boxes; k++) seen[im->boxes[k].label] = 0;
    total_boxes += im->n_boxes;
  }
  kiln_free(seen);
  kiln_status s = KILN_OK;
  int32_t lo = -1, hi = -1, with_images = 0;
  for (int32_t l = 0; l < ds->n_labels && s == KILN_OK; l++) {
    if (count[l] == 0) {
      s = db_problem(db, KILN_ISSUE_FEW_IMAGES, "label '%s' has no images", ds->labels[l]);
      continue;
    }
    with_images++;
    if (count[l] < FEW_IMAGES)
      s = db_problem(db, KILN_ISSUE_FEW_IMAGES, "label '%s' has %d image%s (at least %d recommended)",
                     ds->labels[l], count[l], count[l] == 1 ? "" : "s", FEW_IMAGES);
    if (lo < 0 || count[l] < count[lo]) lo = l;
    if (hi < 0 || count[l] > count[hi]) hi = l;
  }
  if (s == KILN_OK && lo >= 0 && (double)count[hi] > MAX_RATIO * count[lo])
    s = db_problem(db, KILN_ISSUE_IMBALANCE,
                   "labels are imbalanced: '%s' has %d images, '%s' %d (%.0f:1, more than %.0f:1)",
                   ds->labels[hi], count[hi], ds->labels[lo], count[lo],
                   (double)count[hi] / count[lo], MAX_RATIO);
  kiln_free(count);
  if (s != KILN_OK) return s;
  if (ds->task == KILN_TASK_CLASSIFY && with_images < 2)
    return db_problem(db, KILN_ISSUE_UNUSABLE,
                      "%s: %d label%s with images; classification needs at least 2", top,
                      with_images, with_images == 1 ? "" : "s");
  if (ds->task == KILN_TASK_DETECT && total_boxes == 0)
    return db_problem(db, KILN_ISSUE_UNUSABLE, "%s: no boxes: nothing to train a detector on", top);
  return KILN_OK;
}

kiln_status db_finish(dbuild *db) {
  /* after an annotation error, "no annotation" warnings would only echo it */
  bool annotations_failed = db->ds->n_errors > 0;
  db->ds->task = db->task;
  kiln_status s = decode_all(db);
  if (s == KILN_OK) s = find_duplicates(db);
  for (int32_t i = 0; s == KILN_OK && i < db->n_items; i++) {
    ditem *it = &db->items[i];
    if (it->skip) continue;
    s = check_declared_size(db, it);
    if (s == KILN_OK && db->task == KILN_TASK_DETECT) s = check_boxes(db, it);
    if (s == KILN_OK) s = check_annotations(db, it, annotations_failed);
  }
  if (s == KILN_OK) s = sort_labels(db);
  if (s == KILN_OK) s = build_public(db);
  if (s == KILN_OK) s = check_health(db);
  kiln_dataset *ds = db->ds;
  int32_t listed = 0;
  for (int32_t k = 0; k < KILN_DATA_ISSUE_COUNT; k++) listed += ds->issue_counts[k];
  if (s == KILN_OK && listed > ds->n_problems) {
    /* the slot kept free by db_vproblem */
    kiln_data_issue last = ds->problems[ds->n_problems - 1].issue;
    const char *msg = db_str(db, "(more problems not listed: the counts include them)");
    if (!msg) return KILN_ERR_NOMEM;
    if (ds->n_problems == db->problems_cap) {
      kiln_data_problem *p = kiln_realloc(ds->problems, ((size_t)ds->n_problems + 1) * sizeof *p);
      if (!p) return KILN_ERR_NOMEM;
      ds->problems = p;
      db->problems_cap = ds->n_problems + 1;
    }
    ds->problems[ds->n_problems].issue = last;
    ds->problems[ds->n_problems].message = (char *)msg;
    ds->n_problems++;
  }
  return s;
}
