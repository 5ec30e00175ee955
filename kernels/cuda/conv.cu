// Time-major 1-D convolutions, one thread per output element (b, j, o).
// x [B, L_in, C_in], w [C_out, K, C_in / groups] (stored dtype), bias [C_out] (same dtype,
// may be null), out [B, L_out, C_out].
//   conv1d: u = x repeated `upsample` times, zero outside; output channel o of group
//           g = o / (C_out / groups) reads input channels g * cg + i (cg = C_in / groups);
//           y = bias + sum_k sum_i w[o,k,i] u[j*stride + k*dilation - pad_left, g*cg + i];
//           PReLU if has_prelu; store or accumulate. (Depthwise and narrow convolutions;
//           the others run as implicit GEMMs, conv1d_gemm_* in matmul.cu / gemm_tc.cu.)
//   conv_transpose1d: y = bias + sum over taps k = phase + m*stride of w[o,k,i] x[(j + padding - k)/stride, i].
template <typename W>
__device__ float dot_in(const W* w, const float* x, u32 c_in) {
    float acc = 0.0f;
    for (u32 i = 0; i < c_in; i++) acc += widen(w[i]) * x[i];
    return acc;
}

template <typename W>
__device__ void conv1d(const float* x, const W* w, const W* bias, float* out, u32 batch, u32 l_in, u32 c_in, u32 l_out, u32 c_out, u32 k,
                       u32 stride, u32 groups, u32 dilation, u32 pad_left, u32 upsample, u32 has_prelu, float slope, u32 accumulate) {
    u32 id = grid_index();
    if (id >= batch * l_out * c_out) return;
    u32 o = id % c_out, j = (id / c_out) % l_out, b = id / (c_out * l_out);
    u32 virtual_len = l_in * upsample, cg = c_in / groups, ch0 = (o / (c_out / groups)) * cg;
    float y = 0.0f;
    for (u32 kk = 0; kk < k; kk++) {
        u32 shifted = j * stride + kk * dilation;
        if (shifted < pad_left || shifted - pad_left >= virtual_len) continue;
        u32 ti = (shifted - pad_left) / upsample;
        y += dot_in(w + ((u64)o * k + kk) * cg, x + ((u64)b * l_in + ti) * c_in + ch0, cg);
    }
    if (bias) y += widen(bias[o]);
    if (has_prelu && y < 0.0f) y *= slope;
    out[id] = accumulate ? out[id] + y : y;
}

template <typename W>
__device__ void conv_transpose1d(const float* x, const W* w, const W* bias, float* out, u32 batch, u32 l_in, u32 c_in, u32 l_out, u32 c_out, u32 k,
                                 u32 stride, u32 padding) {
    u32 id = grid_index();
    if (id >= batch * l_out * c_out) return;
    u32 o = id % c_out, j = (id / c_out) % l_out, b = id / (c_out * l_out);
    u32 shifted = j + padding;
    float y = 0.0f;
    for (u32 kk = shifted % stride; kk < k && kk <= shifted; kk += stride) {
        u32 ti = (shifted - kk) / stride;
        if (ti < l_in) y += dot_in(w + ((u64)o * k + kk) * c_in, x + ((u64)b * l_in + ti) * c_in, c_in);
    }
    out[id] = y + (bias ? widen(bias[o]) : 0.0f);
}

#define CONV(S, W) \
    extern "C" __global__ void conv1d_##S(const float* x, const W* w, const W* bias, float* out, u32 batch, u32 l_in, u32 c_in, u32 l_out, u32 c_out, u32 k, \
                                          u32 stride, u32 groups, u32 dilation, u32 pad_left, u32 upsample, u32 has_prelu, float slope, u32 accumulate) { \
        conv1d(x, w, bias, out, batch, l_in, c_in, l_out, c_out, k, stride, groups, dilation, pad_left, upsample, has_prelu, slope, accumulate); } \
    extern "C" __global__ void conv_transpose1d_##S(const float* x, const W* w, const W* bias, float* out, u32 batch, u32 l_in, u32 c_in, u32 l_out, u32 c_out, \
                                                    u32 k, u32 stride, u32 padding) { \
        conv_transpose1d(x, w, bias, out, batch, l_in, c_in, l_out, c_out, k, stride, padding); }
FOR_WEIGHT_TYPES(CONV)
