// The tile transforms of Winograd's F(m x m, 3 x 3), m = 2 or 3, as TensorFlow CPU ops: bfloat16
// in and out, float32 inside, one pass over memory each. With n = m + 2 (the input tile's side)
// a 3x3 'SAME' convolution of [H, W, C] is
//   Y = ReLU(conv(X) + bias) = WinogradOutput(BatchMatMul(WinogradInput(X), U), bias, [H, W])
// (U: [n*n, C, K] transformed filters; bias and ReLU fused, as oneDNN fuses them into its direct
// convolutions) and its gradient to X is
//   dX = WinogradInputAdjoint(BatchMatMul(WinogradOutputAdjoint(dY, Y), U^T), [H, W]).
// F(2x2, 3x3) takes 16 products per 4 outputs, F(3x3, 3x3) 25 per 9: 2.25x and 3.24x fewer
// multiplications than the direct convolution, done by TensorFlow's own batched matrix products
// (engine/winograd.py builds, loads and uses them; docs/ARCHITECTURE.md, "Winograd
// convolutions"). Every op takes the tile size m as its attribute `tile`. Compiled on first use
// with the flags TensorFlow reports.

#include <cstdint>
#include <algorithm>
#include <cstring>
#include <vector>

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

// The transforms' matrices (Lavin & Gray, 2016; engine/winograd.py holds the matching filter
// transforms G). F(3x3, 3x3) interpolates at 0, 1, -1, -2 and infinity: of the point sets
// tried, the most accurate in bfloat16 (docs/ARCHITECTURE.md, "Winograd convolutions").
template <int M>
struct Tile;

template <>
struct Tile<2> {
  static constexpr int N = 4;
  static constexpr float BT[4][4] = {{1, 0, -1, 0}, {0, 1, 1, 0}, {0, -1, 1, 0}, {0, 1, 0, -1}};
  static constexpr float AT[2][4] = {{1, 1, 1, 0}, {0, 1, -1, -1}};
};

template <>
struct Tile<3> {
  static constexpr int N = 5;
  static constexpr float BT[5][5] = {{-2, -1, 2, 1, 0},
                                     {0, 2, 3, 1, 0},
                                     {0, -2, 1, 1, 0},
                                     {0, -1, 0, 1, 0},
                                     {0, -2, -1, 2, 1}};
  static constexpr float AT[3][5] = {{1, 1, 1, 1, 0}, {0, 1, -1, -2, 0}, {0, 1, 1, 4, 1}};
};

constexpr int kChunk = 64;  // channels per inner block (vectorised loops)

// out[i] = sum_j T[i][j] * in[j] for a small constant matrix T, over [chunk]-vectors strided by
// `in_step` / `out_step` floats: one loop over the channels, vectorised, with the matrix
// unrolled inside it, so that zero terms vanish and +-1 costs no multiplication.
template <int Rows, int Cols>
inline void Apply(const float (&T)[Rows][Cols], const float* in, int in_step, float* out,
                  int out_step, int n) {
  for (int k = 0; k < n; ++k) {
    float x[Cols];
#pragma GCC unroll 8
    for (int j = 0; j < Cols; ++j) x[j] = in[j * in_step + k];
#pragma GCC unroll 8
    for (int i = 0; i < Rows; ++i) {
      float acc = 0.f;
#pragma GCC unroll 8
      for (int j = 0; j < Cols; ++j) {
        if (T[i][j] == 1.f) {
          acc += x[j];
        } else if (T[i][j] == -1.f) {
          acc -= x[j];
        } else if (T[i][j] != 0.f) {
          acc += T[i][j] * x[j];
        }
      }
      out[i * out_step + k] = acc;
    }
  }
}

// The transpose of a constant matrix, built at compile time.
template <int Rows, int Cols>
struct Transposed {
  float v[Cols][Rows];
  constexpr explicit Transposed(const float (&T)[Rows][Cols]) : v{} {
    for (int i = 0; i < Rows; ++i)
      for (int j = 0; j < Cols; ++j) v[j][i] = T[i][j];
  }
};

// Runs body(first, last) over [0, rows) on TensorFlow's intra-op threads, so the engine's
// thread setting (STYLEBOT_ENGINE_THREADS) holds for these ops too; cost: rough cycles per row.
template <typename Body>
void ForRows(OpKernelContext* ctx, int64_t rows, int64_t cost, Body body) {
  const auto* threads = ctx->device()->tensorflow_cpu_worker_threads();
  Shard(threads->num_threads, threads->workers, rows, cost, [&body](int64_t first, int64_t last) {
    body(static_cast<int>(first), static_cast<int>(last));
  });
}

// Runs body(ti, tj, tile, c0, n) for every tile (ti, tj) of a th x tw grid (`tile` its index,
// row by row) and every block [c0, c0 + n) of its C channels, the tile rows shared among
// TensorFlow's threads; cost: rough cycles per tile row.
template <typename Body>
void ForTileChunks(OpKernelContext* ctx, int th, int tw, int C, int64_t cost, Body body) {
  ForRows(ctx, th, cost, [&](int first, int last) {
    for (int ti = first; ti < last; ++ti)
      for (int tj = 0; tj < tw; ++tj) {
        const int64_t tile = static_cast<int64_t>(ti) * tw + tj;
        for (int c0 = 0; c0 < C; c0 += kChunk) body(ti, tj, tile, c0, C - c0 < kChunk ? C - c0 : kChunk);
      }
  });
}

// The kernels below run for m = 2 and m = 3; `tile` picks one when the op is built.
class TiledKernel : public OpKernel {
 public:
  explicit TiledKernel(OpKernelConstruction* c) : OpKernel(c) {
    OP_REQUIRES_OK(c, c->GetAttr("tile", &tile_));
    OP_REQUIRES(c, tile_ == 2 || tile_ == 3, errors::InvalidArgument("tile must be 2 or 3"));
  }

 protected:
  int tile_ = 2;
};

}  // namespace

// Shapes are left unknown: the engine's graph knows them from its inputs' shapes anyway.
#define WINOGRAD_SHAPE                                      \
  SetShapeFn([](shape_inference::InferenceContext* c) {     \
    c->set_output(0, c->UnknownShapeOfRank(3));             \
    return OkStatus();                                      \
  })

REGISTER_OP("WinogradInput")
    .Attr("tile: int = 2")
    .Input("x: bfloat16")   // [H, W, C]
    .Output("v: bfloat16")  // [n*n, tiles, C]
    .WINOGRAD_SHAPE;

REGISTER_OP("WinogradOutput")
    .Attr("tile: int = 2")
    .Input("m: bfloat16")  // [n*n, tiles, K]
    .Input("bias: float")  // [K]
    .Input("size: int32")  // [H, W]
    .Output("y: bfloat16")  // [H, W, K]
    .WINOGRAD_SHAPE;

REGISTER_OP("WinogradOutputAdjoint")
    .Attr("tile: int = 2")
    .Input("dy: bfloat16")   // [H, W, K]
    .Input("y: bfloat16")    // [H, W, K], the forward output: the ReLU's mask
    .Output("dm: bfloat16")  // [n*n, tiles, K]
    .WINOGRAD_SHAPE;

REGISTER_OP("WinogradInputAdjoint")
    .Attr("tile: int = 2")
    .Input("dv: bfloat16")   // [n*n, tiles, C]
    .Input("size: int32")    // [H, W]
    .Output("dx: bfloat16")  // [H, W, C]
    .WINOGRAD_SHAPE;

namespace {

// v[a][b] = (B^T d B)[a][b] for each n x n input tile d (zero outside the picture); tile (i, j)
// starts at row m*i - 1, column m*j - 1.
template <int M>
void InputTransform(OpKernelContext* ctx, const Tensor& x, Tensor* v) {
  constexpr int N = Tile<M>::N;
  const int H = x.dim_size(0), W = x.dim_size(1), C = x.dim_size(2);
  const int th = (H + M - 1) / M, tw = (W + M - 1) / M;
  const uint16_t* in = reinterpret_cast<const uint16_t*>(x.flat<bfloat16>().data());
  uint16_t* out = reinterpret_cast<uint16_t*>(v->flat<bfloat16>().data());
  const int64_t plane = static_cast<int64_t>(th) * tw * C;
  ForTileChunks(ctx, th, tw, C, static_cast<int64_t>(tw) * C * 16 * N,
                [&](int ti, int tj, int64_t tile, int c0, int n) {
    float d[N][N][kChunk], t[N][N][kChunk], u[N][kChunk];
    for (int r = 0; r < N; ++r) {
      const int y = M * ti - 1 + r;
      for (int s = 0; s < N; ++s) {
        const int xx = M * tj - 1 + s;
        if (y < 0 || y >= H || xx < 0 || xx >= W) {
          for (int k = 0; k < n; ++k) d[r][s][k] = 0.f;
        } else {
          const uint16_t* p = in + (static_cast<int64_t>(y) * W + xx) * C + c0;
          for (int k = 0; k < n; ++k) d[r][s][k] = load(p + k);
        }
      }
    }
    // t = B^T d: row combinations, column by column.
    for (int s = 0; s < N; ++s) Apply(Tile<M>::BT, &d[0][s][0], N * kChunk, &t[0][s][0], N * kChunk, n);
    for (int a = 0; a < N; ++a) {
      Apply(Tile<M>::BT, &t[a][0][0], kChunk, &u[0][0], kChunk, n);  // v[a] = t[a] B
      for (int b = 0; b < N; ++b) {
        uint16_t* o = out + (a * N + b) * plane + tile * C + c0;
        for (int k = 0; k < n; ++k) o[k] = store(u[b][k]);
      }
    }
  });
}

// y = ReLU(A^T m A + bias) for each tile's n x n products m: its m x m outputs.
template <int M>
void OutputTransform(OpKernelContext* ctx, const Tensor& m, const float* bias, Tensor* y) {
  constexpr int N = Tile<M>::N;
  const int H = y->dim_size(0), W = y->dim_size(1), K = y->dim_size(2);
  const int th = (H + M - 1) / M, tw = (W + M - 1) / M;
  const uint16_t* in = reinterpret_cast<const uint16_t*>(m.flat<bfloat16>().data());
  uint16_t* out = reinterpret_cast<uint16_t*>(y->flat<bfloat16>().data());
  const int64_t plane = static_cast<int64_t>(th) * tw * K;
  ForTileChunks(ctx, th, tw, K, static_cast<int64_t>(tw) * K * 16 * N,
                [&](int ti, int tj, int64_t tile, int c0, int n) {
    float p[N][N][kChunk], s[M][N][kChunk], o[M][kChunk];
    for (int a = 0; a < N; ++a)
      for (int b = 0; b < N; ++b) {
        const uint16_t* q = in + (a * N + b) * plane + tile * K + c0;
        for (int k = 0; k < n; ++k) p[a][b][k] = load(q + k);
      }
    // s = A^T p: row combinations, column by column.
    for (int b = 0; b < N; ++b) Apply(Tile<M>::AT, &p[0][b][0], N * kChunk, &s[0][b][0], N * kChunk, n);
    for (int r = 0; r < M; ++r) {
      const int yy = M * ti + r;
      if (yy >= H) break;
      Apply(Tile<M>::AT, &s[r][0][0], kChunk, &o[0][0], kChunk, n);  // s[r] A
      for (int q = 0; q < M; ++q) {
        const int xx = M * tj + q;
        if (xx >= W) break;
        uint16_t* dst = out + (static_cast<int64_t>(yy) * W + xx) * K + c0;
        const float* bb = bias + c0;
        for (int k = 0; k < n; ++k) dst[k] = Relu(o[q][k] + bb[k]);
      }
    }
  });
}

// dm = A g A^T for each tile's m x m output gradients g, masked by the ReLU (y > 0).
template <int M>
void OutputAdjoint(OpKernelContext* ctx, const Tensor& dy, const Tensor& y, Tensor* dm) {
  constexpr int N = Tile<M>::N;
  static constexpr Transposed<M, N> A(Tile<M>::AT);
  const int H = dy.dim_size(0), W = dy.dim_size(1), K = dy.dim_size(2);
  const int th = (H + M - 1) / M, tw = (W + M - 1) / M;
  const uint16_t* in = reinterpret_cast<const uint16_t*>(dy.flat<bfloat16>().data());
  const uint16_t* mask = reinterpret_cast<const uint16_t*>(y.flat<bfloat16>().data());
  uint16_t* out = reinterpret_cast<uint16_t*>(dm->flat<bfloat16>().data());
  const int64_t plane = static_cast<int64_t>(th) * tw * K;
  ForTileChunks(ctx, th, tw, K, static_cast<int64_t>(tw) * K * 16 * N,
                [&](int ti, int tj, int64_t tile, int c0, int n) {
    float g[M][M][kChunk], t[N][M][kChunk], u[N][kChunk];
    for (int r = 0; r < M; ++r)
      for (int q = 0; q < M; ++q) {
        const int yy = M * ti + r, xx = M * tj + q;
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
    // t = A g: row combinations, column by column; then dm[a] = t[a] A^T.
    for (int q = 0; q < M; ++q) Apply(A.v, &g[0][q][0], M * kChunk, &t[0][q][0], M * kChunk, n);
    for (int a = 0; a < N; ++a) {
      Apply(A.v, &t[a][0][0], kChunk, &u[0][0], kChunk, n);
      for (int b = 0; b < N; ++b) {
        uint16_t* o = out + (a * N + b) * plane + tile * K + c0;
        for (int k = 0; k < n; ++k) o[k] = store(u[b][k]);
      }
    }
  });
}

// dx = the sum, over the tiles whose n x n window covers a pixel, of (B dv B^T) at its place.
// Windows of neighbouring tiles overlap by two pixels. Each output row is made whole by one
// thread (no scatter between threads, no races, float32 sums): tile i covers rows
// m*i - 1 .. m*i + m, so row y is position r = y + 1 - m*i of the (up to) two tile rows i that
// reach it. For each, h = row r of B^T-weighted dv (h[b] = sum_a B^T[a][r] dv[a][b]), then
// B h spreads it over the tile's n columns, added into a float32 row.
template <int M>
void InputAdjoint(OpKernelContext* ctx, const Tensor& dv, Tensor* dx) {
  constexpr int N = Tile<M>::N;
  static constexpr Transposed<N, N> B(Tile<M>::BT);
  const int H = dx->dim_size(0), W = dx->dim_size(1), C = dx->dim_size(2);
  const int th = (H + M - 1) / M, tw = (W + M - 1) / M;
  const uint16_t* in = reinterpret_cast<const uint16_t*>(dv.flat<bfloat16>().data());
  uint16_t* out = reinterpret_cast<uint16_t*>(dx->flat<bfloat16>().data());
  const int64_t plane = static_cast<int64_t>(th) * tw * C;
  ForRows(ctx, H, static_cast<int64_t>(W) * C * 16 * N, [&](int first, int last) {
    // Column x of the picture is row[x + 1]: a tile's window starts one pixel left of it.
    std::vector<float> row(static_cast<size_t>(M * tw + 2) * C);
    float h[N][kChunk], d[N][kChunk];
    for (int yy = first; yy < last; ++yy) {
      std::fill(row.begin(), row.end(), 0.f);
      for (int ti = (yy + 1) / M; ti >= 0 && yy + 1 - M * ti < N; --ti) {
        if (ti >= th) continue;
        const int r = yy + 1 - M * ti;
        for (int tj = 0; tj < tw; ++tj) {
          const int64_t tile = static_cast<int64_t>(ti) * tw + tj;
          for (int c0 = 0; c0 < C; c0 += kChunk) {
            const int n = C - c0 < kChunk ? C - c0 : kChunk;
            for (int b = 0; b < N; ++b) {
              for (int k = 0; k < n; ++k) h[b][k] = 0.f;
              for (int a = 0; a < N; ++a) {
                const float c = Tile<M>::BT[a][r];
                if (c == 0.f) continue;
                const uint16_t* p = in + (a * N + b) * plane + tile * C + c0;
                for (int k = 0; k < n; ++k) h[b][k] += c * load(p + k);
              }
            }
            Apply(B.v, &h[0][0], kChunk, &d[0][0], kChunk, n);
            float* dst = row.data() + static_cast<int64_t>(M * tj) * C + c0;
            for (int s = 0; s < N; ++s)
              for (int k = 0; k < n; ++k) dst[s * C + k] += d[s][k];
          }
        }
      }
      uint16_t* o = out + static_cast<int64_t>(yy) * W * C;
      const float* src = row.data() + C;
      for (int64_t i = 0; i < static_cast<int64_t>(W) * C; ++i) o[i] = store(src[i]);
    }
  });
}

int Tiles(int H, int W, int m) { return ((H + m - 1) / m) * ((W + m - 1) / m); }

}  // namespace

class WinogradInputOp : public TiledKernel {
 public:
  using TiledKernel::TiledKernel;
  void Compute(OpKernelContext* ctx) override {
    const Tensor& x = ctx->input(0);
    const int n = tile_ + 2, C = x.dim_size(2);
    Tensor* v = nullptr;
    const TensorShape shape({n * n, Tiles(x.dim_size(0), x.dim_size(1), tile_), C});
    OP_REQUIRES_OK(ctx, ctx->allocate_output(0, shape, &v));
    tile_ == 2 ? InputTransform<2>(ctx, x, v) : InputTransform<3>(ctx, x, v);
  }
};

class WinogradOutputOp : public TiledKernel {
 public:
  using TiledKernel::TiledKernel;
  void Compute(OpKernelContext* ctx) override {
    const Tensor& m = ctx->input(0);
    const auto size = ctx->input(2).flat<int32>();
    Tensor* y = nullptr;
    OP_REQUIRES_OK(ctx, ctx->allocate_output(0, TensorShape({size(0), size(1), m.dim_size(2)}), &y));
    const float* bias = ctx->input(1).flat<float>().data();
    tile_ == 2 ? OutputTransform<2>(ctx, m, bias, y) : OutputTransform<3>(ctx, m, bias, y);
  }
};

class WinogradOutputAdjointOp : public TiledKernel {
 public:
  using TiledKernel::TiledKernel;
  void Compute(OpKernelContext* ctx) override {
    const Tensor& dy = ctx->input(0);
    const int n = tile_ + 2, K = dy.dim_size(2);
    Tensor* dm = nullptr;
    const TensorShape shape({n * n, Tiles(dy.dim_size(0), dy.dim_size(1), tile_), K});
    OP_REQUIRES_OK(ctx, ctx->allocate_output(0, shape, &dm));
    tile_ == 2 ? OutputAdjoint<2>(ctx, dy, ctx->input(1), dm)
               : OutputAdjoint<3>(ctx, dy, ctx->input(1), dm);
  }
};

class WinogradInputAdjointOp : public TiledKernel {
 public:
  using TiledKernel::TiledKernel;
  void Compute(OpKernelContext* ctx) override {
    const Tensor& dv = ctx->input(0);
    const auto size = ctx->input(1).flat<int32>();
    Tensor* dx = nullptr;
    OP_REQUIRES_OK(ctx, ctx->allocate_output(0, TensorShape({size(0), size(1), dv.dim_size(2)}), &dx));
    tile_ == 2 ? InputAdjoint<2>(ctx, dv, dx) : InputAdjoint<3>(ctx, dv, dx);
  }
};

REGISTER_KERNEL_BUILDER(Name("WinogradInput").Device(DEVICE_CPU), WinogradInputOp);
REGISTER_KERNEL_BUILDER(Name("WinogradOutput").Device(DEVICE_CPU).HostMemory("size"),
                        WinogradOutputOp);
REGISTER_KERNEL_BUILDER(Name("WinogradOutputAdjoint").Device(DEVICE_CPU), WinogradOutputAdjointOp);
REGISTER_KERNEL_BUILDER(Name("WinogradInputAdjoint").Device(DEVICE_CPU).HostMemory("size"),
                        WinogradInputAdjointOp);
