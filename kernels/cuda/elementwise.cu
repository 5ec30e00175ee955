// Pointwise ops over f32 tensors (in place allowed where the op says so: a thread reads its
// element before writing it), row softmax, and the codec's sampler updates.
extern "C" __global__ void add(const float* a, const float* b, float* out, u32 n) {
    u32 i = grid_index();
    if (i < n) out[i] = a[i] + b[i];
}

extern "C" __global__ void swiglu(const float* a, const float* b, float* out, u32 n) {
    u32 i = grid_index();
    if (i < n) { float x = a[i]; out[i] = (x / (1.0f + expf(-x))) * b[i]; }
}

// out = u + scale * (c - u)
extern "C" __global__ void guidance(const float* c, const float* u, float* out, u32 n, float scale) {
    u32 i = grid_index();
    if (i < n) { float uv = u[i]; out[i] = uv + scale * (c[i] - uv); }
}

extern "C" __global__ void select_rows(const u32* mask, const float* a, const float* b, float* out, u32 n, u32 cols) {
    u32 i = grid_index();
    if (i < n) out[i] = mask[i / cols] != 0 ? a[i] : b[i];
}

extern "C" __global__ void unary(const float* x, float* out, u32 n, u32 act, float levels) {
    u32 i = grid_index();
    if (i < n) out[i] = activate(x[i], act, levels);
}

// GLU: out[r, j] = x[r, j] * sigmoid(x[r, f + j]); x [R, 2f], out [R, f].
extern "C" __global__ void glu(const float* x, float* out, u32 n, u32 f) {
    u32 i = grid_index();
    if (i < n) {
        const float* xr = x + (u64)(i / f) * 2 * f + i % f;
        out[i] = xr[0] * (1.0f / (1.0f + expf(-xr[f])));
    }
}

// FiLM: out[r, j] = (1 + s * tanh(p[r, j])) * x[r, j] + p[r, c + j]; x, out [R, c] (out may be
// x), p [R, 2c].
extern "C" __global__ void film(const float* x, const float* p, float* out, u32 n, u32 c, float s) {
    u32 i = grid_index();
    if (i < n) {
        const float* pr = p + (u64)(i / c) * 2 * c + i % c;
        out[i] = (1.0f + s * tanhf(pr[0])) * x[i] + pr[c];
    }
}

extern "C" __global__ void blend(const float* a, const float* b, float* out, u32 n, float wa, float wb) {
    u32 i = grid_index();
    if (i < n) out[i] = wa * a[i] + wb * b[i];
}

// x += dt * (u + scale * (c - u))
extern "C" __global__ void euler_cfg(float* x, const float* c, const float* u, u32 n, float scale, float dt) {
    u32 i = grid_index();
    if (i < n) { float uv = u[i]; float v = uv + scale * (c[i] - uv); x[i] += dt * v; }
}

extern "C" __global__ void __launch_bounds__(256) softmax(const float* x, float* out, u32 rows, u32 cols) {
    __shared__ float scratch[32];
    u32 row = block_index();
    if (row >= rows) return;
    const float* xr = x + (u64)row * cols;
    float* o = out + (u64)row * cols;
    float m = -3.402823466e38f;
    for (u32 i = threadIdx.x; i < cols; i += blockDim.x) m = fmaxf(m, xr[i]);
    m = block_max(m, scratch);
    float s = 0.0f;
    for (u32 i = threadIdx.x; i < cols; i += blockDim.x) { float e = expf(xr[i] - m); o[i] = e; s += e; }
    s = block_sum(s, scratch);
    for (u32 i = threadIdx.x; i < cols; i += blockDim.x) o[i] /= s;
}

// LayerNorm without affine (biased variance, two passes), then (1 + scale) * n + shift.
extern "C" __global__ void __launch_bounds__(256) layer_norm_modulate(const float* x, const float* shift, const float* scale, float* out, u32 rows, u32 cols, float eps) {
    __shared__ float scratch[32];
    u32 row = block_index();
    if (row >= rows) return;
    const float* xr = x + (u64)row * cols;
    float s = 0.0f;
    for (u32 i = threadIdx.x; i < cols; i += blockDim.x) s += xr[i];
    float mean = block_sum(s, scratch) / (float)cols;
    float ss = 0.0f;
    for (u32 i = threadIdx.x; i < cols; i += blockDim.x) { float dv = xr[i] - mean; ss += dv * dv; }
    float rstd = 1.0f / sqrtf(block_sum(ss, scratch) / (float)cols + eps);
    for (u32 i = threadIdx.x; i < cols; i += blockDim.x) out[(u64)row * cols + i] = ((xr[i] - mean) * rstd) * (1.0f + scale[i]) + shift[i];
}
