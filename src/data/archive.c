/*
 * data/archive.c: zip and tar (plain, gzip, bzip2, xz) archives of any
 * dataset format, extracted through libarchive into a fresh directory
 * (mkdtemp) that the dataset removes when freed.
 *
 * kiln writes every entry itself (never archive_write_disk), refusing:
 * absolute names and names with ".." components (also with '\' as the
 * separator), symbolic links whose target is absolute or leaves the tree,
 * hard links to names that would be refused, entries that would be written
 * through an existing symbolic link, more than 1,000,000 entries or 64
 * nested folders, and declared or actual sizes that would take the total
 * past max_extract_bytes. Any of these refuses the whole archive (an
 * UNSAFE error). Devices and FIFOs are ignored with a warning.
 */
#include <archive.h>
#include <archive_entry.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "data/data_int.h"

#define DEFAULT_MAX_EXTRACT (8ull << 30)
#define MAX_ENTRIES 1000000
#define MAX_DEPTH 64

bool data_is_archive_name(const char *path) {
  static const char *const ext[] = {".zip", ".tar", ".tar.gz", ".tgz", ".tar.bz2",
                                    ".tbz2", ".tar.xz", ".txz"};
  for (size_t i = 0; i < sizeof ext / sizeof ext[0]; i++)
    if (fs_has_ext(path, ext[i])) return true;
  return false;
}

/* Normalizes an entry name into out ("./a//b/" -> "a/b"); returns NULL
 * when it is acceptable, else why not. */
static const char *clean_name(const char *name, char *out, size_t size) {
  if (name[0] == '/' || name[0] == '\\' || (name[0] && name[1] == ':'))
    return "an absolute path";
  size_t len = 0;
  int depth = 0;
  out[0] = '\0';
  for (const char *p = name; *p;) {
    size_t n = strcspn(p, "/\\");
    if (n == 2 && p[0] == '.' && p[1] == '.') return "a '..' component (it would leave the folder)";
    if (n > 0 && !(n == 1 && p[0] == '.')) {
      if (++depth > MAX_DEPTH || len + n + 2 > size) return "too deep or too long a path";
      if (len) out[len++] = '/';
      memcpy(out + len, p, n);
      len += n;
      out[len] = '\0';
    }
    p += n;
    if (*p) p++;
  }
  return NULL;
}

/* A symbolic link at entry name with target must stay inside the tree. */
static bool link_stays_inside(const char *name, const char *target) {
  if (target[0] == '/' || target[0] == '\\') return false;
  int depth = 0;
  for (const char *p = name; *p; p++) depth += *p == '/'; /* folders above the link */
  for (const char *p = target; *p;) {
    size_t n = strcspn(p, "/\\");
    if (n == 2 && p[0] == '.' && p[1] == '.') {
      if (--depth < 0) return false;
    } else if (n > 0 && !(n == 1 && p[0] == '.')) {
      depth++;
    }
    p += n;
    if (*p) p++;
  }
  return true;
}

typedef struct extract {
  dbuild *db;
  const char *arch;   /* display name */
  const char *dir;    /* extraction folder */
  uint64_t budget;    /* bytes still allowed */
  uint64_t limit;
} extract;

static kiln_status refuse(extract *x, const char *name, const char *why) {
  kiln_status s = db_problem(x->db, KILN_ISSUE_UNSAFE, "%s: entry '%s': %s; archive refused", x->arch,
                             name, why);
  return s == KILN_OK ? KILN_ERR_FORMAT : s;
}

/* Creates the parent folders of rel, refusing to go through a link. */
static kiln_status make_parents(extract *x, const char *rel, const char *shown) {
  char path[4200];
  size_t base = (size_t)snprintf(path, sizeof path, "%s/", x->dir);
  for (const char *p = rel; (p = strchr(p, '/')) != NULL; p++) {
    snprintf(path + base, sizeof path - base, "%.*s", (int)(p - rel), rel);
    struct stat st;
    if (lstat(path, &st) == 0) {
      if (S_ISLNK(st.st_mode)) return refuse(x, shown, "it would be written through a symbolic link");
      if (!S_ISDIR(st.st_mode)) return refuse(x, shown, "a parent folder is a file");
    } else if (mkdir(path, 0755) != 0) {
      return db_problem(x->db, KILN_ISSUE_NOT_FOUND, "%s: cannot create %s: %s", x->arch, path + base,
                        strerror(errno)) == KILN_OK ? KILN_ERR_IO : KILN_ERR_NOMEM;
    }
  }
  return KILN_OK;
}

/* Removes a file or link at the final name (a later entry of the same
 * name wins, as with tar); folders stay. */
static kiln_status clear_final(extract *x, const char *full, const char *shown, bool *is_dir) {
  struct stat st;
  *is_dir = false;
  if (lstat(full, &st) != 0) return KILN_OK;
  if (S_ISDIR(st.st_mode)) {
    *is_dir = true;
    return KILN_OK;
  }
  if (unlink(full) != 0) return refuse(x, shown, "cannot replace an earlier entry of that name");
  return KILN_OK;
}

static kiln_status write_file(extract *x, struct archive *a, const char *full, const char *shown) {
  int fd = open(full, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0644);
  if (fd < 0)
    return db_problem(x->db, KILN_ISSUE_NOT_FOUND, "%s: cannot create '%s': %s", x->arch, shown,
                      strerror(errno)) == KILN_OK ? KILN_ERR_IO : KILN_ERR_NOMEM;
  kiln_status s = KILN_OK;
  la_int64_t written = 0;
  for (;;) {
    const void *buf;
    size_t n;
    la_int64_t off;
    int r = archive_read_data_block(a, &buf, &n, &off);
    if (r == ARCHIVE_EOF) break;
    if (r < ARCHIVE_WARN) {
      s = db_problem(x->db, KILN_ISSUE_SYNTAX, "%s: entry '%s': %s", x->arch, shown,
                     archive_error_string(a) ? archive_error_string(a) : "corrupt data");
      s = s == KILN_OK ? KILN_ERR_FORMAT : s;
      break;
    }
    if (n > x->budget) {
      char why[128];
      snprintf(why, sizeof why, "it expands past the %llu-byte limit for extraction",
               (unsigned long long)x->limit);
      s = refuse(x, shown, why);
      break;
    }
    if (off != written) {
      s = refuse(x, shown, "a sparse file (kiln does not extract those)");
      break;
    }
    x->budget -= n;
    written += (la_int64_t)n;
    for (const char *p = buf; n > 0;) {
      ssize_t w = write(fd, p, n);
      if (w < 0 && errno == EINTR) continue;
      if (w <= 0) {
        s = db_problem(x->db, KILN_ISSUE_NOT_FOUND, "%s: writing '%s': %s", x->arch, shown,
                       strerror(errno)) == KILN_OK ? KILN_ERR_IO : KILN_ERR_NOMEM;
        break;
      }
      p += w;
      n -= (size_t)w;
    }
    if (s != KILN_OK) break;
  }
  close(fd);
  return s;
}

static kiln_status extract_entry(extract *x, struct archive *a, struct archive_entry *e) {
  const char *raw = archive_entry_pathname(e);
  if (!raw) raw = archive_entry_pathname_utf8(e);
  if (!raw) return refuse(x, "?", "no name kiln can read");
  char rel[4096], full[8300];
  const char *why = clean_name(raw, rel, sizeof rel);
  if (why) return refuse(x, raw, why);
  if (!rel[0]) return KILN_OK; /* "./" */
  snprintf(full, sizeof full, "%s/%s", x->dir, rel);
  kiln_status s = make_parents(x, rel, raw);
  if (s != KILN_OK) return s;
  const char *hard = archive_entry_hardlink(e);
  mode_t type = archive_entry_filetype(e);
  if (type == AE_IFDIR) {
    struct stat st;
    if (lstat(full, &st) == 0 && !S_ISDIR(st.st_mode)) return refuse(x, raw, "a folder over an earlier file");
    if (lstat(full, &st) != 0 && mkdir(full, 0755) != 0)
      return refuse(x, raw, "cannot create the folder");
    return KILN_OK;
  }
  bool is_dir;
  s = clear_final(x, full, raw, &is_dir);
  if (s != KILN_OK) return s;
  if (is_dir) return refuse(x, raw, "a file over an earlier folder");
  if (hard) {
    char target[4096], tfull[8300];
    if (clean_name(hard, target, sizeof target) || !target[0])
      return refuse(x, raw, "a hard link to a name outside the folder");
    snprintf(tfull, sizeof tfull, "%s/%s", x->dir, target);
    struct stat st;
    if (lstat(tfull, &st) != 0 || !S_ISREG(st.st_mode) || link(tfull, full) != 0)
      return refuse(x, raw, "a hard link to something that is not an earlier file");
    return KILN_OK;
  }
  if (type == AE_IFLNK) {
    const char *target = archive_entry_symlink(e);
    if (!target || !link_stays_inside(rel, target)) {
      char why_link[4200];
      snprintf(why_link, sizeof why_link, "a symbolic link to '%s', outside the archive's folder",
               target ? target : "?");
      return refuse(x, raw, why_link);
    }
    if (symlink(target, full) != 0) return refuse(x, raw, "cannot create the symbolic link");
    return KILN_OK;
  }
  if (type != AE_IFREG)
    return db_problem(x->db, KILN_ISSUE_IGNORED_FILE, "%s: entry '%s': not a file, folder or link; ignored",
                      x->arch, raw);
  if (archive_entry_size_is_set(e) && (uint64_t)archive_entry_size(e) > x->budget) {
    char why_size[160];
    snprintf(why_size, sizeof why_size, "declares %lld bytes, past the %llu-byte limit for extraction",
             (long long)archive_entry_size(e), (unsigned long long)x->limit);
    return refuse(x, raw, why_size);
  }
  return write_file(x, a, full, raw);
}

/* The folder to import: the single top folder when there is nothing else
 * (macOS's __MACOSX and hidden entries aside). */
static kiln_status pick_root(dbuild *db, const char *dir, const char **root, const char **inner) {
  *root = db_str(db, dir);
  *inner = "";
  fs_entries e;
  kiln_error err;
  kiln_status s = fs_list(dir, &e, &err);
  if (s != KILN_OK) return s == KILN_ERR_NOMEM ? s : KILN_OK;
  int32_t kept = -1, n = 0;
  for (int32_t i = 0; i < e.n; i++) {
    if (strcmp(e.names[i], "__MACOSX") == 0) continue;
    n++;
    kept = i;
  }
  if (n == 1 && e.is_dir[kept]) {
    const char *sub = db_join(db, dir, e.names[kept]);
    struct stat st;
    if (lstat(sub, &st) == 0 && S_ISDIR(st.st_mode)) {
      *root = sub;
      *inner = db_join(db, e.names[kept], "");
    }
  }
  fs_entries_free(&e);
  return s;
}

kiln_status data_extract(dbuild *db, const char *path, const char **root, const char **inner) {
  const char *tmp = db->opt->temp_dir ? db->opt->temp_dir : getenv("TMPDIR");
  if (!tmp || !*tmp) tmp = "/tmp";
  char dir[4096];
  snprintf(dir, sizeof dir, "%s/kiln-data-XXXXXX", tmp);
  if (!mkdtemp(dir))
    return db_problem(db, KILN_ISSUE_NOT_FOUND, "%s: cannot make a folder to extract into under %s: %s",
                      path, tmp, strerror(errno)) == KILN_OK ? KILN_ERR_IO : KILN_ERR_NOMEM;
  db->ds->store->temp_dir = kiln_strdup(dir);
  if (!db->ds->store->temp_dir) {
    fs_remove_tree(dir);
    return KILN_ERR_NOMEM;
  }
  struct archive *a = archive_read_new();
  if (!a) return KILN_ERR_NOMEM;
  archive_read_support_filter_all(a);
  archive_read_support_format_zip(a);
  archive_read_support_format_tar(a);
  extract x = {db, fs_basename(path), db->ds->store->temp_dir, 0, 0};
  x.limit = db->opt->max_extract_bytes ? db->opt->max_extract_bytes : DEFAULT_MAX_EXTRACT;
  x.budget = x.limit;
  kiln_status s = KILN_OK;
  if (archive_read_open_filename(a, path, 1 << 16) != ARCHIVE_OK) {
    s = db_problem(db, KILN_ISSUE_SYNTAX, "%s: not a zip or tar archive kiln can read: %s", x.arch,
                   archive_error_string(a) ? archive_error_string(a) : "unknown format");
    archive_read_free(a);
    return s == KILN_OK ? KILN_ERR_FORMAT : s;
  }
  int32_t entries = 0;
  for (;;) {
    struct archive_entry *e;
    int r = archive_read_next_header(a, &e);
    if (r == ARCHIVE_EOF) break;
    if (r < ARCHIVE_WARN) {
      s = db_problem(db, KILN_ISSUE_SYNTAX, "%s: archive error after %d entries: %s", x.arch, entries,
                     archive_error_string(a) ? archive_error_string(a) : "corrupt");
      s = s == KILN_OK ? KILN_ERR_FORMAT : s;
      break;
    }
    if (++entries > MAX_ENTRIES) {
      s = refuse(&x, archive_entry_pathname(e) ? archive_entry_pathname(e) : "?",
                 "more than 1000000 entries");
      break;
    }
    s = extract_entry(&x, a, e);
    if (s != KILN_OK) break;
  }
  archive_read_free(a);
  if (s != KILN_OK) return s;
  return pick_root(db, x.dir, root, inner);
}
