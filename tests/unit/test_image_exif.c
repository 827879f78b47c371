/*
 * test_image_exif.c: EXIF orientation. JPEGs written with libjpeg carrying
 * an APP1 Exif segment for each of the 8 orientations (both byte orders)
 * must come out as the EXIF table says: the table gives, for each value,
 * which displayed side the stored first row and first column are on, and
 * the test derives where each stored corner must end up from that alone.
 * Then the parser on malformed, truncated and random segments, each in an
 * exactly sized heap buffer so the sanitizers see any overread.
 */
#include <string.h>

#include "kiln/image.h"
#include "test_image_util.h"
#include "testutil.h"
#include "vision/image_int.h"

enum side { TOP, BOTTOM, LEFT, RIGHT };

static enum side opposite(enum side s) {
  switch (s) {
    case TOP: return BOTTOM;
    case BOTTOM: return TOP;
    case LEFT: return RIGHT;
    default: return LEFT;
  }
}

/* EXIF 2.3, tag 0x0112: the visual side of the stored 0th row and 0th
 * column, for values 1..8. */
static const enum side row0_side[9] = {TOP, TOP, TOP, BOTTOM, BOTTOM, LEFT, RIGHT, RIGHT, LEFT};
static const enum side col0_side[9] = {LEFT, LEFT, RIGHT, RIGHT, LEFT, TOP, TOP, BOTTOM, BOTTOM};

static void put16(uint8_t *p, uint32_t v, bool be) {
  p[be ? 0 : 1] = (uint8_t)(v >> 8);
  p[be ? 1 : 0] = (uint8_t)v;
}

static void put32(uint8_t *p, uint32_t v, bool be) {
  put16(p + (be ? 0 : 2), v >> 16, be);
  put16(p + (be ? 2 : 0), v & 0xFFFF, be);
}

/* An APP1 payload: "Exif\0\0", TIFF header, IFD0 with `before` unrelated
 * entries, then the orientation entry (type, count and value as given),
 * then a next-IFD offset of 0. Returns its length. */
static size_t make_exif(uint8_t *buf, bool be, int before, uint32_t type, uint32_t count,
                        uint32_t value) {
  memcpy(buf, "Exif\0\0", 6);
  uint8_t *t = buf + 6;
  t[0] = t[1] = be ? 'M' : 'I';
  put16(t + 2, 42, be);
  put32(t + 4, 8, be);
  put16(t + 8, (uint32_t)before + 1, be);
  uint8_t *e = t + 10;
  for (int i = 0; i < before; i++, e += 12) {
    put16(e, 0x0100 + (uint32_t)i, be); /* ImageWidth, ImageLength, ... */
    put16(e + 2, 2, be);                /* ASCII */
    put32(e + 4, 4, be);
    memcpy(e + 8, "kil", 4);
  }
  put16(e, 0x0112, be);
  put16(e + 2, type, be);
  put32(e + 4, count, be);
  put32(e + 8, 0, be);
  if (type == 3)
    put16(e + 8, value, be);
  else
    put32(e + 8, value, be);
  put32(e + 12, 0, be);
  return (size_t)(e + 16 - buf);
}

/* kiln_exif_orientation on a copy in a heap buffer of exactly n bytes. */
static int32_t orient_exact(const uint8_t *data, size_t n) {
  uint8_t *copy = malloc(n ? n : 1);
  memcpy(copy, data, n);
  int32_t o = kiln_exif_orientation(copy, n);
  free(copy);
  return o;
}

static const uint8_t quad_color[2][2][3] = {{{255, 0, 0}, {0, 255, 0}},
                                            {{0, 0, 255}, {255, 255, 255}}};

static void test_all_orientations(void) {
  const int sw = 48, sh = 32; /* quadrants of 24x16 */
  uint8_t *rgb = malloc((size_t)sw * sh * 3);
  for (int y = 0; y < sh; y++)
    for (int x = 0; x < sw; x++)
      memcpy(rgb + ((size_t)y * sw + (size_t)x) * 3, quad_color[y >= sh / 2][x >= sw / 2], 3);
  kiln_image plain = {0};
  for (int be = 0; be < 2; be++) {
    for (int o = 1; o <= 8; o++) {
      uint8_t app1[128];
      size_t n = make_exif(app1, be, o % 3, 3, 1, (uint32_t)o);
      REQUIRE(orient_exact(app1, n) == o);
      jpeg_spec spec = {3, 95, o % 2 == 0, false, app1, n};
      size_t size;
      uint8_t *file = test_jpeg_encode(rgb, sw, sh, &spec, &size);
      kiln_image img;
      kiln_error err;
      kiln_status st = kiln_image_decode_memory(file, size, "exif.jpg", NULL, &img, &err);
      free(file);
      CHECK_MSG(st == KILN_OK, "orientation %d: %s", o, err.msg);
      if (st != KILN_OK) continue;
      bool swap = o >= 5;
      CHECK(img.orientation == o);
      CHECK(img.source_width == sw && img.source_height == sh);
      CHECK(img.width == (swap ? sh : sw) && img.height == (swap ? sw : sh));
      CHECK(img.stride == (size_t)img.width * 3);
      for (int qr = 0; qr < 2; qr++)
        for (int qc = 0; qc < 2; qc++) {
          enum side a = qr ? opposite(row0_side[o]) : row0_side[o];
          enum side b = qc ? opposite(col0_side[o]) : col0_side[o];
          enum side vert = (a == TOP || a == BOTTOM) ? a : b;
          enum side horiz = (a == TOP || a == BOTTOM) ? b : a;
          int x = horiz == LEFT ? img.width / 4 : img.width * 3 / 4;
          int y = vert == TOP ? img.height / 4 : img.height * 3 / 4;
          const uint8_t *p = img.pixels + (size_t)y * img.stride + 3 * (size_t)x;
          int d = 0;
          for (int c = 0; c < 3; c++) d += abs(p[c] - quad_color[qr][qc][c]);
          CHECK_MSG(d < 60, "orientation %d (%s): stored corner %d,%d at %d,%d is %d %d %d", o,
                    be ? "MM" : "II", qr, qc, x, y, p[0], p[1], p[2]);
        }
      /* Exactly the stored pixels moved: the same data decoded with
       * orientation 1 and transformed gives identical bytes. */
      if (o == 1 && !be) {
        plain = img;
        continue;
      }
      if (plain.pixels) {
        kiln_image copy;
        REQUIRE(kiln_image_alloc_pixels(plain.width, plain.height, &copy, &err) == KILN_OK);
        memcpy(copy.pixels, plain.pixels, plain.stride * (size_t)plain.height);
        REQUIRE(kiln_image_apply_orientation(&copy, o, &err) == KILN_OK);
        CHECK_MSG(test_image_max_diff(&copy, &img) == 0, "orientation %d", o);
        kiln_image_free(&copy);
      }
      kiln_image_free(&img);
    }
  }
  kiln_image_free(&plain);
  free(rgb);
}

static void test_pil_exif_fixture(void) {
  kiln_image img;
  kiln_error err;
  REQUIRE(kiln_image_decode_file(test_data_path("images/pil_exif6.jpg"), NULL, &img, &err) ==
          KILN_OK);
  /* Stored 24x16, red top-left; 6 = rotate 90 clockwise to display. */
  CHECK(img.orientation == 6 && img.width == 16 && img.height == 24);
  CHECK(img.source_width == 24 && img.source_height == 16);
  const uint8_t *tr = img.pixels + (size_t)5 * img.stride + 3 * 12; /* top right */
  const uint8_t *bl = img.pixels + (size_t)18 * img.stride + 3 * 3; /* bottom left */
  CHECK_MSG(tr[0] > 200 && tr[1] < 60 && tr[2] < 60, "%d %d %d", tr[0], tr[1], tr[2]);
  CHECK_MSG(bl[0] > 200 && bl[1] > 200 && bl[2] > 200, "%d %d %d", bl[0], bl[1], bl[2]);
  kiln_image_free(&img);
}

static void test_parser_malformed(void) {
  uint8_t b[256];
  size_t n;
  for (int be = 0; be < 2; be++) {
    n = make_exif(b, be, 5, 3, 1, 8);
    CHECK(orient_exact(b, n) == 8);
    CHECK(orient_exact(b, n - 4) == 8); /* no next-IFD offset: still fine */
    /* Every shorter prefix: the entry is cut, so 1; never a read past n. */
    for (size_t k = 0; k < n - 4; k++) CHECK(orient_exact(b, k) == 1);
    n = make_exif(b, be, 0, 4, 1, 6); /* LONG, not SHORT */
    CHECK(orient_exact(b, n) == 1);
    n = make_exif(b, be, 0, 3, 2, 6); /* count 2 */
    CHECK(orient_exact(b, n) == 1);
    n = make_exif(b, be, 0, 3, 1, 0); /* out of range */
    CHECK(orient_exact(b, n) == 1);
    n = make_exif(b, be, 0, 3, 1, 9);
    CHECK(orient_exact(b, n) == 1);
    n = make_exif(b, be, 0, 3, 1, 0x0106); /* high byte set */
    CHECK(orient_exact(b, n) == 1);
    n = make_exif(b, be, 2, 3, 1, 3);
    put16(b + 6 + 8, 2, be); /* count says 2 entries: orientation not among them */
    CHECK(orient_exact(b, n) == 1);
    put16(b + 6 + 8, 0xFFFF, be); /* count far beyond the data */
    CHECK(orient_exact(b, n) == 3);
    n = make_exif(b, be, 0, 3, 1, 5);
    put32(b + 6 + 4, 4, be); /* IFD inside the header */
    CHECK(orient_exact(b, n) == 1);
    put32(b + 6 + 4, (uint32_t)n, be); /* IFD past the end */
    CHECK(orient_exact(b, n) == 1);
    put32(b + 6 + 4, 0xFFFFFFF0u, be); /* offset that would wrap */
    CHECK(orient_exact(b, n) == 1);
    n = make_exif(b, be, 0, 3, 1, 5);
    put16(b + 6 + 2, 43, be); /* not 42 */
    CHECK(orient_exact(b, n) == 1);
  }
  n = make_exif(b, false, 0, 3, 1, 5);
  b[6] = 'M'; /* "MI" */
  CHECK(orient_exact(b, n) == 1);
  n = make_exif(b, false, 0, 3, 1, 5);
  b[4] = 'x';
  CHECK(orient_exact(b, n) == 1);
  CHECK(kiln_exif_orientation(NULL, 0) == 1);
}

static void test_parser_random(void) {
  test_rng rng = {7};
  uint8_t b[96];
  int found = 0;
  for (int iter = 0; iter < 200000; iter++) {
    size_t n = make_exif(b, iter & 1, test_rand_int(&rng, 0, 3), 3, 1,
                         (uint32_t)test_rand_int(&rng, 1, 8));
    int flips = test_rand_int(&rng, 1, 4);
    for (int f = 0; f < flips; f++)
      b[test_rand_int(&rng, 6, (int32_t)n - 1)] = (uint8_t)test_rand_u32(&rng);
    size_t len = (size_t)test_rand_int(&rng, 0, (int32_t)n);
    int32_t o = orient_exact(b, len);
    if (o < 1 || o > 8) {
      CHECK_MSG(0, "orientation %d out of range", o);
      break;
    }
    found += o != 1;
  }
  CHECK(found > 1000); /* the fuzzing did reach the tag */
}

/* A JPEG with an XMP APP1 first, then Exif; and one with a broken Exif. */
static void test_jpeg_app1_variants(void) {
  uint8_t rgb[16 * 8 * 3];
  memset(rgb, 90, sizeof rgb);
  uint8_t exif[128];
  size_t n = make_exif(exif, true, 1, 3, 1, 8);
  static const char xmp[] = "http://ns.adobe.com/xap/1.0/\0<x:xmpmeta/>";

  struct jpeg_compress_struct c;
  struct jpeg_error_mgr jerr;
  unsigned char *buf = NULL;
  unsigned long len = 0;
  c.err = jpeg_std_error(&jerr);
  jpeg_create_compress(&c);
  jpeg_mem_dest(&c, &buf, &len);
  c.image_width = 16;
  c.image_height = 8;
  c.input_components = 3;
  c.in_color_space = JCS_RGB;
  jpeg_set_defaults(&c);
  jpeg_start_compress(&c, TRUE);
  jpeg_write_marker(&c, JPEG_APP0 + 1, (const JOCTET *)xmp, sizeof xmp);
  jpeg_write_marker(&c, JPEG_APP0 + 1, exif, (unsigned)n);
  while (c.next_scanline < 8) {
    JSAMPROW row = rgb + (size_t)c.next_scanline * 48;
    jpeg_write_scanlines(&c, &row, 1);
  }
  jpeg_finish_compress(&c);
  jpeg_destroy_compress(&c);
  kiln_image img;
  kiln_error err;
  REQUIRE(kiln_image_decode_memory(buf, len, "xmp.jpg", NULL, &img, &err) == KILN_OK);
  CHECK(img.orientation == 8 && img.width == 8 && img.height == 16);
  kiln_image_free(&img);
  free(buf);

  n = make_exif(exif, false, 0, 3, 1, 6);
  exif[7] = 'M'; /* byte order "IM": malformed, so no orientation */
  jpeg_spec spec = {3, 90, false, false, exif, n};
  size_t size;
  uint8_t *file = test_jpeg_encode(rgb, 16, 8, &spec, &size);
  REQUIRE(kiln_image_decode_memory(file, size, "bad-exif.jpg", NULL, &img, &err) == KILN_OK);
  CHECK(img.orientation == 1 && img.width == 16 && img.height == 8);
  kiln_image_free(&img);
  free(file);
}

int main(void) {
  RUN(test_all_orientations);
  RUN(test_pil_exif_fixture);
  RUN(test_parser_malformed);
  RUN(test_parser_random);
  RUN(test_jpeg_app1_variants);
  return test_summary();
}
