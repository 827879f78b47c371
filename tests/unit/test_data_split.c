/*
 * test_data_split.c: the deterministic stratified split (fractions per
 * class and overall, small classes keep a training image, the same result
 * for any thread count, file names and import order, a different one for
 * another seed, assigned images untouched), carving a validation set, a
 * detection dataset, and the real Fashion-MNIST IDX files (70,000 images in
 * memory, checked against the files read here with zlib).
 */
#include <zlib.h>

#include "kiln/data.h"
#include "test_data_util.h"

/* Class folders a (50), b (20), c (3) of distinct 4x4 PGMs; names with
 * prefix, numbered forwards or backwards. */
static void make_classes(const char *root, const char *prefix, bool backwards) {
  static const struct {
    const char *name;
    int count;
  } classes[] = {{"a", 50}, {"b", 20}, {"c", 3}};
  unsigned seed = 0;
  for (int c = 0; c < 3; c++)
    for (int i = 0; i < classes[c].count; i++, seed++) {
      char rel[128];
      snprintf(rel, sizeof rel, "%s/%s%03d.pgm", classes[c].name, prefix,
               backwards ? classes[c].count - 1 - i : i);
      write_pgm(root, rel, 4, 4, seed);
    }
}

static kiln_dataset *split_dataset(const char *root, int threads, uint64_t seed) {
  kiln_data_options opt = kiln_data_options_default();
  opt.threads = threads;
  kiln_status s;
  kiln_dataset *ds = import_with(root, &opt, &s);
  if (s != KILN_OK) {
    print_problems(ds);
    test_failures++;
  }
  kiln_split_options so = kiln_split_options_default();
  so.seed = seed;
  kiln_error err;
  if (kiln_dataset_split(ds, &so, &err) != KILN_OK) test_failures++;
  return ds;
}

static kiln_split split_of_hash(const kiln_dataset *ds, const char *hash) {
  for (int32_t i = 0; i < ds->n_images; i++)
    if (strcmp(ds->images[i].hash, hash) == 0) return ds->images[i].split;
  return (kiln_split)-1;
}

static void test_stratified(void) {
  const char *root = scratch(0);
  make_classes(root, "", false);
  kiln_dataset *ds = split_dataset(root, 1, 0);
  REQUIRE(ds && ds->n_images == 73 && ds->n_labels == 3);
  int32_t per[3][KILN_SPLIT_COUNT] = {{0}}, total[KILN_SPLIT_COUNT] = {0};
  for (int32_t i = 0; i < ds->n_images; i++) {
    per[ds->images[i].label][ds->images[i].split]++;
    total[ds->images[i].split]++;
  }
  CHECK(total[KILN_SPLIT_UNASSIGNED] == 0);
  static const double frac[KILN_SPLIT_COUNT] = {0, 0.8, 0.1, 0.1};
  static const int n[3] = {50, 20, 3};
  for (int k = 1; k < KILN_SPLIT_COUNT; k++) {
    CHECK_MSG(fabs(total[k] - 73 * frac[k]) <= 1, "split %d: %d images", k, total[k]);
    for (int c = 0; c < 3; c++)
      CHECK_MSG(fabs(per[c][k] - n[c] * frac[k]) <= 2, "class %d split %d: %d of %d", c, k, per[c][k], n[c]);
  }
  CHECK(per[2][KILN_SPLIT_TRAIN] >= 1);
  CHECK(per[0][KILN_SPLIT_TRAIN] == 40 && per[0][KILN_SPLIT_VAL] == 5 && per[0][KILN_SPLIT_TEST] == 5);
  /* the same with two threads, other file names, another import order */
  const char *other = scratch(1);
  make_classes(other, "z", true);
  kiln_dataset *same = split_dataset(other, 2, 0), *reseeded = split_dataset(root, 1, 7);
  REQUIRE(same && reseeded && same->n_images == 73 && reseeded->n_images == 73);
  int differ_seed = 0;
  for (int32_t i = 0; i < ds->n_images; i++) {
    CHECK(split_of_hash(same, ds->images[i].hash) == ds->images[i].split);
    differ_seed += split_of_hash(reseeded, ds->images[i].hash) != ds->images[i].split;
  }
  CHECK(differ_seed > 0);
  /* images that have a split keep it; only unassigned ones are given one */
  for (int32_t i = 0; i < same->n_images; i++) same->images[i].split = i < 10 ? KILN_SPLIT_TEST : KILN_SPLIT_UNASSIGNED;
  kiln_error err;
  REQUIRE(kiln_dataset_split(same, NULL, &err) == KILN_OK);
  for (int32_t i = 0; i < 10; i++) CHECK(same->images[i].split == KILN_SPLIT_TEST);
  for (int32_t i = 0; i < same->n_images; i++) CHECK(same->images[i].split != KILN_SPLIT_UNASSIGNED);
  kiln_split_options bad = {0.8f, 0.3f, 0.1f, 0};
  CHECK(kiln_dataset_split(same, &bad, &err) == KILN_ERR_INVALID_ARG);
  CHECK(strcmp(err.msg, "split fractions 0.8/0.3/0.1 must be non-negative and sum to 1") == 0);
  kiln_dataset_free(ds);
  kiln_dataset_free(same);
  kiln_dataset_free(reseeded);
  scratch_done(0);
  scratch_done(1);
}

/* Classes of one image each keep it for training. */
static void test_small_classes(void) {
  const char *root = scratch(0);
  char rel[64];
  for (unsigned i = 0; i < 30; i++) {
    snprintf(rel, sizeof rel, "many/%02u.pgm", i);
    write_pgm(root, rel, 4, 4, i);
  }
  for (unsigned c = 0; c < 12; c++) {
    snprintf(rel, sizeof rel, "single%02u/a.pgm", c);
    write_pgm(root, rel, 4, 4, 100 + c);
  }
  kiln_dataset *ds = split_dataset(root, 1, 0);
  REQUIRE(ds && ds->n_images == 42);
  for (int32_t i = 0; i < ds->n_images; i++)
    if (strncmp(ds->images[i].source, "single", 6) == 0)
      CHECK_MSG(ds->images[i].split == KILN_SPLIT_TRAIN, "%s is in %s", ds->images[i].source,
                kiln_split_name(ds->images[i].split));
  kiln_dataset_free(ds);
  scratch_done(0);
}

static void test_carve(void) {
  const char *root = scratch(0);
  make_classes(root, "", false);
  kiln_dataset *ds = split_dataset(root, 1, 0);
  REQUIRE(ds);
  int32_t train = 0, val = 0, moved = 0;
  for (int32_t i = 0; i < ds->n_images; i++) {
    train += ds->images[i].split == KILN_SPLIT_TRAIN;
    val += ds->images[i].split == KILN_SPLIT_VAL;
  }
  kiln_error err;
  REQUIRE(kiln_dataset_carve(ds, KILN_SPLIT_TRAIN, KILN_SPLIT_VAL, 0.25f, 3, &moved, &err) == KILN_OK);
  int32_t train2 = 0, val2 = 0;
  for (int32_t i = 0; i < ds->n_images; i++) {
    train2 += ds->images[i].split == KILN_SPLIT_TRAIN;
    val2 += ds->images[i].split == KILN_SPLIT_VAL;
  }
  CHECK(moved == train - train2 && val2 == val + moved);
  CHECK_MSG(fabs(moved - 0.25 * train) <= 1, "moved %d of %d", moved, train);
  CHECK(kiln_dataset_carve(ds, KILN_SPLIT_TRAIN, KILN_SPLIT_TRAIN, 0.1f, 0, NULL, &err) == KILN_ERR_INVALID_ARG);
  CHECK(kiln_dataset_carve(ds, KILN_SPLIT_TRAIN, KILN_SPLIT_VAL, 1.5f, 0, NULL, &err) == KILN_ERR_INVALID_ARG);
  kiln_dataset_free(ds);
  scratch_done(0);
}

/* Detection: 30 unassigned images, a third with cats (and a dog), a third
 * with dogs, a third background: each group near 80/10/10. */
static void test_detection_split(void) {
  const char *root = scratch(0);
  char csv[8192] = "", rel[64];
  size_t used = 0;
  for (int i = 0; i < 30; i++) {
    snprintf(rel, sizeof rel, "images/%02d.pgm", i);
    write_pgm(root, rel, 8, 8, (unsigned)i + 1000);
    if (i % 3 == 0)
      used += (size_t)snprintf(csv + used, sizeof csv - used,
                               "UNASSIGNED,%s,cat,0.1,0.1,,,0.5,0.5,,\nUNASSIGNED,%s,cat,0.5,0.5,,,0.9,0.9,,\n"
                               "UNASSIGNED,%s,dog,0.2,0.2,,,0.4,0.4,,\n", rel, rel, rel);
    else if (i % 3 == 1)
      used += (size_t)snprintf(csv + used, sizeof csv - used, "UNASSIGNED,%s,dog,0.1,0.1,,,0.5,0.5,,\n", rel);
    else
      used += (size_t)snprintf(csv + used, sizeof csv - used, "UNASSIGNED,%s,,,,,,,,,\n", rel);
  }
  write_text(root, "data.csv", csv);
  kiln_dataset *ds = split_dataset(root, 1, 0);
  REQUIRE(ds && ds->task == KILN_TASK_DETECT && ds->n_images == 30);
  int32_t per[3][KILN_SPLIT_COUNT] = {{0}};
  for (int32_t i = 0; i < 30; i++) {
    int group = ds->images[i].n_boxes == 0 ? 2 : ds->images[i].n_boxes == 3 ? 0 : 1;
    per[group][ds->images[i].split]++;
  }
  for (int g = 0; g < 3; g++) {
    CHECK_MSG(per[g][KILN_SPLIT_TRAIN] == 8 && per[g][KILN_SPLIT_VAL] == 1 && per[g][KILN_SPLIT_TEST] == 1,
              "group %d: %d/%d/%d", g, per[g][KILN_SPLIT_TRAIN], per[g][KILN_SPLIT_VAL], per[g][KILN_SPLIT_TEST]);
  }
  kiln_dataset_free(ds);
  scratch_done(0);
}

/* The IDX file's payload read here with zlib (independently of kiln). */
static unsigned char *gunzip(const char *path, size_t skip, size_t n) {
  gzFile z = gzopen(path, "rb");
  if (!z) return NULL;
  unsigned char *buf = malloc(skip + n);
  int got = gzread(z, buf, (unsigned)(skip + n));
  gzclose(z);
  if (got != (int)(skip + n)) {
    free(buf);
    return NULL;
  }
  memmove(buf, buf + skip, n);
  return buf;
}

static void test_fashion_mnist(void) {
  const char *dir = getenv("KILN_FASHION_MNIST");
  if (!dir) dir = "/usr/share/datasets/fashion-mnist";
  char images[4096], labels[4096];
  path_join(images, sizeof images, dir, "train-images-idx3-ubyte.gz");
  path_join(labels, sizeof labels, dir, "train-labels-idx1-ubyte.gz");
  struct stat st;
  if (stat(images, &st) != 0) {
    fprintf(stderr, "  skipped: %s not found (Debian package dataset-fashion-mnist)\n", images);
    return;
  }
  kiln_dataset *ds = import_ok(dir);
  REQUIRE(ds && ds->n_errors == 0 && ds->format == KILN_DATA_IDX);
  REQUIRE(ds->n_images == 70000 && ds->n_labels == 10);
  int32_t per[10][KILN_SPLIT_COUNT] = {{0}};
  for (int32_t i = 0; i < ds->n_images; i++) {
    const kiln_data_image *im = &ds->images[i];
    if (im->label >= 0 && im->label < 10) per[im->label][im->split]++;
    if (i % 997 == 0) CHECK(im->width == 28 && im->height == 28 && im->channels == 1 && im->pixels);
  }
  for (int c = 0; c < 10; c++) {
    CHECK(per[c][KILN_SPLIT_TRAIN] == 6000 && per[c][KILN_SPLIT_TEST] == 1000);
    char digit[4];
    snprintf(digit, sizeof digit, "%d", c);
    CHECK(strcmp(ds->labels[c], digit) == 0);
  }
  /* t10k sorts first: the training set starts at image 10000 */
  unsigned char *px = gunzip(images, 16, 28 * 28 * 2), *lb = gunzip(labels, 8, 2);
  REQUIRE(px && lb);
  for (int k = 0; k < 2; k++) {
    const kiln_data_image *im = &ds->images[10000 + k];
    CHECK(k == 1 || strcmp(im->source, "train-images-idx3-ubyte.gz: image 0") == 0);
    CHECK(im->label == lb[k] && im->split == KILN_SPLIT_TRAIN);
    CHECK(memcmp(im->pixels, px + k * 784, 784) == 0);
  }
  unsigned char pgm[13 + 784], digest[32];
  char hex[65];
  memcpy(pgm, "P5\n28 28\n255\n", 13);
  memcpy(pgm + 13, px, 784);
  crypto_hash_sha256(digest, pgm, 13 + 784);
  sodium_bin2hex(hex, sizeof hex, digest, sizeof digest);
  CHECK(strcmp(hex, ds->images[10000].hash) == 0);
  free(px);
  free(lb);
  /* a stratified validation set out of the training images */
  int32_t moved;
  kiln_error err;
  REQUIRE(kiln_dataset_carve(ds, KILN_SPLIT_TRAIN, KILN_SPLIT_VAL, 0.1f, 0, &moved, &err) == KILN_OK);
  CHECK(moved == 6000);
  int32_t val[10] = {0};
  for (int32_t i = 0; i < ds->n_images; i++)
    if (ds->images[i].split == KILN_SPLIT_VAL) val[ds->images[i].label]++;
  for (int c = 0; c < 10; c++) CHECK_MSG(val[c] == 600, "class %d: %d validation images", c, val[c]);
  kiln_dataset_free(ds);
}

int main(void) {
  RUN(test_stratified);
  RUN(test_small_classes);
  RUN(test_carve);
  RUN(test_detection_split);
  RUN(test_fashion_mnist);
  return test_summary();
}
