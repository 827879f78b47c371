/*
 * package/http.c: requests to an OCI registry through libcurl and the
 * registry auth flow: GET /v2/ answers 200 (no auth) or 401 with a
 * WWW-Authenticate challenge: Basic (send the credentials with every
 * request) or Bearer realm=...,service=...,scope=... (GET the realm with
 * the credentials, if any, for a token with pull,push on the repository).
 */
#include <ctype.h>
#include <jansson.h>
#include <sodium.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "package/registry_int.h"

kiln_status reg_parse_reference(reg_client *c, const char *ref, kiln_error *err) {
  const char *slash = strchr(ref, '/');
  if (!slash || slash == ref)
    return kiln_fail(err, KILN_ERR_INVALID_ARG, "'%s' is not REGISTRY[:PORT]/REPO[:TAG]", ref);
  size_t host_len = (size_t)(slash - ref);
  if (host_len >= sizeof c->host) return kiln_fail(err, KILN_ERR_INVALID_ARG, "'%s': registry name too long", ref);
  memcpy(c->host, ref, host_len);
  c->host[host_len] = '\0';
  const char *path = slash + 1, *last_slash = strrchr(path, '/');
  const char *colon = strchr(last_slash ? last_slash : path, ':');
  size_t repo_len = colon ? (size_t)(colon - path) : strlen(path);
  const char *tag = colon ? colon + 1 : "latest";
  if (repo_len == 0 || repo_len >= sizeof c->repo)
    return kiln_fail(err, KILN_ERR_INVALID_ARG, "'%s': no repository after the registry", ref);
  for (size_t i = 0; i < repo_len; i++) {
    unsigned char ch = (unsigned char)path[i];
    if (!(islower(ch) || isdigit(ch) || ch == '.' || ch == '_' || ch == '-' || ch == '/'))
      return kiln_fail(err, KILN_ERR_INVALID_ARG,
                       "'%s': repository names are lowercase letters, digits, '.', '_', '-' and '/'", ref);
  }
  size_t tag_len = strlen(tag);
  if (tag_len == 0 || tag_len > 128) return kiln_fail(err, KILN_ERR_INVALID_ARG, "'%s': tag of 1-128 characters", ref);
  for (size_t i = 0; i < tag_len; i++) {
    unsigned char ch = (unsigned char)tag[i];
    if (!(isalnum(ch) || ch == '_' || (i > 0 && (ch == '.' || ch == '-'))))
      return kiln_fail(err, KILN_ERR_INVALID_ARG, "'%s': the tag '%s' is not [A-Za-z0-9_][A-Za-z0-9._-]*", ref, tag);
  }
  memcpy(c->repo, path, repo_len);
  c->repo[repo_len] = '\0';
  memcpy(c->tag, tag, tag_len + 1);
  for (const char *h = c->host; *h; h++)
    if (!(isalnum((unsigned char)*h) || *h == '.' || *h == '-' || *h == ':' || *h == '[' || *h == ']'))
      return kiln_fail(err, KILN_ERR_INVALID_ARG, "'%s': '%s' is not a registry host[:port]", ref, c->host);
  return KILN_OK;
}

kiln_status reg_open(reg_client *c, const kiln_registry_options *o, kiln_error *err) {
  if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK)
    return kiln_fail(err, KILN_ERR_INTERNAL, "cannot start libcurl");
  c->curl = curl_easy_init();
  if (!c->curl) {
    curl_global_cleanup();
    return kiln_fail(err, KILN_ERR_NOMEM, "cannot start libcurl");
  }
  c->user = o && o->username && o->username[0] ? o->username : NULL;
  c->password = o && o->password ? o->password : "";
  c->insecure = o && o->insecure;
  snprintf(c->base, sizeof c->base, "https://%s", c->host);
  return KILN_OK;
}

void reg_close(reg_client *c) {
  if (!c->curl) return;
  curl_easy_cleanup(c->curl);
  c->curl = NULL;
  curl_global_cleanup();
  sodium_memzero(c->auth, sizeof c->auth);
}

static size_t on_body(char *data, size_t size, size_t n, void *ctx) {
  reg_response *r = ctx;
  size_t bytes = size * n, room = sizeof r->body - 1 - r->body_len;
  size_t keep = bytes < room ? bytes : room;
  memcpy(r->body + r->body_len, data, keep);
  r->body_len += keep;
  r->body[r->body_len] = '\0';
  return bytes;
}

/* Copies a header's value (trimmed) when the line is "name: value". */
static void header_value(const char *line, size_t len, const char *name, char *out, size_t cap) {
  size_t nlen = strlen(name);
  if (len <= nlen || strncasecmp(line, name, nlen) != 0 || line[nlen] != ':') return;
  const char *v = line + nlen + 1, *end = line + len;
  while (v < end && (*v == ' ' || *v == '\t')) v++;
  while (end > v && (end[-1] == '\r' || end[-1] == '\n' || end[-1] == ' ')) end--;
  size_t n = (size_t)(end - v) < cap - 1 ? (size_t)(end - v) : cap - 1;
  memcpy(out, v, n);
  out[n] = '\0';
}

static size_t on_header(char *line, size_t size, size_t n, void *ctx) {
  reg_response *r = ctx;
  size_t len = size * n;
  if (len >= 5 && strncmp(line, "HTTP/", 5) == 0) { /* a new response (after 100 or a redirect) */
    r->location[0] = r->challenge[0] = r->content_digest[0] = '\0';
  }
  header_value(line, len, "Location", r->location, sizeof r->location);
  header_value(line, len, "WWW-Authenticate", r->challenge, sizeof r->challenge);
  header_value(line, len, "Docker-Content-Digest", r->content_digest, sizeof r->content_digest);
  return len;
}

kiln_status reg_request(reg_client *c, const char *method, const char *url, const char *accept,
                        const reg_body *body, reg_response *r, kiln_error *err) {
  memset(r, 0, sizeof *r);
  char full[4096], line[256];
  if (strncmp(url, "http://", 7) == 0 || strncmp(url, "https://", 8) == 0)
    snprintf(full, sizeof full, "%s", url);
  else
    snprintf(full, sizeof full, "%s%s", c->base, url);
  CURL *h = c->curl;
  curl_easy_reset(h);
  struct curl_slist *headers = NULL, *more;
  bool nomem = false;
#define ADD_HEADER(text)                                  \
  do {                                                    \
    more = curl_slist_append(headers, text);              \
    if (more) headers = more; else nomem = true;          \
  } while (0)
  ADD_HEADER("Expect:");
  if (c->auth[0]) ADD_HEADER(c->auth);
  if (accept) {
    snprintf(line, sizeof line, "Accept: %s", accept);
    ADD_HEADER(line);
  }
  if (body && body->content_type) {
    snprintf(line, sizeof line, "Content-Type: %s", body->content_type);
    ADD_HEADER(line);
  }
#undef ADD_HEADER
  if (nomem) {
    curl_slist_free_all(headers);
    return kiln_fail(err, KILN_ERR_NOMEM, "out of memory");
  }
  curl_easy_setopt(h, CURLOPT_URL, full);
  curl_easy_setopt(h, CURLOPT_HTTPHEADER, headers);
  curl_easy_setopt(h, CURLOPT_USERAGENT, "kiln/" "package");
  curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
  curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT, 15L);
  curl_easy_setopt(h, CURLOPT_LOW_SPEED_LIMIT, 1L);
  curl_easy_setopt(h, CURLOPT_LOW_SPEED_TIME, 60L);
  curl_easy_setopt(h, CURLOPT_ERRORBUFFER, c->curl_error);
  curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, on_body);
  curl_easy_setopt(h, CURLOPT_WRITEDATA, r);
  curl_easy_setopt(h, CURLOPT_HEADERFUNCTION, on_header);
  curl_easy_setopt(h, CURLOPT_HEADERDATA, r);
  if (c->insecure) {
    curl_easy_setopt(h, CURLOPT_SSL_VERIFYPEER, 0L);
    curl_easy_setopt(h, CURLOPT_SSL_VERIFYHOST, 0L);
  }
  if (strcmp(method, "HEAD") == 0) {
    curl_easy_setopt(h, CURLOPT_NOBODY, 1L);
  } else if (strcmp(method, "PUT") == 0 || strcmp(method, "PATCH") == 0) {
    curl_easy_setopt(h, CURLOPT_UPLOAD, 1L);
    curl_easy_setopt(h, CURLOPT_INFILESIZE_LARGE, (curl_off_t)(body ? body->size : 0));
    if (body) {
      curl_easy_setopt(h, CURLOPT_READFUNCTION, body->read);
      curl_easy_setopt(h, CURLOPT_READDATA, body->ctx);
    }
    if (strcmp(method, "PATCH") == 0) curl_easy_setopt(h, CURLOPT_CUSTOMREQUEST, "PATCH");
  } else if (strcmp(method, "POST") == 0) {
    curl_easy_setopt(h, CURLOPT_POST, 1L);
    curl_easy_setopt(h, CURLOPT_POSTFIELDS, "");
    curl_easy_setopt(h, CURLOPT_POSTFIELDSIZE, 0L);
  }
  c->curl_error[0] = '\0';
  CURLcode rc = curl_easy_perform(h);
  curl_slist_free_all(headers);
  if (rc != CURLE_OK)
    return kiln_fail(err, KILN_ERR_IO, "%s %s: %s", method, full, c->curl_error[0] ? c->curl_error : curl_easy_strerror(rc));
  curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &r->status);
  return KILN_OK;
}

void reg_describe(const reg_response *r, char *out, size_t cap) {
  snprintf(out, cap, "HTTP %ld", r->status);
  json_t *doc = json_loadb(r->body, r->body_len, 0, NULL);
  json_t *e0 = json_array_get(json_object_get(doc, "errors"), 0);
  const char *code = json_string_value(json_object_get(e0, "code"));
  const char *msg = json_string_value(json_object_get(e0, "message"));
  if (code || msg) {
    size_t n = strlen(out);
    snprintf(out + n, cap - n, " (%s%s%s)", code ? code : "", code && msg ? ": " : "", msg ? msg : "");
  }
  json_decref(doc);
}

/* A parameter of a challenge: key=value or key="quoted value". */
static bool challenge_param(const char *ch, const char *key, char *out, size_t cap) {
  size_t klen = strlen(key);
  const char *p = strchr(ch, ' '); /* after the scheme */
  while (p && *p) {
    while (*p == ' ' || *p == ',') p++;
    const char *eq = strchr(p, '=');
    if (!eq) return false;
    bool match = (size_t)(eq - p) == klen && strncasecmp(p, key, klen) == 0;
    const char *v = eq + 1, *end;
    if (*v == '"') {
      v++;
      end = strchr(v, '"');
      if (!end) return false;
      p = end + 1;
    } else {
      end = v + strcspn(v, ", ");
      p = end;
    }
    if (match) {
      size_t n = (size_t)(end - v) < cap - 1 ? (size_t)(end - v) : cap - 1;
      memcpy(out, v, n);
      out[n] = '\0';
      return true;
    }
  }
  return false;
}

static kiln_status need_credentials(reg_client *c, const char *challenge, kiln_error *err) {
  return kiln_fail(err, KILN_ERR_INVALID_ARG,
                   "registry %s requires authentication (%s): set KILN_REGISTRY_USER and KILN_REGISTRY_PASSWORD",
                   c->host, challenge);
}

static kiln_status basic_auth(reg_client *c, const char *challenge, kiln_error *err) {
  if (!c->user) return need_credentials(c, challenge, err);
  char plain[1024];
  int n = snprintf(plain, sizeof plain, "%s:%s", c->user, c->password);
  if (n < 0 || (size_t)n >= sizeof plain) return kiln_fail(err, KILN_ERR_INVALID_ARG, "registry credentials too long");
  char b64[1400];
  sodium_bin2base64(b64, sizeof b64, (const unsigned char *)plain, (size_t)n, sodium_base64_VARIANT_ORIGINAL);
  sodium_memzero(plain, sizeof plain);
  snprintf(c->auth, sizeof c->auth, "Authorization: Basic %s", b64);
  sodium_memzero(b64, sizeof b64);
  return KILN_OK;
}

static kiln_status bearer_auth(reg_client *c, const char *challenge, kiln_error *err) {
  char realm[512], service[256] = "", url[2048];
  if (!challenge_param(challenge, "realm", realm, sizeof realm))
    return kiln_fail(err, KILN_ERR_FORMAT, "registry %s: bearer challenge without a realm: %s", c->host, challenge);
  challenge_param(challenge, "service", service, sizeof service);
  char scope[600];
  snprintf(scope, sizeof scope, "repository:%s:pull,push", c->repo);
  char *svc = curl_easy_escape(c->curl, service, 0), *sc = curl_easy_escape(c->curl, scope, 0);
  if (!svc || !sc) {
    curl_free(svc);
    curl_free(sc);
    return kiln_fail(err, KILN_ERR_NOMEM, "out of memory");
  }
  snprintf(url, sizeof url, "%s%sservice=%s&scope=%s", realm, strchr(realm, '?') ? "&" : "?", svc, sc);
  curl_free(svc);
  curl_free(sc);
  /* The token request carries the basic credentials, if any; not the registry's auth. */
  c->auth[0] = '\0';
  if (c->user) {
    kiln_status s = basic_auth(c, challenge, err);
    if (s != KILN_OK) return s;
  }
  reg_response r;
  kiln_status s = reg_request(c, "GET", url, "application/json", NULL, &r, err);
  c->auth[0] = '\0';
  if (s != KILN_OK) return s;
  if (r.status == 401 || r.status == 403) {
    if (!c->user) return need_credentials(c, challenge, err);
    return kiln_fail(err, KILN_ERR_INVALID_ARG, "registry %s: the token server %s refused the credentials of '%s' (HTTP %ld)",
                     c->host, realm, c->user, r.status);
  }
  if (r.status != 200)
    return kiln_fail(err, KILN_ERR_IO, "registry %s: token server %s answered HTTP %ld", c->host, realm, r.status);
  json_t *doc = json_loadb(r.body, r.body_len, 0, NULL);
  const char *token = json_string_value(json_object_get(doc, "token"));
  if (!token) token = json_string_value(json_object_get(doc, "access_token"));
  if (!token || !token[0] || strlen(token) + 32 > sizeof c->auth) {
    json_decref(doc);
    return kiln_fail(err, KILN_ERR_FORMAT, "registry %s: the token server's answer has no usable token", c->host);
  }
  snprintf(c->auth, sizeof c->auth, "Authorization: Bearer %s", token);
  json_decref(doc);
  return KILN_OK;
}

kiln_status reg_login(reg_client *c, kiln_error *err) {
  reg_response r;
  kiln_status s = reg_request(c, "GET", "/v2/", NULL, NULL, &r, err);
  if (s != KILN_OK && c->insecure) {
    /* An insecure registry may speak plain HTTP only. */
    snprintf(c->base, sizeof c->base, "http://%s", c->host);
    s = reg_request(c, "GET", "/v2/", NULL, NULL, &r, err);
  }
  if (s != KILN_OK) {
    kiln_error_prefix(err, "registry %s unreachable%s", c->host,
                      c->insecure ? "" : " (a registry speaking plain HTTP needs the insecure option)");
    return s;
  }
  if (r.status == 200) return KILN_OK;
  if (r.status != 401)
    return kiln_fail(err, KILN_ERR_IO, "registry %s: GET /v2/ answered HTTP %ld: not an OCI registry?", c->host, r.status);
  char challenge[sizeof r.challenge];
  memcpy(challenge, r.challenge, sizeof challenge);
  if (strncasecmp(challenge, "Basic", 5) == 0) {
    if ((s = basic_auth(c, challenge, err)) != KILN_OK) return s;
    if ((s = reg_request(c, "GET", "/v2/", NULL, NULL, &r, err)) != KILN_OK) return s;
    if (r.status == 401)
      return kiln_fail(err, KILN_ERR_INVALID_ARG, "registry %s refused the credentials of '%s' (HTTP 401)", c->host, c->user);
    if (r.status != 200) return kiln_fail(err, KILN_ERR_IO, "registry %s: GET /v2/ answered HTTP %ld", c->host, r.status);
    return KILN_OK;
  }
  if (strncasecmp(challenge, "Bearer", 6) == 0) return bearer_auth(c, challenge, err);
  return kiln_fail(err, KILN_ERR_UNSUPPORTED, "registry %s: unsupported authentication challenge '%s'", c->host,
                   challenge[0] ? challenge : "(none)");
}
