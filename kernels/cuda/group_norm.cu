// GroupNorm over time-major activations, one 256-thread block per (batch b, group g): the
// mean, then the biased variance (two passes, block reductions) over the T x cg elements
// of the group (cg = C / groups channels of every frame), then
// out = ((x - mean) * rstd) * weight[c] + bias[c].
// x, out [B, T, C] f32; weight, bias [C] (stored dtype, both the same).
template <typename W>
__device__ void group_norm(const float* x, const W* weight, const W* bias, float* out, u32 batch, u32 t, u32 c, u32 groups, float eps) {
    __shared__ float scratch[32];
    u32 bi = block_index();
    if (bi >= batch * groups) return;
    u32 cg = c / groups, c0 = (bi % groups) * cg, count = t * cg;
    u64 base = (u64)(bi / groups) * t * c + c0;
    // Element e of the group: frame e / cg, channel c0 + e % cg.
    float s = 0.0f;
    for (u32 e = threadIdx.x; e < count; e += blockDim.x) s += x[base + (u64)(e / cg) * c + e % cg];
    float mean = block_sum(s, scratch) / (float)count;
    float ss = 0.0f;
    for (u32 e = threadIdx.x; e < count; e += blockDim.x) {
        float d = x[base + (u64)(e / cg) * c + e % cg] - mean;
        ss += d * d;
    }
    float rstd = 1.0f / sqrtf(block_sum(ss, scratch) / (float)count + eps);
    for (u32 e = threadIdx.x; e < count; e += blockDim.x) {
        u64 at = base + (u64)(e / cg) * c + e % cg;
        u32 ch = c0 + e % cg;
        out[at] = ((x[at] - mean) * rstd) * widen(weight[ch]) + widen(bias[ch]);
    }
}

#define GROUP_NORM(S, W) \
    extern "C" __global__ void __launch_bounds__(256) group_norm_##S(const float* x, const W* weight, const W* bias, float* out, u32 batch, u32 t, u32 c, \
                                                                    u32 groups, float eps) { \
        group_norm(x, weight, bias, out, batch, t, c, groups, eps); }
FOR_WEIGHT_TYPES(GROUP_NORM)
