/* kiln health URL: a container healthcheck probe (the image has no curl):
 * GET URL, exit 0 on a 2xx answer, 1 otherwise, with the reason. */
#include <curl/curl.h>
#include <stdio.h>
#include <string.h>

#include "cli/cli.h"

static const char *help =
    "usage: kiln health [--timeout SECONDS] URL\n\n"
    "GETs URL and exits 0 when the answer is 2xx, 1 otherwise (connection refused,\n"
    "timeout, any other status), printing why. The healthcheck of images made by\n"
    "`kiln package`: kiln health http://127.0.0.1:8500/v2/health/ready\n\n"
    "  --timeout S   give up after S seconds (default 3)\n";

static size_t discard(char *data, size_t size, size_t n, void *ctx) {
  (void)data;
  (void)ctx;
  return size * n;
}

int cmd_health(int argc, char **argv) {
  cli_args c = {argc, argv, 1, "health"};
  const char *url = NULL, *v;
  int64_t timeout = 3;
  bool bad = false;
  while (c.i < argc) {
    if (cli_flag(&c, "--help") || cli_flag(&c, "-h")) {
      fputs(help, stdout);
      return CLI_OK;
    }
    if (cli_flag_value(&c, "--timeout", &v, &bad)) {
      if (!bad && !cli_parse_int("health", "--timeout", v, 1, 3600, &timeout)) return CLI_USAGE;
    } else if (argv[c.i][0] == '-') {
      return cli_usage_error("health", "unknown option '%s'", argv[c.i]);
    } else if (!url) {
      url = argv[c.i++];
    } else {
      return cli_usage_error("health", "unexpected argument '%s'", argv[c.i]);
    }
    if (bad) return CLI_USAGE;
  }
  if (!url) return cli_usage_error("health", "missing URL");
  if (strncmp(url, "http://", 7) != 0 && strncmp(url, "https://", 8) != 0)
    return cli_usage_error("health", "'%s' is not an http:// or https:// URL", url);
  if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
    fprintf(stderr, "kiln health: cannot start libcurl\n");
    return CLI_FAIL;
  }
  CURL *h = curl_easy_init();
  int rc = CLI_FAIL;
  if (!h) {
    fprintf(stderr, "kiln health: cannot start libcurl\n");
  } else {
    char why[CURL_ERROR_SIZE] = "";
    curl_easy_setopt(h, CURLOPT_URL, url);
    curl_easy_setopt(h, CURLOPT_TIMEOUT, (long)timeout);
    curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, discard);
    curl_easy_setopt(h, CURLOPT_ERRORBUFFER, why);
    CURLcode r = curl_easy_perform(h);
    long status = 0;
    curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &status);
    if (r != CURLE_OK) {
      fprintf(stderr, "kiln health: %s: %s\n", url, why[0] ? why : curl_easy_strerror(r));
    } else if (status < 200 || status > 299) {
      fprintf(stderr, "kiln health: %s: HTTP %ld\n", url, status);
    } else {
      printf("ok: %s: HTTP %ld\n", url, status);
      rc = CLI_OK;
    }
    curl_easy_cleanup(h);
  }
  curl_global_cleanup();
  return rc;
}
