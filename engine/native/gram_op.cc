// The style loss's Gram matrix G = F^T F / N of bfloat16 features F [N, C] in float32, by the
// CPU's bfloat16 dot products (AVX512-BF16: 32 products per instruction, summed in float32).
// TensorFlow's bfloat16 matrix product would round G to bfloat16, which measured 0.5 % worse
// in the loss (each entry sums N products, and the loss takes differences of such sums); its
// float32 product runs at half the rate after a cast and a transpose of F. This op reads F
// once, computes only the upper triangle (G is symmetric) and keeps every sum in float32: the
// same values as the float32 product up to the order of the additions (engine/winograd.py
// builds it with the Winograd ops; engine/losses.py uses it; docs/ARCHITECTURE.md, "Engine
// choices"). Only built where the compiler targets AVX512-BF16; C must be a multiple of 64.

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <mutex>
#include <vector>

#include "tensorflow/core/framework/op.h"
#include "tensorflow/core/framework/op_kernel.h"
#include "tensorflow/core/framework/shape_inference.h"
#include "tensorflow/core/util/work_sharder.h"

#ifdef __AVX512BF16__
#include <immintrin.h>

using namespace tensorflow;

REGISTER_OP("GramBf16")
    .Input("f: bfloat16")  // [N, C], C a multiple of 64
    .Output("g: float")    // [C, C] = F^T F / N
    .SetShapeFn([](shape_inference::InferenceContext* c) {
      c->set_output(0, c->UnknownShapeOfRank(2));
      return OkStatus();
    });

namespace {

constexpr int kRows = 4;      // rows of G per register block
constexpr int kColumns = 64;  // columns of G per register block: 4 vectors of 16 floats

// Adds the upper-triangle blocks of P^T P to g (C x C, row-major), P holding `pairs` rows of C
// bfloat16 pairs: P[m][c] = (F[2m][c], F[2m+1][c]), the layout vdpbf16ps multiplies.
void AddPairProducts(const uint32_t* P, int64_t pairs, int C, float* g) {
  for (int i0 = 0; i0 < C; i0 += kRows) {
    for (int j0 = i0 / kColumns * kColumns; j0 < C; j0 += kColumns) {
      __m512 acc[kRows][4];
      for (int r = 0; r < kRows; ++r)
        for (int v = 0; v < 4; ++v) acc[r][v] = _mm512_loadu_ps(g + (i0 + r) * C + j0 + 16 * v);
      for (int64_t m = 0; m < pairs; ++m) {
        const uint32_t* row = P + m * C;
        __m512bh b[4];
        for (int v = 0; v < 4; ++v) b[v] = (__m512bh)_mm512_loadu_si512(row + j0 + 16 * v);
        for (int r = 0; r < kRows; ++r) {
          const __m512bh a = (__m512bh)_mm512_set1_epi32(static_cast<int>(row[i0 + r]));
          for (int v = 0; v < 4; ++v) acc[r][v] = _mm512_dpbf16_ps(acc[r][v], a, b[v]);
        }
      }
      for (int r = 0; r < kRows; ++r)
        for (int v = 0; v < 4; ++v) _mm512_storeu_ps(g + (i0 + r) * C + j0 + 16 * v, acc[r][v]);
    }
  }
}

}  // namespace

class GramBf16Op : public OpKernel {
 public:
  explicit GramBf16Op(OpKernelConstruction* c) : OpKernel(c) {}
  void Compute(OpKernelContext* ctx) override {
    const Tensor& f = ctx->input(0);
    const int64_t N = f.dim_size(0);
    const int C = f.dim_size(1);
    OP_REQUIRES(ctx, C % kColumns == 0, errors::InvalidArgument("channels must be a multiple of 64"));
    Tensor* out = nullptr;
    OP_REQUIRES_OK(ctx, ctx->allocate_output(0, TensorShape({C, C}), &out));
    float* g = out->flat<float>().data();
    std::fill(g, g + static_cast<int64_t>(C) * C, 0.f);
    const uint16_t* in = reinterpret_cast<const uint16_t*>(f.flat<bfloat16>().data());
    const int64_t pairs = (N + 1) / 2;
    // Pairs in blocks of ~256 KB, so that a block stays in cache while every row block of G
    // passes over it; each thread sums its blocks into its own G, added to the output at the
    // end.
    const int64_t block = std::max<int64_t>(16, 65536 / C);
    const int64_t blocks = (pairs + block - 1) / block;
    std::mutex mutex;
    const auto* threads = ctx->device()->tensorflow_cpu_worker_threads();
    const int64_t cost = block * C * C;  // multiply-adds per block, upper triangle and then some
    Shard(threads->num_threads, threads->workers, blocks, cost, [&](int64_t first, int64_t last) {
      std::vector<float> local(static_cast<size_t>(C) * C, 0.f);
      std::vector<uint32_t> packed(static_cast<size_t>(block) * C);
      for (int64_t b = first; b < last; ++b) {
        const int64_t m0 = b * block, m1 = std::min(pairs, m0 + block);
        for (int64_t m = m0; m < m1; ++m) {
          const uint16_t* even = in + 2 * m * C;
          uint32_t* dst = packed.data() + (m - m0) * C;
          if (2 * m + 1 < N) {
            const uint16_t* odd = even + C;
            for (int c = 0; c < C; ++c) dst[c] = even[c] | (static_cast<uint32_t>(odd[c]) << 16);
          } else {  // N odd: the last row pairs with zeros
            for (int c = 0; c < C; ++c) dst[c] = even[c];
          }
        }
        AddPairProducts(packed.data(), m1 - m0, C, local.data());
      }
      std::lock_guard<std::mutex> lock(mutex);
      for (int i = 0; i < C; ++i)
        for (int j = i; j < C; ++j) g[i * C + j] += local[i * C + j];
    });
    const float scale = N > 0 ? 1.f / static_cast<float>(N) : 0.f;
    for (int i = 0; i < C; ++i) {
      g[i * C + i] *= scale;
      for (int j = i + 1; j < C; ++j) g[j * C + i] = g[i * C + j] *= scale;
    }
  }
};

REGISTER_KERNEL_BUILDER(Name("GramBf16").Device(DEVICE_CPU), GramBf16Op);

#endif  // __AVX512BF16__
