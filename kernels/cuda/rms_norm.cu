// out = x * rsqrt(mean(x^2) + eps) * w, one block per row.
template <typename W>
__device__ void rms_norm(const float* x, const W* w, float* out, u32 rows, u32 cols, float eps) {
    __shared__ float scratch[32];
    u32 row = block_index();
    if (row >= rows) return;
    const float* xr = x + (u64)row * cols;
    float ss = 0.0f;
    for (u32 i = threadIdx.x; i < cols; i += blockDim.x) ss += xr[i] * xr[i];
    float r = 1.0f / sqrtf(block_sum(ss, scratch) / (float)cols + eps);
    for (u32 i = threadIdx.x; i < cols; i += blockDim.x) out[(u64)row * cols + i] = (xr[i] * r) * widen(w[i]);
}

#define RMS(S, W) extern "C" __global__ void rms_norm_##S(const float* x, const W* w, float* out, u32 rows, u32 cols, float eps) { rms_norm(x, w, out, rows, cols, eps); }
FOR_WEIGHT_TYPES(RMS)
