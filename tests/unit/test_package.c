/* The OCI image writer on stand-in runtimes (small files in a temporary
 * directory, so the test is fast): reproducible bytes, the image index over
 * two architectures, the archive read back with its digests checked, errors
 * that leave nothing behind, and registry reference parsing. The real image
 * (kiln's own runtime, skopeo, umoci, a registry) is tests/conformance/
 * test_package.py. */
#include <dirent.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "kiln/package.h"
#include "package/package_int.h"
#include "package/registry_int.h"
#include "testutil.h"

static char dir[256];
static char paths[4][320];

static void write_file(const char *path, const char *text) {
  FILE *f = fopen(path, "wb");
  if (!f) return;
  fputs(text, f);
  fclose(f);
}

/* dir/bin-ARCH, dir/lib/ld-linux-ARCH.so, dir/lib/libfake.so */
static void setup(void) {
  snprintf(dir, sizeof dir, "/tmp/kiln-test-package-XXXXXX");
  if (!mkdtemp(dir)) return;
  char lib[300];
  snprintf(lib, sizeof lib, "%s/lib", dir);
  mkdir(lib, 0755);
  snprintf(paths[0], sizeof paths[0], "%s/bin-amd64", dir);
  snprintf(paths[1], sizeof paths[1], "%s/bin-arm64", dir);
  snprintf(paths[2], sizeof paths[2], "%s/lib/ld-linux-x86-64.so.2", dir);
  snprintf(paths[3], sizeof paths[3], "%s/lib/ld-linux-aarch64.so.1", dir);
  for (int i = 0; i < 4; i++) write_file(paths[i], paths[i]);
  chmod(paths[0], 0755);
}

static int n_entries(void) {
  DIR *d = opendir(dir);
  int n = 0;
  for (struct dirent *e; d && (e = readdir(d));) n += e->d_name[0] != '.';
  if (d) closedir(d);
  return n;
}

static kiln_package_options options(kiln_package_runtime *rts, char **libs, int n_arches) {
  rts[0] = (kiln_package_runtime){"amd64", paths[0], &libs[0], 1};
  rts[1] = (kiln_package_runtime){"arm64", paths[1], &libs[1], 1};
  libs[0] = paths[2];
  libs[1] = paths[3];
  kiln_package_options o = kiln_package_options_default();
  o.model_path = test_model_path("face_detection_short_range.tflite");
  o.labels_path = NULL;
  o.name = "face";
  o.runtimes = rts;
  o.n_runtimes = n_arches;
  o.kiln_version = "test";
  o.gzip_level = 1;
  return o;
}

static unsigned char *read_whole(const char *path, size_t *n) {
  FILE *f = fopen(path, "rb");
  if (!f) return NULL;
  fseek(f, 0, SEEK_END);
  long size = ftell(f);
  fseek(f, 0, SEEK_SET);
  unsigned char *buf = malloc((size_t)size + 1);
  *n = buf ? fread(buf, 1, (size_t)size, f) : 0;
  fclose(f);
  return buf;
}

static void test_reproducible_index(void) {
  kiln_package_runtime rts[2];
  char *libs[2];
  kiln_package_options o = options(rts, libs, 2);
  char a[320], b[320];
  snprintf(a, sizeof a, "%s/a.tar", dir);
  snprintf(b, sizeof b, "%s/b.tar", dir);
  kiln_package_result ra, rb;
  kiln_error err;
  kiln_status s = kiln_package_build(&o, a, &ra, &err);
  REQUIRE(s == KILN_OK || (fprintf(stderr, "%s\n", err.msg), 0));
  REQUIRE(kiln_package_build(&o, b, &rb, &err) == KILN_OK);
  CHECK(ra.is_index && ra.n_images == 2);
  CHECK(strcmp(ra.digest, rb.digest) == 0);
  CHECK(strcmp(ra.images[0].arch, "amd64") == 0 && strcmp(ra.images[1].arch, "arm64") == 0);
  CHECK(strcmp(ra.images[0].manifest_digest, ra.images[1].manifest_digest) != 0);
  size_t na, nb;
  unsigned char *da = read_whole(a, &na), *db = read_whole(b, &nb);
  REQUIRE(da && db);
  CHECK(na == nb && memcmp(da, db, na) == 0);
  CHECK((int64_t)na == ra.archive_bytes);
  free(da);
  free(db);

  /* Read back: every small blob matches its digest; index.json names the
   * index, which names both manifests with their platforms. */
  oci_archive arc;
  REQUIRE(oci_archive_scan(a, &arc, &err) == KILN_OK);
  json_t *index = json_loadb((const char *)arc.index_json, arc.index_len, 0, NULL);
  json_t *top = json_array_get(json_object_get(index, "manifests"), 0);
  CHECK(strcmp(json_string_value(json_object_get(top, "digest")), ra.digest) == 0);
  CHECK(strcmp(json_string_value(json_object_get(top, "mediaType")), PKG_MT_INDEX) == 0);
  const oci_blob *ib = oci_archive_find(&arc, ra.digest);
  REQUIRE(ib && ib->data);
  json_t *inner = json_loadb((const char *)ib->data, (size_t)ib->size, 0, NULL);
  json_t *ms = json_object_get(inner, "manifests");
  CHECK(json_array_size(ms) == 2);
  json_t *p1 = json_object_get(json_array_get(ms, 1), "platform");
  CHECK(strcmp(json_string_value(json_object_get(p1, "architecture")), "arm64") == 0);
  CHECK(strcmp(json_string_value(json_object_get(p1, "variant")), "v8") == 0);
  /* Canonical JSON: dumping it again sorted and compact gives the same bytes. */
  char *again = json_dumps(inner, JSON_COMPACT | JSON_SORT_KEYS);
  CHECK(again && strlen(again) == (size_t)ib->size && memcmp(again, ib->data, ib->size) == 0);
  free(again);
  /* amd64 and arm64 share the model layer: 2 x (libs, bin, config, manifest) + model + index. */
  CHECK(arc.n_blobs == 10);
  json_decref(inner);
  json_decref(index);
  oci_archive_free(&arc);
  unlink(b);
  unlink(a);
}

static void test_epoch_changes_digest(void) {
  kiln_package_runtime rts[2];
  char *libs[2];
  kiln_package_options o = options(rts, libs, 1);
  char a[320];
  snprintf(a, sizeof a, "%s/c.tar", dir);
  kiln_package_result r0, r1;
  kiln_error err;
  REQUIRE(kiln_package_build(&o, a, &r0, &err) == KILN_OK);
  CHECK(!r0.is_index && strcmp(r0.digest, r0.images[0].manifest_digest) == 0);
  o.mtime = 1700000000;
  o.set_created = true;
  REQUIRE(kiln_package_build(&o, a, &r1, &err) == KILN_OK);
  CHECK(strcmp(r0.digest, r1.digest) != 0);
  oci_archive arc;
  REQUIRE(oci_archive_scan(a, &arc, &err) == KILN_OK);
  bool created = false;
  const char *want = "\"created\":\"2023-11-14T22:13:20Z\"";
  for (int32_t i = 0; i < arc.n_blobs; i++) {
    const oci_blob *b = &arc.blobs[i];
    for (int64_t k = 0; b->data && k + (int64_t)strlen(want) <= b->size; k++)
      created |= memcmp(b->data + k, want, strlen(want)) == 0;
  }
  CHECK(created);
  oci_archive_free(&arc);
  unlink(a);
}

static void expect_fail(kiln_package_options *o, const char *needle) {
  char out[320];
  snprintf(out, sizeof out, "%s/bad.tar", dir);
  kiln_package_result r;
  kiln_error err = {0};
  int before = n_entries();
  CHECK_MSG(kiln_package_build(o, out, &r, &err) != KILN_OK && strstr(err.msg, needle), "%s: '%s'", needle,
            err.msg);
  CHECK_MSG(n_entries() == before, "%s left files", needle);
}

static void test_errors(void) {
  kiln_package_runtime rts[2];
  char *libs[2];
  kiln_package_options o = options(rts, libs, 2);
  rts[1].arch = "amd64";
  expect_fail(&o, "architecture amd64 given twice");
  o = options(rts, libs, 2);
  rts[1].arch = "s390x";
  expect_fail(&o, "s390x");
  o = options(rts, libs, 1);
  rts[0].n_libraries = 0;
  expect_fail(&o, "dynamic loader");
  o = options(rts, libs, 1);
  char unclean[400];
  snprintf(unclean, sizeof unclean, "%s/lib/../lib/ld-linux-x86-64.so.2", dir);
  libs[0] = unclean;
  expect_fail(&o, "not a clean absolute path");
  o = options(rts, libs, 1);
  o.name = "-x";
  expect_fail(&o, "name '-x'");
  o = options(rts, libs, 1);
  o.model_path = paths[0]; /* not a model */
  expect_fail(&o, paths[0]);
  o = options(rts, libs, 1);
  char missing[400];
  snprintf(missing, sizeof missing, "%s/lib/ld-linux-missing.so.2", dir);
  libs[0] = missing;
  expect_fail(&o, "ld-linux-missing.so.2: cannot open");
}

static void test_tampered_archive(void) {
  kiln_package_runtime rts[2];
  char *libs[2];
  kiln_package_options o = options(rts, libs, 1);
  char a[320], b[320];
  snprintf(a, sizeof a, "%s/t.tar", dir);
  snprintf(b, sizeof b, "%s/t2.tar", dir);
  kiln_package_result r;
  kiln_error err;
  REQUIRE(kiln_package_build(&o, a, &r, &err) == KILN_OK);
  /* Flip one byte of the manifest (a small blob): the scan must notice. */
  size_t n;
  unsigned char *data = read_whole(a, &n);
  REQUIRE(data);
  char needle[80];
  snprintf(needle, sizeof needle, "\"schemaVersion\":2");
  unsigned char *hit = NULL;
  for (size_t i = 0; i + strlen(needle) < n && !hit; i++)
    if (memcmp(data + i, needle, strlen(needle)) == 0) hit = data + i;
  REQUIRE(hit);
  hit[strlen(needle) - 1] = '3';
  FILE *f = fopen(b, "wb");
  REQUIRE(f);
  fwrite(data, 1, n, f);
  fclose(f);
  free(data);
  oci_archive arc;
  CHECK(oci_archive_scan(b, &arc, &err) == KILN_ERR_FORMAT && strstr(err.msg, "digest is"));
  CHECK(oci_archive_scan(paths[2], &arc, &err) != KILN_OK); /* not a tar */
  unlink(a);
  unlink(b);
}

static void test_references(void) {
  struct {
    const char *ref, *host, *repo, *tag;
  } good[] = {
      {"127.0.0.1:5000/kiln/ssd:v1", "127.0.0.1:5000", "kiln/ssd", "v1"},
      {"registry.example.com/robots/face", "registry.example.com", "robots/face", "latest"},
      {"localhost/a/b/c:1.0-rc_2", "localhost", "a/b/c", "1.0-rc_2"},
  };
  for (size_t i = 0; i < sizeof good / sizeof good[0]; i++) {
    reg_client c;
    memset(&c, 0, sizeof c);
    kiln_error err;
    CHECK_MSG(reg_parse_reference(&c, good[i].ref, &err) == KILN_OK, "%s", good[i].ref);
    CHECK(strcmp(c.host, good[i].host) == 0 && strcmp(c.repo, good[i].repo) == 0 && strcmp(c.tag, good[i].tag) == 0);
  }
  const char *bad[] = {"ssd", "/kiln/ssd", "host:5000/", "host/Upper/case", "host/repo:", "host/repo:-x",
                       "host/repo:a b", "ho st/repo"};
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    reg_client c;
    memset(&c, 0, sizeof c);
    kiln_error err;
    CHECK_MSG(reg_parse_reference(&c, bad[i], &err) == KILN_ERR_INVALID_ARG, "%s accepted", bad[i]);
  }
}

int main(void) {
  setup();
  RUN(test_reproducible_index);
  RUN(test_epoch_changes_digest);
  RUN(test_errors);
  RUN(test_tampered_archive);
  RUN(test_references);
  for (int i = 0; i < 4; i++) unlink(paths[i]);
  char lib[300];
  snprintf(lib, sizeof lib, "%s/lib", dir);
  rmdir(lib);
  CHECK(rmdir(dir) == 0); /* nothing left behind */
  return test_summary();
}
