/*
 * Tests of model/flexbuf: the writer against bytes from an independent
 * implementation (Python's flatbuffers.flexbuffers), reading every scalar
 * kind, random round trips, and hostile input (every prefix, random byte
 * flips, random buffers, hand-made corruptions), which must yield errors,
 * never a crash (run under the sanitizers).
 */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "model/flexbuf.h"
#include "testutil.h"

/* Written by flatbuffers.flexbuffers.Builder (Python): Map with Int
 * max_detections=10, max_classes_per_detection=1, num_classes=90, Float
 * (4 bytes) nms_score_threshold=1e-8, nms_iou_threshold=0.6, y_scale=10,
 * x_scale=10, h_scale=5, w_scale=5, Int use_regular_nms=0, in that order:
 * the order and kinds TFLite's converter uses for TFLite_Detection_PostProcess. */
static const uint8_t tf2_options[217] = {
    0x6d, 0x61, 0x78, 0x5f, 0x64, 0x65, 0x74, 0x65, 0x63, 0x74, 0x69, 0x6f, 0x6e, 0x73, 0x00, 0x6d,
    0x61, 0x78, 0x5f, 0x63, 0x6c, 0x61, 0x73, 0x73, 0x65, 0x73, 0x5f, 0x70, 0x65, 0x72, 0x5f, 0x64,
    0x65, 0x74, 0x65, 0x63, 0x74, 0x69, 0x6f, 0x6e, 0x00, 0x6e, 0x75, 0x6d, 0x5f, 0x63, 0x6c, 0x61,
    0x73, 0x73, 0x65, 0x73, 0x00, 0x6e, 0x6d, 0x73, 0x5f, 0x73, 0x63, 0x6f, 0x72, 0x65, 0x5f, 0x74,
    0x68, 0x72, 0x65, 0x73, 0x68, 0x6f, 0x6c, 0x64, 0x00, 0x6e, 0x6d, 0x73, 0x5f, 0x69, 0x6f, 0x75,
    0x5f, 0x74, 0x68, 0x72, 0x65, 0x73, 0x68, 0x6f, 0x6c, 0x64, 0x00, 0x79, 0x5f, 0x73, 0x63, 0x61,
    0x6c, 0x65, 0x00, 0x78, 0x5f, 0x73, 0x63, 0x61, 0x6c, 0x65, 0x00, 0x68, 0x5f, 0x73, 0x63, 0x61,
    0x6c, 0x65, 0x00, 0x77, 0x5f, 0x73, 0x63, 0x61, 0x6c, 0x65, 0x00, 0x75, 0x73, 0x65, 0x5f, 0x72,
    0x65, 0x67, 0x75, 0x6c, 0x61, 0x72, 0x5f, 0x6e, 0x6d, 0x73, 0x00, 0x0a, 0x21, 0x7e, 0x8e, 0x46,
    0x5b, 0x68, 0x17, 0x20, 0x31, 0x3a, 0x00, 0x00, 0x0c, 0x00, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00,
    0x0a, 0x00, 0x00, 0x00, 0x00, 0x00, 0xa0, 0x40, 0x01, 0x00, 0x00, 0x00, 0x0a, 0x00, 0x00, 0x00,
    0x9a, 0x99, 0x19, 0x3f, 0x77, 0xcc, 0x2b, 0x32, 0x5a, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
    0x00, 0x00, 0xa0, 0x40, 0x00, 0x00, 0x20, 0x41, 0x00, 0x00, 0x20, 0x41, 0x0e, 0x06, 0x06, 0x0e,
    0x0e, 0x06, 0x06, 0x0e, 0x0e, 0x0e, 0x32, 0x26, 0x01};

/* Written by the Python Builder: Int big=-5000000000, UInt u16=40000,
 * Float d=0.1 (64-bit), Bool t=true, Bool f=false, IndirectInt ii=-7,
 * IndirectUInt iu=300, IndirectFloat if=2.5, String s="hello",
 * Vector v=[1,2,3], Null n. */
static const uint8_t mixed_map[190] = {
    0x62, 0x69, 0x67, 0x00, 0x75, 0x31, 0x36, 0x00, 0x64, 0x00, 0x74, 0x00, 0x66, 0x00, 0x69, 0x69,
    0x00, 0xf9, 0x69, 0x75, 0x00, 0x00, 0x2c, 0x01, 0x69, 0x66, 0x00, 0x00, 0x00, 0x00, 0x20, 0x40,
    0x73, 0x00, 0x05, 0x68, 0x65, 0x6c, 0x6c, 0x6f, 0x00, 0x76, 0x00, 0x03, 0x01, 0x02, 0x03, 0x04,
    0x04, 0x04, 0x6e, 0x00, 0x0b, 0x35, 0x2e, 0x2b, 0x20, 0x2b, 0x28, 0x09, 0x1c, 0x33, 0x3a, 0x16,
    0x0b, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
    0x0b, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x0e, 0xfa, 0xd5, 0xfe, 0xff, 0xff, 0xff,
    0x9a, 0x99, 0x99, 0x99, 0x99, 0x99, 0xb9, 0x3f, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
    0x54, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x67, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
    0x6a, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
    0x6d, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
    0x40, 0x9c, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x7c, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
    0x07, 0x0f, 0x6b, 0x22, 0x18, 0x1d, 0x03, 0x14, 0x6b, 0x0b, 0x28, 0x63, 0x27, 0x01};

static const kiln_flex_entry tf2_entries[] = {
    {"max_detections", KILN_FLEX_ENTRY_INT, 10, 0, false},
    {"max_classes_per_detection", KILN_FLEX_ENTRY_INT, 1, 0, false},
    {"num_classes", KILN_FLEX_ENTRY_INT, 90, 0, false},
    {"nms_score_threshold", KILN_FLEX_ENTRY_FLOAT, 0, 1e-8, false},
    {"nms_iou_threshold", KILN_FLEX_ENTRY_FLOAT, 0, 0.6, false},
    {"y_scale", KILN_FLEX_ENTRY_FLOAT, 0, 10.0, false},
    {"x_scale", KILN_FLEX_ENTRY_FLOAT, 0, 10.0, false},
    {"h_scale", KILN_FLEX_ENTRY_FLOAT, 0, 5.0, false},
    {"w_scale", KILN_FLEX_ENTRY_FLOAT, 0, 5.0, false},
    {"use_regular_nms", KILN_FLEX_ENTRY_INT, 0, 0, false},
};

static void test_writer_matches_python(void) {
  uint8_t *bytes = NULL;
  size_t size = 0;
  kiln_error err;
  REQUIRE(kiln_flex_write_map(tf2_entries, sizeof tf2_entries / sizeof tf2_entries[0], &bytes,
                              &size, &err) == KILN_OK);
  CHECK_MSG(size == sizeof tf2_options, "size %zu", size);
  CHECK(size == sizeof tf2_options && memcmp(bytes, tf2_options, size) == 0);
  kiln_free(bytes);
}

static void test_read_options(void) {
  kiln_flex_map map;
  kiln_error err;
  REQUIRE(kiln_flex_root_map(tf2_options, sizeof tf2_options, &map, &err) == KILN_OK);
  CHECK(map.count == 10);
  kiln_flex_ref v;
  int64_t i = -1;
  double d = 0;
  bool b = true;
  REQUIRE(kiln_flex_map_find(&map, "max_detections", &v));
  CHECK(kiln_flex_get_int(&v, &i, &err) == KILN_OK && i == 10);
  REQUIRE(kiln_flex_map_find(&map, "num_classes", &v));
  CHECK(kiln_flex_get_int(&v, &i, &err) == KILN_OK && i == 90);
  REQUIRE(kiln_flex_map_find(&map, "nms_iou_threshold", &v));
  CHECK(kiln_flex_get_double(&v, &d, &err) == KILN_OK && (float)d == 0.6f);
  REQUIRE(kiln_flex_map_find(&map, "nms_score_threshold", &v));
  CHECK(kiln_flex_get_double(&v, &d, &err) == KILN_OK && (float)d == 1e-8f);
  REQUIRE(kiln_flex_map_find(&map, "h_scale", &v));
  CHECK(kiln_flex_get_double(&v, &d, &err) == KILN_OK && d == 5.0);
  REQUIRE(kiln_flex_map_find(&map, "use_regular_nms", &v));
  CHECK(kiln_flex_get_bool(&v, &b, &err) == KILN_OK && !b);
  /* An integer read as a double converts, as flexbuffers' AsFloat does. */
  REQUIRE(kiln_flex_map_find(&map, "max_detections", &v));
  CHECK(kiln_flex_get_double(&v, &d, &err) == KILN_OK && d == 10.0);
  /* A float is not an integer. */
  REQUIRE(kiln_flex_map_find(&map, "y_scale", &v));
  CHECK(kiln_flex_get_int(&v, &i, &err) == KILN_ERR_FORMAT);
  CHECK(strstr(err.msg, "float") != NULL);
  CHECK(!kiln_flex_map_find(&map, "detections_per_class", &v));
  CHECK(!kiln_flex_map_find(&map, "", &v));
  CHECK(!kiln_flex_map_find(&map, "zzz", &v));
  /* Entries come out sorted. */
  const char *prev = "";
  for (size_t k = 0; k < map.count; k++) {
    const char *key;
    kiln_flex_map_entry(&map, k, &key, &v);
    CHECK(strcmp(prev, key) < 0);
    prev = key;
  }
}

static void test_read_every_kind(void) {
  kiln_flex_map map;
  kiln_error err;
  REQUIRE(kiln_flex_root_map(mixed_map, sizeof mixed_map, &map, &err) == KILN_OK);
  CHECK(map.count == 11);
  kiln_flex_ref v;
  int64_t i = 0;
  double d = 0;
  bool b = false;
  const char *s = NULL;
  size_t len = 0;
  REQUIRE(kiln_flex_map_find(&map, "big", &v));
  CHECK(kiln_flex_get_int(&v, &i, &err) == KILN_OK && i == -5000000000LL);
  CHECK(kiln_flex_get_double(&v, &d, &err) == KILN_OK && d == -5e9);
  REQUIRE(kiln_flex_map_find(&map, "u16", &v));
  CHECK(v.type == KILN_FLEX_UINT);
  CHECK(kiln_flex_get_int(&v, &i, &err) == KILN_OK && i == 40000);
  REQUIRE(kiln_flex_map_find(&map, "d", &v));
  CHECK(kiln_flex_get_double(&v, &d, &err) == KILN_OK && d == 0.1);
  REQUIRE(kiln_flex_map_find(&map, "t", &v));
  CHECK(kiln_flex_get_bool(&v, &b, &err) == KILN_OK && b);
  CHECK(kiln_flex_get_int(&v, &i, &err) == KILN_OK && i == 1);
  REQUIRE(kiln_flex_map_find(&map, "f", &v));
  CHECK(kiln_flex_get_bool(&v, &b, &err) == KILN_OK && !b);
  REQUIRE(kiln_flex_map_find(&map, "ii", &v));
  CHECK(v.type == KILN_FLEX_INDIRECT_INT);
  CHECK(kiln_flex_get_int(&v, &i, &err) == KILN_OK && i == -7);
  REQUIRE(kiln_flex_map_find(&map, "iu", &v));
  CHECK(kiln_flex_get_int(&v, &i, &err) == KILN_OK && i == 300);
  REQUIRE(kiln_flex_map_find(&map, "if", &v));
  CHECK(kiln_flex_get_double(&v, &d, &err) == KILN_OK && d == 2.5);
  REQUIRE(kiln_flex_map_find(&map, "s", &v));
  CHECK(kiln_flex_get_string(&v, &s, &len, &err) == KILN_OK && len == 5 && strcmp(s, "hello") == 0);
  CHECK(kiln_flex_get_int(&v, &i, &err) == KILN_ERR_FORMAT);
  REQUIRE(kiln_flex_map_find(&map, "v", &v));
  CHECK(kiln_flex_get_int(&v, &i, &err) == KILN_ERR_FORMAT);
  CHECK(strstr(err.msg, "vector") != NULL);
  CHECK(kiln_flex_get_string(&v, &s, &len, &err) == KILN_ERR_FORMAT);
  REQUIRE(kiln_flex_map_find(&map, "n", &v));
  CHECK(v.type == KILN_FLEX_NULL);
  CHECK(kiln_flex_get_double(&v, &d, &err) == KILN_ERR_FORMAT);
}

/* Reads everything a valid map offers; on hostile bytes only checks that
 * nothing crashes. */
static void exercise(const uint8_t *buf, size_t size) {
  kiln_flex_map map;
  kiln_error err;
  if (kiln_flex_root_map(buf, size, &map, &err) != KILN_OK) {
    test_checks++;
    if (err.status != KILN_ERR_FORMAT) test_failures++;
    return;
  }
  for (size_t k = 0; k < map.count; k++) {
    const char *key;
    kiln_flex_ref v, found;
    int64_t i;
    double d;
    bool b;
    const char *s;
    size_t len;
    kiln_flex_map_entry(&map, k, &key, &v);
    (void)kiln_flex_get_int(&v, &i, &err);
    (void)kiln_flex_get_double(&v, &d, &err);
    (void)kiln_flex_get_bool(&v, &b, &err);
    (void)kiln_flex_get_string(&v, &s, &len, &err);
    test_checks++;
    if (!kiln_flex_map_find(&map, key, &found) || found.pos != v.pos) test_failures++;
  }
  kiln_flex_ref none;
  (void)kiln_flex_map_find(&map, "max_detections", &none);
}

static void test_every_prefix(void) {
  const uint8_t *bufs[] = {tf2_options, mixed_map};
  const size_t sizes[] = {sizeof tf2_options, sizeof mixed_map};
  for (int k = 0; k < 2; k++) {
    for (size_t n = 0; n < sizes[k]; n++) {
      /* A copy of exactly n bytes, so the sanitizer sees any overread. */
      uint8_t *copy = kiln_malloc(n ? n : 1);
      REQUIRE(copy);
      memcpy(copy, bufs[k], n);
      exercise(copy, n);
      kiln_free(copy);
    }
    /* Every suffix too (the root moves, offsets point elsewhere). */
    for (size_t start = 1; start < sizes[k]; start++) {
      const size_t n = sizes[k] - start;
      uint8_t *copy = kiln_malloc(n);
      REQUIRE(copy);
      memcpy(copy, bufs[k] + start, n);
      exercise(copy, n);
      kiln_free(copy);
    }
  }
}

static void test_random_flips(void) {
  test_rng rng = {12345};
  const uint8_t *bufs[] = {tf2_options, mixed_map};
  const size_t sizes[] = {sizeof tf2_options, sizeof mixed_map};
  int still_valid = 0;
  for (int iter = 0; iter < 40000; iter++) {
    const int k = iter & 1;
    const size_t n = sizes[k];
    uint8_t *copy = kiln_malloc(n);
    REQUIRE(copy);
    memcpy(copy, bufs[k], n);
    const int flips = test_rand_int(&rng, 1, 4);
    for (int f = 0; f < flips; f++) {
      /* Bias towards the tail, where the structure lives. */
      const size_t at = (test_rand_u32(&rng) & 1) ? n - 1 - (size_t)test_rand_int(&rng, 0, 40)
                                                  : (size_t)test_rand_int(&rng, 0, (int32_t)n - 1);
      if (test_rand_u32(&rng) & 1) {
        copy[at] ^= (uint8_t)(1u << test_rand_int(&rng, 0, 7));
      } else {
        copy[at] = (uint8_t)test_rand_u32(&rng);
      }
    }
    kiln_flex_map map;
    if (kiln_flex_root_map(copy, n, &map, NULL) == KILN_OK) still_valid++;
    exercise(copy, n);
    kiln_free(copy);
  }
  /* Flips in key text or values leave many buffers valid: both paths ran. */
  CHECK(still_valid > 100);
  CHECK(still_valid < 39000);
}

static void test_random_bytes(void) {
  test_rng rng = {777};
  for (int iter = 0; iter < 20000; iter++) {
    const size_t n = (size_t)test_rand_int(&rng, 0, 48);
    uint8_t *buf = kiln_malloc(n ? n : 1);
    REQUIRE(buf);
    for (size_t i = 0; i < n; i++) buf[i] = (uint8_t)test_rand_u32(&rng);
    /* Make a map root likely, so the deeper checks run. */
    if (n >= 2 && (iter & 1)) {
      buf[n - 1] = (uint8_t)(1u << test_rand_int(&rng, 0, 3));
      buf[n - 2] = (uint8_t)((KILN_FLEX_MAP << 2) | test_rand_int(&rng, 0, 3));
    }
    exercise(buf, n);
    kiln_free(buf);
  }
}

static kiln_status parse_copy(const uint8_t *src, size_t n, void (*edit)(uint8_t *, size_t),
                              kiln_error *err) {
  uint8_t buf[256];
  memcpy(buf, src, n);
  edit(buf, n);
  kiln_flex_map map;
  return kiln_flex_root_map(buf, n, &map, err);
}

static void edit_root_width(uint8_t *b, size_t n) { b[n - 1] = 3; }
static void edit_root_type(uint8_t *b, size_t n) { b[n - 2] = (KILN_FLEX_INT << 2) | 0; }
static void edit_root_offset(uint8_t *b, size_t n) { b[n - 3] = 0xff; }
static void edit_unsorted(uint8_t *b, size_t n) {
  (void)n;
  b[107] = 'z'; /* "h_scale" (the first key in order) becomes "z_scale" */
}
static void edit_duplicate(uint8_t *b, size_t n) {
  (void)n;
  b[99] = 'y'; /* "x_scale" becomes a second "y_scale" */
}
static void edit_keys_width(uint8_t *b, size_t n) {
  (void)n;
  b[156] = 3; /* the map's keys-width field */
}
static void edit_count(uint8_t *b, size_t n) {
  (void)n;
  b[160] = 0xff; /* the map's size field (low bytes) */
  b[161] = 0xff;
}
static void edit_key_nul(uint8_t *b, size_t n) {
  for (size_t i = 0; i < n; i++) if (b[i] == 0) b[i] = 'a';
}

static void test_crafted_corruptions(void) {
  kiln_error err;
  CHECK(parse_copy(tf2_options, sizeof tf2_options, edit_root_width, &err) == KILN_ERR_FORMAT);
  CHECK(strstr(err.msg, "root byte width") != NULL);
  CHECK(parse_copy(tf2_options, sizeof tf2_options, edit_root_type, &err) == KILN_ERR_FORMAT);
  CHECK(strstr(err.msg, "not a map") != NULL);
  CHECK(parse_copy(tf2_options, sizeof tf2_options, edit_root_offset, &err) == KILN_ERR_FORMAT);
  CHECK(parse_copy(tf2_options, sizeof tf2_options, edit_unsorted, &err) == KILN_ERR_FORMAT);
  CHECK_MSG(strstr(err.msg, "sorted") != NULL, "%s", err.msg);
  CHECK(parse_copy(tf2_options, sizeof tf2_options, edit_duplicate, &err) == KILN_ERR_FORMAT);
  CHECK_MSG(strstr(err.msg, "'y_scale' then 'y_scale'") != NULL, "%s", err.msg);
  CHECK(parse_copy(tf2_options, sizeof tf2_options, edit_keys_width, &err) == KILN_ERR_FORMAT);
  CHECK_MSG(strstr(err.msg, "keys byte width") != NULL, "%s", err.msg);
  CHECK(parse_copy(tf2_options, sizeof tf2_options, edit_count, &err) == KILN_ERR_FORMAT);
  CHECK(parse_copy(tf2_options, sizeof tf2_options, edit_key_nul, &err) == KILN_ERR_FORMAT);
  CHECK(kiln_flex_root_map(NULL, 0, &(kiln_flex_map){0}, &err) == KILN_ERR_FORMAT);
  const uint8_t tiny[2] = {0x24, 0x01};
  CHECK(kiln_flex_root_map(tiny, 2, &(kiln_flex_map){0}, &err) == KILN_ERR_FORMAT);
  /* A map whose root offset is 0 points at itself: rejected, not looped. */
  const uint8_t self[4] = {0x00, 0x00, 0x24, 0x01};
  CHECK(kiln_flex_root_map(self, 4, &(kiln_flex_map){0}, &err) == KILN_ERR_FORMAT);
}

static void random_key(test_rng *rng, char *key, size_t cap) {
  const int n = test_rand_int(rng, 1, (int32_t)cap - 1);
  for (int i = 0; i < n; i++) key[i] = (char)('a' + test_rand_int(rng, 0, 25));
  key[n] = 0;
}

static void test_random_round_trips(void) {
  test_rng rng = {99};
  static const int64_t edge_ints[] = {0,           1,          -1,         127,       128,
                                      -128,        -129,       32767,      32768,     -32769,
                                      2147483647,  2147483648, -2147483649LL, INT64_MAX, INT64_MIN};
  for (int iter = 0; iter < 300; iter++) {
    enum { MAX_N = 40 };
    char keys[MAX_N][24];
    kiln_flex_entry e[MAX_N];
    const int n = test_rand_int(&rng, 0, MAX_N);
    int made = 0;
    for (int k = 0; k < n; k++) {
      random_key(&rng, keys[made], test_rand_int(&rng, 2, 24));
      bool dup = false;
      for (int j = 0; j < made; j++) dup = dup || strcmp(keys[j], keys[made]) == 0;
      if (dup) continue;
      kiln_flex_entry *x = &e[made];
      memset(x, 0, sizeof *x);
      x->key = keys[made];
      x->kind = (kiln_flex_kind)test_rand_int(&rng, 0, 3);
      x->i = (test_rand_u32(&rng) & 1) ? edge_ints[test_rand_int(&rng, 0, 14)]
                                       : (int64_t)test_rand_u32(&rng) - (1LL << 31);
      x->f = (test_rand_u32(&rng) & 1) ? (double)test_rand_float(&rng, -1e6f, 1e6f)
                                       : 1.0 / (double)test_rand_int(&rng, 1, 1000);
      x->b = test_rand_u32(&rng) & 1;
      made++;
    }
    uint8_t *bytes = NULL;
    size_t size = 0;
    kiln_error err;
    REQUIRE(kiln_flex_write_map(e, (size_t)made, &bytes, &size, &err) == KILN_OK);
    kiln_flex_map map;
    REQUIRE(kiln_flex_root_map(bytes, size, &map, &err) == KILN_OK);
    CHECK(map.count == (size_t)made);
    for (int k = 0; k < made; k++) {
      kiln_flex_ref v;
      REQUIRE(kiln_flex_map_find(&map, e[k].key, &v));
      int64_t i;
      double d;
      bool b;
      switch (e[k].kind) {
        case KILN_FLEX_ENTRY_INT:
          CHECK(kiln_flex_get_int(&v, &i, &err) == KILN_OK && i == e[k].i);
          break;
        case KILN_FLEX_ENTRY_FLOAT:
          CHECK(kiln_flex_get_double(&v, &d, &err) == KILN_OK && d == (double)(float)e[k].f);
          break;
        case KILN_FLEX_ENTRY_DOUBLE:
          CHECK(kiln_flex_get_double(&v, &d, &err) == KILN_OK && d == e[k].f);
          break;
        case KILN_FLEX_ENTRY_BOOL:
          CHECK(kiln_flex_get_bool(&v, &b, &err) == KILN_OK && b == e[k].b);
          CHECK(v.type == KILN_FLEX_BOOL);
          break;
      }
    }
    kiln_free(bytes);
  }
}

static void test_special_floats(void) {
  const kiln_flex_entry e[] = {
      {"inf", KILN_FLEX_ENTRY_FLOAT, 0, INFINITY, false},
      {"nan", KILN_FLEX_ENTRY_DOUBLE, 0, NAN, false},
      {"huge", KILN_FLEX_ENTRY_FLOAT, 0, 1e300, false},
      {"tiny", KILN_FLEX_ENTRY_DOUBLE, 0, 1e-300, false},
  };
  uint8_t *bytes = NULL;
  size_t size = 0;
  kiln_error err;
  REQUIRE(kiln_flex_write_map(e, 4, &bytes, &size, &err) == KILN_OK);
  kiln_flex_map map;
  REQUIRE(kiln_flex_root_map(bytes, size, &map, &err) == KILN_OK);
  kiln_flex_ref v;
  double d;
  REQUIRE(kiln_flex_map_find(&map, "inf", &v));
  CHECK(kiln_flex_get_double(&v, &d, &err) == KILN_OK && isinf(d) && d > 0);
  REQUIRE(kiln_flex_map_find(&map, "nan", &v));
  CHECK(kiln_flex_get_double(&v, &d, &err) == KILN_OK && isnan(d));
  REQUIRE(kiln_flex_map_find(&map, "huge", &v));
  CHECK(kiln_flex_get_double(&v, &d, &err) == KILN_OK && isinf(d));
  REQUIRE(kiln_flex_map_find(&map, "tiny", &v));
  CHECK(kiln_flex_get_double(&v, &d, &err) == KILN_OK && d == 1e-300);
  kiln_free(bytes);
}

static void test_writer_errors(void) {
  const kiln_flex_entry dup[] = {
      {"a", KILN_FLEX_ENTRY_INT, 1, 0, false},
      {"b", KILN_FLEX_ENTRY_INT, 2, 0, false},
      {"a", KILN_FLEX_ENTRY_BOOL, 0, 0, true},
  };
  uint8_t *bytes = NULL;
  size_t size = 0;
  kiln_error err;
  CHECK(kiln_flex_write_map(dup, 3, &bytes, &size, &err) == KILN_ERR_INVALID_ARG);
  CHECK(strstr(err.msg, "duplicate key 'a'") != NULL);
  CHECK(bytes == NULL && size == 0);
  const kiln_flex_entry nokey[] = {{NULL, KILN_FLEX_ENTRY_INT, 1, 0, false}};
  CHECK(kiln_flex_write_map(nokey, 1, &bytes, &size, &err) == KILN_ERR_INVALID_ARG);
  /* An empty map is valid. */
  REQUIRE(kiln_flex_write_map(NULL, 0, &bytes, &size, &err) == KILN_OK);
  kiln_flex_map map;
  CHECK(kiln_flex_root_map(bytes, size, &map, &err) == KILN_OK && map.count == 0);
  kiln_free(bytes);
}

int main(void) {
  RUN(test_writer_matches_python);
  RUN(test_read_options);
  RUN(test_read_every_kind);
  RUN(test_every_prefix);
  RUN(test_random_flips);
  RUN(test_random_bytes);
  RUN(test_crafted_corruptions);
  RUN(test_random_round_trips);
  RUN(test_special_floats);
  RUN(test_writer_errors);
  return test_summary();
}
