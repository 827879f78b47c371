/*
 * test_data_archive.c: archives written here with libarchive (and one tar
 * header by hand) that try to escape the extraction folder or exhaust the
 * disk are refused with exact messages, nothing is written outside, and
 * the extraction folder is removed; in-tree links are fine.
 */
#include <archive.h>
#include <archive_entry.h>

#include "kiln/data.h"
#include "test_data_util.h"

typedef struct entry {
  const char *name;
  char type;          /* 'f' file, 's' symlink, 'h' hard link, 'c' char device */
  const char *data;   /* file contents, or the link target */
} entry;

static void write_archive(const char *path, bool zip, const entry *e, int n) {
  struct archive *a = archive_write_new();
  if (zip) archive_write_set_format_zip(a);
  else archive_write_set_format_pax_restricted(a);
  if (archive_write_open_filename(a, path) != ARCHIVE_OK) abort();
  for (int i = 0; i < n; i++) {
    struct archive_entry *ae = archive_entry_new();
    archive_entry_set_pathname(ae, e[i].name);
    archive_entry_set_perm(ae, 0644);
    if (e[i].type == 'f') {
      archive_entry_set_filetype(ae, AE_IFREG);
      archive_entry_set_size(ae, (la_int64_t)strlen(e[i].data));
    } else if (e[i].type == 's') {
      archive_entry_set_filetype(ae, AE_IFLNK);
      archive_entry_set_symlink(ae, e[i].data);
    } else if (e[i].type == 'h') {
      archive_entry_set_filetype(ae, AE_IFREG);
      archive_entry_set_hardlink(ae, e[i].data);
    } else {
      archive_entry_set_filetype(ae, AE_IFCHR);
      archive_entry_set_rdevmajor(ae, 1);
    }
    if (archive_write_header(a, ae) != ARCHIVE_OK) abort();
    if (e[i].type == 'f') archive_write_data(a, e[i].data, strlen(e[i].data));
    archive_entry_free(ae);
  }
  archive_write_close(a);
  archive_write_free(a);
}

/* Imports the archive at dir/name, extracting under dir/x, and checks the
 * refusal message; then that dir holds nothing but the archive and x/. */
static void expect_refused(const char *dir, const char *name, kiln_data_issue issue, const char *msg,
                           uint64_t limit) {
  char path[4096], tmp[4096];
  path_join(path, sizeof path, dir, name);
  path_join(tmp, sizeof tmp, dir, "x");
  mkdir(tmp, 0755);
  kiln_data_options opt = kiln_data_options_default();
  opt.temp_dir = tmp;
  opt.max_extract_bytes = limit;
  kiln_status s;
  kiln_dataset *ds = import_with(path, &opt, &s);
  CHECK_MSG(s == KILN_ERR_FORMAT, "%s: %s", name, kiln_status_str(s));
  CHECK(has_problem(ds, issue, msg));
  CHECK(ds && ds->n_errors == 1);
  kiln_dataset_free(ds);
  char escaped[4096];
  struct stat st;
  path_join(escaped, sizeof escaped, dir, "evil.txt");
  CHECK_MSG(stat(escaped, &st) != 0, "%s wrote %s", name, escaped);
  int entries = 0;
  DIR *d = opendir(tmp);
  struct dirent *de;
  while (d && (de = readdir(d)) != NULL) entries += de->d_name[0] != '.';
  if (d) closedir(d);
  CHECK_MSG(entries == 0, "%s: the extraction folder was left behind", name);
}

static void test_escapes(void) {
  const char *dir = scratch(0);
  char path[4096], abs_name[4096];
  entry trav[] = {{"ok.txt", 'f', "x"}, {"../evil.txt", 'f', "x"}};
  path_join(path, sizeof path, dir, "trav.tar");
  write_archive(path, false, trav, 2);
  expect_refused(dir, "trav.tar", KILN_ISSUE_UNSAFE,
                 "trav.tar: entry '../evil.txt': a '..' component (it would leave the folder); archive refused", 0);
  entry ztrav[] = {{"a/../../evil.txt", 'f', "x"}};
  path_join(path, sizeof path, dir, "trav.zip");
  write_archive(path, true, ztrav, 1);
  expect_refused(dir, "trav.zip", KILN_ISSUE_UNSAFE,
                 "trav.zip: entry 'a/../../evil.txt': a '..' component (it would leave the folder); archive refused", 0);
  path_join(abs_name, sizeof abs_name, dir, "evil.txt");
  entry absolute[] = {{abs_name, 'f', "x"}};
  path_join(path, sizeof path, dir, "abs.tar");
  write_archive(path, false, absolute, 1);
  char msg[4200];
  snprintf(msg, sizeof msg, "abs.tar: entry '%s': an absolute path; archive refused", abs_name);
  expect_refused(dir, "abs.tar", KILN_ISSUE_UNSAFE, msg, 0);
  entry sym_out[] = {{"data/link", 's', "../../etc"}};
  path_join(path, sizeof path, dir, "sym.tar");
  write_archive(path, false, sym_out, 1);
  expect_refused(dir, "sym.tar", KILN_ISSUE_UNSAFE,
                 "sym.tar: entry 'data/link': a symbolic link to '../../etc', outside the archive's folder; archive refused", 0);
  entry sym_abs[] = {{"link", 's', "/etc/passwd"}};
  path_join(path, sizeof path, dir, "symabs.tar");
  write_archive(path, false, sym_abs, 1);
  expect_refused(dir, "symabs.tar", KILN_ISSUE_UNSAFE,
                 "symabs.tar: entry 'link': a symbolic link to '/etc/passwd', outside the archive's folder; archive refused", 0);
  entry through[] = {{"sub/a.txt", 'f', "x"}, {"d", 's', "sub"}, {"d/x.png", 'f', "x"}};
  path_join(path, sizeof path, dir, "through.tar");
  write_archive(path, false, through, 3);
  expect_refused(dir, "through.tar", KILN_ISSUE_UNSAFE,
                 "through.tar: entry 'd/x.png': it would be written through a symbolic link; archive refused", 0);
  entry hard[] = {{"h", 'h', "../evil.txt"}};
  path_join(path, sizeof path, dir, "hard.tar");
  write_archive(path, false, hard, 1);
  expect_refused(dir, "hard.tar", KILN_ISSUE_UNSAFE,
                 "hard.tar: entry 'h': a hard link to a name outside the folder; archive refused", 0);
  write_text(dir, "junk.zip", "this is not a zip file, this is not a zip file, this is not a zip file");
  expect_refused(dir, "junk.zip", KILN_ISSUE_SYNTAX,
                 "junk.zip: not a zip or tar archive kiln can read: Unrecognized archive format", 0);
  scratch_done(0);
}

/* A ustar header for one regular file of the given size (base-256 when it
 * does not fit in 11 octal digits), followed by no data. */
static void write_tar_header(const char *dir, const char *name, const char *entry_name, uint64_t size) {
  unsigned char h[1024] = {0};
  snprintf((char *)h, 100, "%s", entry_name);
  memcpy(h + 100, "0000644", 8);
  memcpy(h + 108, "0000000", 8);
  memcpy(h + 116, "0000000", 8);
  if (size < (1ull << 33)) {
    snprintf((char *)h + 124, 12, "%011llo", (unsigned long long)size);
  } else {
    h[124] = 0x80;
    for (int i = 0; i < 8; i++) h[135 - i] = (unsigned char)(size >> (8 * i));
  }
  memcpy(h + 136, "00000000000", 12);
  h[156] = '0';
  memcpy(h + 257, "ustar", 6);
  memcpy(h + 263, "00", 2);
  memset(h + 148, ' ', 8);
  unsigned sum = 0;
  for (int i = 0; i < 512; i++) sum += h[i];
  snprintf((char *)h + 148, 8, "%06o", sum);
  write_bytes(dir, name, h, sizeof h);
}

static void test_sizes(void) {
  const char *dir = scratch(0);
  write_tar_header(dir, "huge.tar", "huge.bin", 1ull << 40);
  expect_refused(dir, "huge.tar", KILN_ISSUE_UNSAFE,
                 "huge.tar: entry 'huge.bin': declares 1099511627776 bytes, past the 8589934592-byte limit for "
                 "extraction; archive refused", 0);
  char big[1001];
  memset(big, 'a', 1000);
  big[1000] = '\0';
  entry e[] = {{"small.txt", 'f', "0123456789"}, {"big.txt", 'f', big}};
  char path[4096];
  path_join(path, sizeof path, dir, "big.zip");
  write_archive(path, true, e, 2);
  expect_refused(dir, "big.zip", KILN_ISSUE_UNSAFE,
                 "big.zip: entry 'big.txt': declares 1000 bytes, past the 100-byte limit for extraction; archive refused",
                 100);
  scratch_done(0);
}

/* A folder-per-class tar with an in-tree link and a device entry: the
 * link is extracted, the device is ignored with a warning. */
static void test_in_tree(void) {
  const char *dir = scratch(0);
  static char pgm[4][64];
  for (int i = 0; i < 4; i++) {
    int n = snprintf(pgm[i], sizeof pgm[i], "P5\n2 2\n255\n");
    for (int k = 0; k < 4; k++) pgm[i][n + k] = (char)('a' + i * 4 + k);
    pgm[i][n + 4] = '\0';
  }
  entry e[] = {{"pets/cat/a.pgm", 'f', pgm[0]}, {"pets/cat/b.pgm", 'f', pgm[1]},
               {"pets/dog/c.pgm", 'f', pgm[2]}, {"pets/dog/d.pgm", 'f', pgm[3]},
               {"pets/cat/latest", 's', "b.pgm"}, {"pets/dev", 'c', NULL}};
  char path[4096];
  path_join(path, sizeof path, dir, "pets.tar");
  write_archive(path, false, e, 6);
  kiln_data_options opt = kiln_data_options_default();
  opt.temp_dir = dir;
  kiln_status s;
  kiln_dataset *ds = import_with(path, &opt, &s);
  CHECK(s == KILN_OK);
  REQUIRE(ds);
  CHECK(ds->n_images == 4 && ds->n_labels == 2);
  CHECK(image_named(ds, "pets.tar/pets/dog/c.pgm") != NULL);
  CHECK(has_problem(ds, KILN_ISSUE_IGNORED_FILE, "pets.tar: entry 'pets/dev': not a file, folder or link; ignored"));
  CHECK(has_problem(ds, KILN_ISSUE_IGNORED_FILE, "pets.tar/pets/cat/latest: not an image (by its name); ignored"));
  kiln_dataset_free(ds);
  scratch_done(0);
}

int main(void) {
  RUN(test_escapes);
  RUN(test_sizes);
  RUN(test_in_tree);
  return test_summary();
}
