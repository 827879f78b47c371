/* The pool's allocations are zeroed, disjoint and aligned as asked, in
 * absolute addresses (prepare memory relies on 64-byte alignment). */
#include <stdbool.h>
#include <string.h>

#include "base/pool.h"
#include "testutil.h"

static void test_alignment_and_zero(void) {
  kiln_pool pool;
  kiln_pool_init(&pool);
  test_rng rng = {3};
  unsigned char *prev = NULL;
  size_t prev_size = 0;
  for (int i = 0; i < 5000; i++) {
    size_t align = (size_t)1 << test_rand_int(&rng, 0, 6);
    size_t size = (size_t)test_rand_int(&rng, 1, i % 100 == 0 ? 100000 : 300);
    unsigned char *p = kiln_pool_alloc(&pool, size, align);
    REQUIRE(p != NULL);
    CHECK(((uintptr_t)p & (align - 1)) == 0);
    bool zero = true;
    for (size_t k = 0; k < size; k++) zero &= p[k] == 0;
    CHECK(zero);
    memset(p, 0xab, size);
    if (prev) CHECK(prev[prev_size - 1] == 0xab); /* not overwritten by zeroing */
    prev = p;
    prev_size = size;
  }
  char *s = kiln_pool_strndup(&pool, "hello world", 5);
  CHECK(s && strcmp(s, "hello") == 0);
  kiln_pool_destroy(&pool);
}

int main(void) {
  RUN(test_alignment_and_zero);
  return test_summary();
}
