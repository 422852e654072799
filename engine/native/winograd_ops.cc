// The tile transforms of Winograd's F(2x2, 3x3) as TensorFlow CPU ops: bfloat16 in and out,
// float32 inside, one pass over memory each. With them a 3x3 'SAME' convolution of [H, W, C] is
//   Y = ReLU(conv(X) + bias) = WinogradOutput(BatchMatMul(WinogradInput(X), U), bias, [H, W])
// (U: [16, C, K] transformed filters; bias and ReLU fused, as oneDNN fuses them into its direct
// convolutions) and its gradient to X is
//   dX = WinogradInputAdjoint(BatchMatMul(WinogradOutputAdjoint(dY, Y), U^T), [H, W]):
// 2.25x fewer multiplications than the direct convolution, done by TensorFlow's own batched
// matrix products (engine/winograd.py builds, loads and uses them; docs/ARCHITECTURE.md,
// "Winograd convolutions"). Compiled on first use with the flags TensorFlow reports.

#include <cstdint>
#include <cstring>

#include "tensorflow/core/framework/op.h"
#include "tensorflow/core/framework/op_kernel.h"
#include "tensorflow/core/framework/shape_inference.h"
#include "tensorflow/core/util/work_sharder.h"

using namespace tensorflow;

namespace {

inline float load(const uint16_t* p) {
  uint32_t bits = static_cast<uint32_t>(*p) << 16;
  float f;
  std::memcpy(&f, &bits, 4);
  return f;
}

inline uint16_t store(float f) {  // round to nearest even
  uint32_t bits;
  std::memcpy(&bits, &f, 4);
  bits += 0x7FFF + ((bits >> 16) & 1);
  return static_cast<uint16_t>(bits >> 16);
}

inline uint16_t Relu(float f) { return f > 0.f ? store(f) : 0; }

// B^T of F(2, 3), the input transform (WinogradInput spells it out; its adjoint looks it up).
constexpr float BT[4][4] = {{1, 0, -1, 0}, {0, 1, 1, 0}, {0, -1, 1, 0}, {0, 1, 0, -1}};

constexpr int kChunk = 64;  // channels per inner block (vectorised loops)

// Runs body(first, last) over [0, rows) on TensorFlow's intra-op threads, so the engine's
// thread setting (STYLEBOT_ENGINE_THREADS) holds for these ops too; cost: rough cycles per row.
template <typename Body>
void ForRows(OpKernelContext* ctx, int64_t rows, int64_t cost, Body body) {
  const auto* threads = ctx->device()->tensorflow_cpu_worker_threads();
  Shard(threads->num_threads, threads->workers, rows, cost, [&body](int64_t first, int64_t last) {
    body(static_cast<int>(first), static_cast<int>(last));
  });
}

}  // namespace

REGISTER_OP("WinogradInput")
    .Input("x: bfloat16")  // [H, W, C]
    .Output("v: bfloat16")  // [16, tiles, C]
    .SetShapeFn([](shape_inference::InferenceContext* c) {
      c->set_output(0, c->UnknownShapeOfRank(3));
      return OkStatus();
    });

REGISTER_OP("WinogradOutput")
    .Input("m: bfloat16")    // [16, tiles, K]
    .Input("bias: float")    // [K]
    .Input("size: int32")    // [H, W]
    .Output("y: bfloat16")  // [H, W, K]
    .SetShapeFn([](shape_inference::InferenceContext* c) {
      c->set_output(0, c->UnknownShapeOfRank(3));
      return OkStatus();
    });

REGISTER_OP("WinogradOutputAdjoint")
    .Input("dy: bfloat16")  // [H, W, K]
    .Input("y: bfloat16")   // [H, W, K], the forward output: the ReLU's mask
    .Output("dm: bfloat16")  // [16, tiles, K]
    .SetShapeFn([](shape_inference::InferenceContext* c) {
      c->set_output(0, c->UnknownShapeOfRank(3));
      return OkStatus();
    });

REGISTER_OP("WinogradInputAdjoint")
    .Input("dv: bfloat16")  // [16, tiles, C]
    .Input("size: int32")    // [H, W]
    .Output("dx: bfloat16")  // [H, W, C]
    .SetShapeFn([](shape_inference::InferenceContext* c) {
      c->set_output(0, c->UnknownShapeOfRank(3));
      return OkStatus();
    });

class WinogradInputOp : public OpKernel {
 public:
  explicit WinogradInputOp(OpKernelConstruction* c) : OpKernel(c) {}
  void Compute(OpKernelContext* ctx) override {
    const Tensor& x = ctx->input(0);
    const int H = x.dim_size(0), W = x.dim_size(1), C = x.dim_size(2);
    const int th = (H + 1) / 2, tw = (W + 1) / 2, tiles = th * tw;
    Tensor* v = nullptr;
    OP_REQUIRES_OK(ctx, ctx->allocate_output(0, TensorShape({16, tiles, C}), &v));
    const uint16_t* in = reinterpret_cast<const uint16_t*>(x.flat<bfloat16>().data());
    uint16_t* out = reinterpret_cast<uint16_t*>(v->flat<bfloat16>().data());
    const int64_t plane = static_cast<int64_t>(tiles) * C;
    ForRows(ctx, th, static_cast<int64_t>(tw) * C * 64, [&](int first, int last) {
    for (int ti = first; ti < last; ++ti) {
      float d[4][4][kChunk], t[4][4][kChunk];
      for (int tj = 0; tj < tw; ++tj) {
        const int64_t tile = static_cast<int64_t>(ti) * tw + tj;
        for (int c0 = 0; c0 < C; c0 += kChunk) {
          const int n = C - c0 < kChunk ? C - c0 : kChunk;
          for (int r = 0; r < 4; ++r) {
            const int y = 2 * ti - 1 + r;
            for (int s = 0; s < 4; ++s) {
              const int xx = 2 * tj - 1 + s;
              if (y < 0 || y >= H || xx < 0 || xx >= W) {
                for (int k = 0; k < n; ++k) d[r][s][k] = 0.f;
              } else {
                const uint16_t* p = in + (static_cast<int64_t>(y) * W + xx) * C + c0;
                for (int k = 0; k < n; ++k) d[r][s][k] = load(p + k);
              }
            }
          }
          for (int s = 0; s < 4; ++s)
            for (int k = 0; k < n; ++k) {  // t = B^T d (rows)
              t[0][s][k] = d[0][s][k] - d[2][s][k];
              t[1][s][k] = d[1][s][k] + d[2][s][k];
              t[2][s][k] = d[2][s][k] - d[1][s][k];
              t[3][s][k] = d[1][s][k] - d[3][s][k];
            }
          for (int r = 0; r < 4; ++r) {
            uint16_t* o0 = out + (r * 4 + 0) * plane + tile * C + c0;
            uint16_t* o1 = out + (r * 4 + 1) * plane + tile * C + c0;
            uint16_t* o2 = out + (r * 4 + 2) * plane + tile * C + c0;
            uint16_t* o3 = out + (r * 4 + 3) * plane + tile * C + c0;
            for (int k = 0; k < n; ++k) {  // v = t B (columns)
              o0[k] = store(t[r][0][k] - t[r][2][k]);
              o1[k] = store(t[r][1][k] + t[r][2][k]);
              o2[k] = store(t[r][2][k] - t[r][1][k]);
              o3[k] = store(t[r][1][k] - t[r][3][k]);
            }
          }
        }
      }
    }
    });
  }
};

class WinogradOutputOp : public OpKernel {
 public:
  explicit WinogradOutputOp(OpKernelConstruction* c) : OpKernel(c) {}
  void Compute(OpKernelContext* ctx) override {
    const Tensor& m = ctx->input(0);
    const float* bias = ctx->input(1).flat<float>().data();
    const auto size = ctx->input(2).flat<int32>();
    const int H = size(0), W = size(1), K = m.dim_size(2);
    const int th = (H + 1) / 2, tw = (W + 1) / 2;
    Tensor* y = nullptr;
    OP_REQUIRES_OK(ctx, ctx->allocate_output(0, TensorShape({H, W, K}), &y));
    const uint16_t* in = reinterpret_cast<const uint16_t*>(m.flat<bfloat16>().data());
    uint16_t* out = reinterpret_cast<uint16_t*>(y->flat<bfloat16>().data());
    const int64_t plane = static_cast<int64_t>(th) * tw * K;
    ForRows(ctx, th, static_cast<int64_t>(tw) * K * 64, [&](int first, int last) {
    for (int ti = first; ti < last; ++ti) {
      float s[2][4][kChunk];
      for (int tj = 0; tj < tw; ++tj) {
        const int64_t tile = static_cast<int64_t>(ti) * tw + tj;
        for (int c0 = 0; c0 < K; c0 += kChunk) {
          const int n = K - c0 < kChunk ? K - c0 : kChunk;
          for (int b = 0; b < 4; ++b) {
            const uint16_t* m0 = in + (0 * 4 + b) * plane + tile * K + c0;
            const uint16_t* m1 = in + (1 * 4 + b) * plane + tile * K + c0;
            const uint16_t* m2 = in + (2 * 4 + b) * plane + tile * K + c0;
            const uint16_t* m3 = in + (3 * 4 + b) * plane + tile * K + c0;
            for (int k = 0; k < n; ++k) {  // s = A^T m (rows)
              const float a1 = load(m1 + k), a2 = load(m2 + k);
              s[0][b][k] = load(m0 + k) + a1 + a2;
              s[1][b][k] = a1 - a2 - load(m3 + k);
            }
          }
          for (int r = 0; r < 2; ++r) {
            const int yy = 2 * ti + r;
            if (yy >= H) continue;
            for (int q = 0; q < 2; ++q) {
              const int xx = 2 * tj + q;
              if (xx >= W) continue;
              uint16_t* o = out + (static_cast<int64_t>(yy) * W + xx) * K + c0;
              const float* b = bias + c0;
              if (q == 0)
                for (int k = 0; k < n; ++k) o[k] = Relu(s[r][0][k] + s[r][1][k] + s[r][2][k] + b[k]);
              else
                for (int k = 0; k < n; ++k) o[k] = Relu(s[r][1][k] - s[r][2][k] - s[r][3][k] + b[k]);
            }
          }
        }
      }
    }
    });
  }
};

class WinogradOutputAdjointOp : public OpKernel {
 public:
  explicit WinogradOutputAdjointOp(OpKernelConstruction* c) : OpKernel(c) {}
  void Compute(OpKernelContext* ctx) override {
    const Tensor& dy = ctx->input(0);
    const int H = dy.dim_size(0), W = dy.dim_size(1), K = dy.dim_size(2);
    const int th = (H + 1) / 2, tw = (W + 1) / 2, tiles = th * tw;
    Tensor* dm = nullptr;
    OP_REQUIRES_OK(ctx, ctx->allocate_output(0, TensorShape({16, tiles, K}), &dm));
    const uint16_t* in = reinterpret_cast<const uint16_t*>(dy.flat<bfloat16>().data());
    const uint16_t* mask = reinterpret_cast<const uint16_t*>(ctx->input(1).flat<bfloat16>().data());
    uint16_t* out = reinterpret_cast<uint16_t*>(dm->flat<bfloat16>().data());
    const int64_t plane = static_cast<int64_t>(tiles) * K;
    ForRows(ctx, th, static_cast<int64_t>(tw) * K * 64, [&](int first, int last) {
    for (int ti = first; ti < last; ++ti) {
      float g[2][2][kChunk], t[4][2][kChunk];
      for (int tj = 0; tj < tw; ++tj) {
        const int64_t tile = static_cast<int64_t>(ti) * tw + tj;
        for (int c0 = 0; c0 < K; c0 += kChunk) {
          const int n = K - c0 < kChunk ? K - c0 : kChunk;
          for (int r = 0; r < 2; ++r)
            for (int q = 0; q < 2; ++q) {
              const int yy = 2 * ti + r, xx = 2 * tj + q;
              if (yy >= H || xx >= W) {
                for (int k = 0; k < n; ++k) g[r][q][k] = 0.f;
              } else {
                const int64_t at = (static_cast<int64_t>(yy) * W + xx) * K + c0;
                // The ReLU's gradient: nothing flows back where the output was clipped to 0
                // (bit arithmetic rather than a branch, so that the loop vectorises).
                for (int k = 0; k < n; ++k) {
                  const uint32_t keep = mask[at + k] != 0 ? 0xFFFFu : 0u;
                  const uint16_t bits = static_cast<uint16_t>(in[at + k] & keep);
                  g[r][q][k] = load(&bits);
                }
              }
            }
          for (int q = 0; q < 2; ++q)
            for (int k = 0; k < n; ++k) {  // t = A g (rows), A = (A^T)^T
              t[0][q][k] = g[0][q][k];
              t[1][q][k] = g[0][q][k] + g[1][q][k];
              t[2][q][k] = g[0][q][k] - g[1][q][k];
              t[3][q][k] = -g[1][q][k];
            }
          for (int a = 0; a < 4; ++a) {
            uint16_t* o0 = out + (a * 4 + 0) * plane + tile * K + c0;
            uint16_t* o1 = out + (a * 4 + 1) * plane + tile * K + c0;
            uint16_t* o2 = out + (a * 4 + 2) * plane + tile * K + c0;
            uint16_t* o3 = out + (a * 4 + 3) * plane + tile * K + c0;
            for (int k = 0; k < n; ++k) {  // dm = t A^T (columns)
              o0[k] = store(t[a][0][k]);
              o1[k] = store(t[a][0][k] + t[a][1][k]);
              o2[k] = store(t[a][0][k] - t[a][1][k]);
              o3[k] = store(-t[a][1][k]);
            }
          }
        }
      }
    }
    });
  }
};

class WinogradInputAdjointOp : public OpKernel {
 public:
  explicit WinogradInputAdjointOp(OpKernelConstruction* c) : OpKernel(c) {}
  void Compute(OpKernelContext* ctx) override {
    const Tensor& dv = ctx->input(0);
    const auto size = ctx->input(1).flat<int32>();
    const int H = size(0), W = size(1), C = dv.dim_size(2);
    const int th = (H + 1) / 2, tw = (W + 1) / 2;
    Tensor* dx = nullptr;
    OP_REQUIRES_OK(ctx, ctx->allocate_output(0, TensorShape({H, W, C}), &dx));
    const uint16_t* in = reinterpret_cast<const uint16_t*>(dv.flat<bfloat16>().data());
    uint16_t* out = reinterpret_cast<uint16_t*>(dx->flat<bfloat16>().data());
    const int64_t plane = static_cast<int64_t>(th) * tw * C;
    // Windows of neighbouring tiles overlap by two pixels, so each output pixel gathers from
    // the (up to) two tiles per axis that cover it: no scatter, no races, float32 sums.
    // Tile i covers rows 2i-1 .. 2i+2: row y is position r = y + 1 - 2i of tile i.
    ForRows(ctx, H, static_cast<int64_t>(W) * C * 64, [&](int first, int last) {
    for (int yy = first; yy < last; ++yy) {
      float acc[kChunk];
      for (int xx = 0; xx < W; ++xx) {
        for (int c0 = 0; c0 < C; c0 += kChunk) {
          const int n = C - c0 < kChunk ? C - c0 : kChunk;
          for (int k = 0; k < n; ++k) acc[k] = 0.f;
          for (int ti = (yy - 1) / 2; ti <= (yy + 1) / 2; ++ti) {
            const int r = yy + 1 - 2 * ti;
            if (ti < 0 || ti >= th || r < 0 || r > 3) continue;
            for (int tj = (xx - 1) / 2; tj <= (xx + 1) / 2; ++tj) {
              const int s = xx + 1 - 2 * tj;
              if (tj < 0 || tj >= tw || s < 0 || s > 3) continue;
              const int64_t tile = static_cast<int64_t>(ti) * tw + tj;
              // d[r][s] = sum_ab B[r][a] dv[a][b] B[s][b]; B[r][a] = B^T[a][r].
              for (int a = 0; a < 4; ++a) {
                const float ca = BT[a][r];
                if (ca == 0.f) continue;
                for (int b = 0; b < 4; ++b) {
                  const float cb = ca * BT[b][s];
                  if (cb == 0.f) continue;
                  const uint16_t* p = in + (a * 4 + b) * plane + tile * C + c0;
                  for (int k = 0; k < n; ++k) acc[k] += cb * load(p + k);
                }
              }
            }
          }
          uint16_t* o = out + (static_cast<int64_t>(yy) * W + xx) * C + c0;
          for (int k = 0; k < n; ++k) o[k] = store(acc[k]);
        }
      }
    }
    });
  }
};

REGISTER_KERNEL_BUILDER(Name("WinogradInput").Device(DEVICE_CPU), WinogradInputOp);
REGISTER_KERNEL_BUILDER(Name("WinogradOutput").Device(DEVICE_CPU).HostMemory("size"),
                        WinogradOutputOp);
REGISTER_KERNEL_BUILDER(Name("WinogradOutputAdjoint").Device(DEVICE_CPU), WinogradOutputAdjointOp);
REGISTER_KERNEL_BUILDER(Name("WinogradInputAdjoint").Device(DEVICE_CPU).HostMemory("size"), WinogradInputAdjointOp);
