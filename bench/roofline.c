/*
 * bench/roofline.c: this CPU's peak multiply-accumulate rate for the
 * instructions kiln's kernels are built from, per thread count.
 *
 *   cc -O2 -pthread bench/roofline.c -o roofline && ./roofline [SECONDS] [1,2]
 *
 * Each kernel runs ACC independent accumulator chains of one instruction
 * (enough to cover its latency) on register operands, so it measures issue
 * throughput with no memory traffic: the ceiling a compute-bound kernel can
 * reach. MACs per instruction: vpdpbusd zmm 64 (u8 x s8, 4 per int32 lane),
 * vpdpbusd ymm 32, vpmaddwd + vpaddd ymm 16 (s16 x s16 pairs, the AVX2 int8
 * path after sign extension), zmm 32; vfmadd231ps zmm 16, ymm 8 (float).
 * Every kernel runs on each thread count asked (default 1 and all online
 * CPUs), that many threads at once (pinned to nothing; the OS spreads
 * them), best of 5 runs. Kernels whose ISA this CPU lacks are skipped.
 * Prints one JSON object: {"cpus": N, "kernels": [{name, dtype,
 * macs_per_instruction, threads, gmacs}]}. Not a test.
 */
#include <cpuid.h>
#include <immintrin.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

#define ACC 12
#define ROUNDS 5
#define MAX_THREADS 64

typedef uint64_t (*kernel_fn)(uint64_t iters);

static volatile int32_t g_sink;

/* The loop bodies are inline assembly so that every compiler runs exactly
 * ACC independent chains of the instruction measured, each accumulator in
 * its own register, nothing hoisted or copied. Accumulators are named
 * variables; their sum goes to g_sink so no chain is dead. */
#define ACC_DECL(type, init) type x0 = init(0), x1 = init(1), x2 = init(2), x3 = init(3), x4 = init(4), \
  x5 = init(5), x6 = init(6), x7 = init(7), x8 = init(8), x9 = init(9), x10 = init(10), x11 = init(11)
#define ACC_OUT(c) [x0] c(x0), [x1] c(x1), [x2] c(x2), [x3] c(x3), [x4] c(x4), [x5] c(x5), [x6] c(x6), \
  [x7] c(x7), [x8] c(x8), [x9] c(x9), [x10] c(x10), [x11] c(x11)
#define ACC_ASM(step) step("0") step("1") step("2") step("3") step("4") step("5") step("6") step("7") \
  step("8") step("9") step("10") step("11")
#define ACC_SUM(add) add(add(add(add(x0, x1), add(x2, x3)), add(add(x4, x5), add(x6, x7))), \
                         add(add(x8, x9), add(x10, x11)))
#define RW_V "+v"
#define RW_X "+x"

/* acc += sum of 4 u8 x s8 products per int32 lane (AT&T order: b, a, acc). */
#define DPBUSD(k) "vpdpbusd %[b], %[a], %[x" k "]\n\t"
#define DPBUSD_VEX(k) "%{vex%} vpdpbusd %[b], %[a], %[x" k "]\n\t"
/* t = pairwise s16 x s16 products summed to int32; acc += t. */
#define MADDWD(k) "vpmaddwd %[b], %[a], %[t]\n\tvpaddd %[t], %[x" k "], %[x" k "]\n\t"
#define FMA(k) "vfmadd231ps %[b], %[a], %[x" k "]\n\t"

__attribute__((target("avx512f,avx512bw,avx512vnni"))) static uint64_t dpbusd_zmm(uint64_t iters) {
  const __m512i a = _mm512_set1_epi8(3), b = _mm512_set1_epi8(-2);
  ACC_DECL(__m512i, _mm512_set1_epi32);
  for (uint64_t i = 0; i < iters; i++) __asm__ volatile(ACC_ASM(DPBUSD) : ACC_OUT(RW_V) : [a] "v"(a), [b] "v"(b));
  g_sink = _mm512_reduce_add_epi32(ACC_SUM(_mm512_add_epi32));
  return iters * ACC * 64;
}

__attribute__((target("avx2,avxvnni"))) static uint64_t dpbusd_ymm(uint64_t iters) {
  const __m256i a = _mm256_set1_epi8(3), b = _mm256_set1_epi8(-2);
  ACC_DECL(__m256i, _mm256_set1_epi32);
  for (uint64_t i = 0; i < iters; i++) __asm__ volatile(ACC_ASM(DPBUSD_VEX) : ACC_OUT(RW_X) : [a] "x"(a), [b] "x"(b));
  g_sink = _mm256_extract_epi32(ACC_SUM(_mm256_add_epi32), 0);
  return iters * ACC * 32;
}

/* Twelve accumulators, a, b and the product: 15 of AVX2's 16 registers. */
__attribute__((target("avx2"))) static uint64_t maddwd_ymm(uint64_t iters) {
  const __m256i a = _mm256_set1_epi16(3), b = _mm256_set1_epi16(-2);
  __m256i t;
  ACC_DECL(__m256i, _mm256_set1_epi32);
  for (uint64_t i = 0; i < iters; i++)
    __asm__ volatile(ACC_ASM(MADDWD) : ACC_OUT(RW_X), [t] "=&x"(t) : [a] "x"(a), [b] "x"(b));
  g_sink = _mm256_extract_epi32(ACC_SUM(_mm256_add_epi32), 0);
  return iters * ACC * 16;
}

__attribute__((target("avx512f,avx512bw"))) static uint64_t maddwd_zmm(uint64_t iters) {
  const __m512i a = _mm512_set1_epi16(3), b = _mm512_set1_epi16(-2);
  __m512i t;
  ACC_DECL(__m512i, _mm512_set1_epi32);
  for (uint64_t i = 0; i < iters; i++)
    __asm__ volatile(ACC_ASM(MADDWD) : ACC_OUT(RW_V), [t] "=&v"(t) : [a] "v"(a), [b] "v"(b));
  g_sink = _mm512_reduce_add_epi32(ACC_SUM(_mm512_add_epi32));
  return iters * ACC * 32;
}

__attribute__((target("avx512f"))) static uint64_t fma_zmm(uint64_t iters) {
  const __m512 a = _mm512_set1_ps(0.999f), b = _mm512_set1_ps(1e-7f);
  ACC_DECL(__m512, _mm512_set1_ps);
  for (uint64_t i = 0; i < iters; i++) __asm__ volatile(ACC_ASM(FMA) : ACC_OUT(RW_V) : [a] "v"(a), [b] "v"(b));
  g_sink = (int32_t)_mm512_reduce_add_ps(ACC_SUM(_mm512_add_ps));
  return iters * ACC * 16;
}

__attribute__((target("avx2,fma"))) static uint64_t fma_ymm(uint64_t iters) {
  const __m256 a = _mm256_set1_ps(0.999f), b = _mm256_set1_ps(1e-7f);
  ACC_DECL(__m256, _mm256_set1_ps);
  for (uint64_t i = 0; i < iters; i++) __asm__ volatile(ACC_ASM(FMA) : ACC_OUT(RW_X) : [a] "x"(a), [b] "x"(b));
  g_sink = (int32_t)_mm256_cvtss_f32(ACC_SUM(_mm256_add_ps));
  return iters * ACC * 8;
}

typedef struct kernel {
  const char *name, *dtype;
  int macs_per_instruction;
  kernel_fn fn;
  int supported;
} kernel;

typedef struct job {
  kernel_fn fn;
  uint64_t iters;
} job;

static void *run_job(void *arg) {
  job *j = arg;
  j->fn(j->iters);
  return NULL;
}

static double now_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* MACs per second of fn on n_threads threads at once, best of ROUNDS runs
 * of about `seconds` each. */
static double rate(kernel_fn fn, int n_threads, double seconds) {
  uint64_t iters = 1000;
  double t0 = now_s();
  fn(iters);
  double dt = now_s() - t0;
  while (dt < 0.01) { /* calibrate the loop count to the time asked */
    iters *= 4;
    t0 = now_s();
    fn(iters);
    dt = now_s() - t0;
  }
  iters = (uint64_t)((double)iters * seconds / dt) + 1;
  double best = 0;
  pthread_t tid[MAX_THREADS];
  job jobs[MAX_THREADS];
  for (int r = 0; r < ROUNDS; r++) {
    for (int t = 0; t < n_threads; t++) jobs[t] = (job){fn, iters};
    t0 = now_s();
    for (int t = 1; t < n_threads; t++) pthread_create(&tid[t], NULL, run_job, &jobs[t]);
    uint64_t macs = fn(iters);
    for (int t = 1; t < n_threads; t++) pthread_join(tid[t], NULL);
    dt = now_s() - t0;
    double v = (double)macs * n_threads / dt;
    if (v > best) best = v;
  }
  return best;
}

/* AVX-VNNI (CPUID.(7,1):EAX bit 4); clang 14's __builtin_cpu_supports does
 * not know it. The OS must save ymm state, as for AVX2. */
static int has_avxvnni(void) {
  unsigned a, b, c, d;
  if (!__builtin_cpu_supports("avx2") || !__get_cpuid_count(7, 1, &a, &b, &c, &d)) return 0;
  return (a >> 4) & 1;
}

int main(int argc, char **argv) {
  double seconds = argc > 1 ? atof(argv[1]) : 0.2;
  long cpus = sysconf(_SC_NPROCESSORS_ONLN);
  int counts[MAX_THREADS], n_counts = 0;
  if (argc > 2) {
    for (char *s = argv[2], *end; *s; s = *end ? end + 1 : end) {
      long v = strtol(s, &end, 10);
      if (end == s || (*end && *end != ',') || v < 1 || v > MAX_THREADS || n_counts == MAX_THREADS) {
        n_counts = 0;
        break;
      }
      counts[n_counts++] = (int)v;
    }
  } else {
    counts[n_counts++] = 1;
    if (cpus > 1) counts[n_counts++] = cpus < MAX_THREADS ? (int)cpus : MAX_THREADS;
  }
  if (!(seconds > 0) || seconds > 10 || argc > 3 || n_counts == 0) {
    fprintf(stderr, "usage: roofline [SECONDS per run, default 0.2] [THREADS,THREADS..., default 1,all]\n");
    return 2;
  }
  __builtin_cpu_init();
  const int avx512 = __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw");
  kernel kernels[] = {
      {"vpdpbusd_zmm", "int8", 64, dpbusd_zmm, avx512 && __builtin_cpu_supports("avx512vnni")},
      {"vpdpbusd_ymm", "int8", 32, dpbusd_ymm, has_avxvnni()},
      {"vpmaddwd_vpaddd_ymm", "int8", 16, maddwd_ymm, __builtin_cpu_supports("avx2")},
      {"vpmaddwd_vpaddd_zmm", "int8", 32, maddwd_zmm, avx512},
      {"vfmadd231ps_zmm", "float32", 16, fma_zmm, avx512},
      {"vfmadd231ps_ymm", "float32", 8, fma_ymm, __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")},
  };
  printf("{\"cpus\": %ld, \"kernels\": [", cpus);
  int first = 1;
  for (size_t k = 0; k < sizeof kernels / sizeof kernels[0]; k++) {
    if (!kernels[k].supported) continue;
    for (int c = 0; c < n_counts; c++) {
      printf("%s\n  {\"name\": \"%s\", \"dtype\": \"%s\", \"macs_per_instruction\": %d, \"threads\": %d, "
             "\"gmacs\": %.2f}",
             first ? "" : ",", kernels[k].name, kernels[k].dtype, kernels[k].macs_per_instruction, counts[c],
             rate(kernels[k].fn, counts[c], seconds) * 1e-9);
      fflush(stdout);
      first = 0;
    }
  }
  printf("\n]}\n");
  return 0;
}
