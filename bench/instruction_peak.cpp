// instruction_peak: how many of each matmul instruction this CPU retires per second, on one
// core and on all of them at once: the ceiling under every GEMM figure in BENCHMARKS.md.
// Each loop keeps 24 independent accumulators in flight (12 with AVX2's 16 registers): more
// than latency x issue width needs on the x86 cores we know of (6 cycles x 2 a cycle: 12).
// Written in assembly, so that no compiler choice sits between the count and the instruction.
//
//   vitbatch_instruction_peak [--seconds S] [--json]
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <thread>
#include <vector>

namespace {

using Clock = std::chrono::steady_clock;

// One multiply-add of OP into accumulator register N, from operands A and B of kind R.
#define VB_ONE(OP, R, A, B, N) OP " %%" R B ", %%" R A ", %%" R #N "\n\t"
#define VB_12(OP, R, A, B, N0, N1, N2, N3, N4, N5, N6, N7, N8, N9, N10, N11)                              \
  VB_ONE(OP, R, A, B, N0) VB_ONE(OP, R, A, B, N1) VB_ONE(OP, R, A, B, N2) VB_ONE(OP, R, A, B, N3)       \
  VB_ONE(OP, R, A, B, N4) VB_ONE(OP, R, A, B, N5) VB_ONE(OP, R, A, B, N6) VB_ONE(OP, R, A, B, N7)       \
  VB_ONE(OP, R, A, B, N8) VB_ONE(OP, R, A, B, N9) VB_ONE(OP, R, A, B, N10) VB_ONE(OP, R, A, B, N11)

// AVX-512: 24 accumulators zmm0-zmm23, operands zmm30 and zmm31.
#define VB_ZMM_LOOP(OP)                                                 \
  "vpxord %%zmm30, %%zmm30, %%zmm30\n\tvpxord %%zmm31, %%zmm31, %%zmm31\n\t1:\n\t" \
  VB_12(OP, "zmm", "30", "31", 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11)    \
  VB_12(OP, "zmm", "30", "31", 12, 13, 14, 15, 16, 17, 18, 19, 20, 21, 22, 23) "dec %0\n\tjnz 1b\n\t"
#define VB_CLOBBER_ZMM                                                                                         \
  "xmm0", "xmm1", "xmm2", "xmm3", "xmm4", "xmm5", "xmm6", "xmm7", "xmm8", "xmm9", "xmm10", "xmm11", "xmm12",  \
      "xmm13", "xmm14", "xmm15", "xmm16", "xmm17", "xmm18", "xmm19", "xmm20", "xmm21", "xmm22", "xmm23",       \
      "xmm30", "xmm31", "cc"

// Each runs `iterations` x 24 instructions.
__attribute__((target("avx512f"))) void fma_zmm(long iterations) {
  __asm__ volatile(VB_ZMM_LOOP("vfmadd231ps") : "+r"(iterations)::VB_CLOBBER_ZMM);
}
// AVX2 has 16 registers: 12 accumulators (ymm0-ymm11) twice, operands ymm14 and ymm15.
__attribute__((target("avx2,fma"))) void fma_ymm(long iterations) {
  __asm__ volatile("vpxor %%ymm14, %%ymm14, %%ymm14\n\tvpxor %%ymm15, %%ymm15, %%ymm15\n\t1:\n\t"
                   VB_12("vfmadd231ps", "ymm", "14", "15", 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11)
                   VB_12("vfmadd231ps", "ymm", "14", "15", 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11)
                   "dec %0\n\tjnz 1b\n\t"
                   : "+r"(iterations)::"xmm0", "xmm1", "xmm2", "xmm3", "xmm4", "xmm5", "xmm6", "xmm7", "xmm8", "xmm9",
                     "xmm10", "xmm11", "xmm14", "xmm15", "cc");
}
__attribute__((target("avx512f,avx512bf16"))) void dpbf16_zmm(long iterations) {
  __asm__ volatile(VB_ZMM_LOOP("vdpbf16ps") : "+r"(iterations)::VB_CLOBBER_ZMM);
}
__attribute__((target("avx512f,avx512vnni"))) void dpbusd_zmm(long iterations) {
  __asm__ volatile(VB_ZMM_LOOP("vpdpbusd") : "+r"(iterations)::VB_CLOBBER_ZMM);
}

struct Instruction {
  const char* precision;  // what vitbatch runs on it
  const char* name;
  int flop;               // floating-point (or integer) operations per instruction: 2 per multiply-add
  bool available;
  void (*loop)(long);
};

std::vector<Instruction> instructions() {
  __builtin_cpu_init();
  const bool avx512 = __builtin_cpu_supports("avx512f");
  return {
      {"fp32", "vfmadd231ps zmm", 32, avx512, fma_zmm},
      {"fp32", "vfmadd231ps ymm", 16, __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma"), fma_ymm},
      {"bf16", "vdpbf16ps zmm", 64, avx512 && __builtin_cpu_supports("avx512bf16"), dpbf16_zmm},
      {"int8", "vpdpbusd zmm", 128, avx512 && __builtin_cpu_supports("avx512vnni"), dpbusd_zmm},
  };
}

// Instructions a second on one thread: the best of `rounds` runs of about `seconds` each.
double rate(void (*loop)(long), double seconds, int rounds) {
  long iterations = 1 << 16;
  for (;;) {  // calibrate to a tenth of the time asked
    const auto t = Clock::now();
    loop(iterations);
    if (std::chrono::duration<double>(Clock::now() - t).count() > seconds / 10 || iterations > (1L << 40)) break;
    iterations *= 2;
  }
  iterations *= 10;
  double best = 0;
  for (int r = 0; r < rounds; ++r) {
    const auto t = Clock::now();
    loop(iterations);
    best = std::max(best, 24.0 * iterations / std::chrono::duration<double>(Clock::now() - t).count());
  }
  return best;
}

}  // namespace

int main(int argc, char** argv) {
  double seconds = 0.3;
  bool json = false;
  for (int i = 1; i < argc; ++i) {
    if (!std::strcmp(argv[i], "--json")) {
      json = true;
    } else if (!std::strcmp(argv[i], "--seconds") && i + 1 < argc) {
      char* end = nullptr;
      seconds = std::strtod(argv[++i], &end);
      if (*end || !(seconds > 0 && seconds <= 60)) {
        std::fprintf(stderr, "vitbatch_instruction_peak: --seconds wants a number in (0, 60], not '%s'\n", argv[i]);
        return 2;
      }
    } else {
      std::fprintf(stderr, "usage: vitbatch_instruction_peak [--seconds S] [--json]\n");
      return 2;
    }
  }
  const unsigned cores = std::max(1u, std::thread::hardware_concurrency());
  if (json) std::printf("{\"cores\":%u,\"instructions\":[", cores);
  else std::printf("%-6s %-18s %14s %14s %18s\n", "", "instruction", "G/s one core", "GFLOP/s one", "GFLOP/s all cores");
  bool first = true;
  for (const Instruction& ins : instructions()) {
    double one = 0, all = 0;
    if (ins.available) {
      one = rate(ins.loop, seconds, 3);
      std::vector<double> each(cores);
      std::vector<std::thread> threads;
      for (unsigned c = 0; c < cores; ++c) threads.emplace_back([&, c] { each[c] = rate(ins.loop, seconds, 2); });
      for (auto& t : threads) t.join();
      for (double r : each) all += r;
    }
    if (json) {
      std::printf("%s{\"precision\":\"%s\",\"instruction\":\"%s\",\"available\":%s", first ? "" : ",", ins.precision,
                  ins.name, ins.available ? "true" : "false");
      if (ins.available)
        std::printf(",\"per_second_one_core\":%.4g,\"gflops_one_core\":%.1f,\"gflops_all_cores\":%.1f", one,
                    one * ins.flop / 1e9, all * ins.flop / 1e9);
      std::printf("}");
    } else if (ins.available) {
      std::printf("%-6s %-18s %14.2f %14.1f %18.1f\n", ins.precision, ins.name, one / 1e9, one * ins.flop / 1e9,
                  all * ins.flop / 1e9);
    } else {
      std::printf("%-6s %-18s %14s\n", ins.precision, ins.name, "not on this CPU");
    }
    first = false;
  }
  if (json) std::printf("]}\n");
  return 0;
}
