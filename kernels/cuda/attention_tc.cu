// Tensor-core attention for prefill (sm_80+): the contract of attention.cu's `attention`
// (GQA over the first kv_len cache rows, optional causal mask) for head_dim 64 or 128.
// A 128-thread block takes 64 query rows of one KV group (row r of the group is query
// t = r / rep, head g * rep + r % rep), warp w rows 16w..16w+15. Per 32-key tile:
// S = Q K^T and O += P V run as mma.sync m16n8k8 TF32 with f32 accumulation; Q, K, P and V
// are f32, so each product is split as a = hi + lo (TF32 parts) and computed as
// hi*hi + hi*lo + lo*hi, which keeps f32-level accuracy. K and V tiles pass through one
// shared buffer (rows padded to d + 4 floats, so fragment reads hit distinct banks); the
// scores of each warp's rows go through shared memory between the two products, where an
// online softmax per row rescales the output accumulators.
#define TCA_ROWS 64
#define TCA_KEYS 32
#define TCA_S_PITCH 36
#define TCA_NEG (-3.402823466e38f)

// v = hi + lo, both TF32.
__device__ __forceinline__ void tca_split(float v, u32* hi, u32* lo) {
    *hi = to_tf32(v);
    *lo = to_tf32(v - __uint_as_float(*hi));
}

// c += a . b for f32 fragments a (16x8: (g, q), (g + 8, q), (g, q + 4), (g + 8, q + 4)) and
// b (8x8: (k = q, n = g), (k = q + 4, n = g)), in three TF32 products.
__device__ __forceinline__ void tca_mma3(float* c, const float* a, const float* b) {
    u32 ah[4], al[4], bh[2], bl[2];
    for (int i = 0; i < 4; i++) tca_split(a[i], &ah[i], &al[i]);
    for (int i = 0; i < 2; i++) tca_split(b[i], &bh[i], &bl[i]);
    mma_tf32(c, al, bh[0], bh[1]);
    mma_tf32(c, ah, bl[0], bl[1]);
    mma_tf32(c, ah, bh[0], bh[1]);
}

template <int D>
__device__ void attention_tc(const float* q, const float* kc, const float* vc, float* out, u32 t, u32 heads, u32 groups, u32 cap, u32 kv_len,
                             u32 causal, float scale) {
    const int PITCH = D + 4;
    __shared__ float kv_sh[TCA_KEYS * (D + 4)];
    __shared__ float s_sh[TCA_ROWS * TCA_S_PITCH];
    __shared__ float m_sh[TCA_ROWS], l_sh[TCA_ROWS], alpha_sh[TCA_ROWS];
    u32 rep = heads / groups, group_rows = t * rep;
    u32 per_group = (group_rows + TCA_ROWS - 1) / TCA_ROWS;
    u32 bi = block_index();
    if (bi >= groups * per_group) return;
    u32 gi = bi / per_group, first = (bi % per_group) * TCA_ROWS;
    u32 rows = min((u32)TCA_ROWS, group_rows - first);
    u32 lane = threadIdx.x & 31, warp = threadIdx.x >> 5, g = lane >> 2, qd = lane & 3;
    // This thread's two fragment rows (g and g + 8 of its warp's 16); rows past the end
    // repeat the last one (their results are never stored).
    u32 r_lo = warp * 16 + g, r_hi = r_lo + 8;
    auto query_of = [&](u32 r, u32* ti) {
        u32 flat = first + min(r, rows - 1);
        *ti = flat / rep;
        return ((u64)*ti * heads + gi * rep + flat % rep) * D;
    };
    u32 t_lo, t_hi;
    const float* q_lo = q + query_of(r_lo, &t_lo);
    const float* q_hi = q + query_of(r_hi, &t_hi);
    u32 vis_lo = causal ? kv_len - t + t_lo + 1 : kv_len;
    u32 vis_hi = causal ? kv_len - t + t_hi + 1 : kv_len;
    u32 t_last;
    query_of(rows - 1, &t_last);
    u32 end = causal ? kv_len - t + t_last + 1 : kv_len;
    if (threadIdx.x < TCA_ROWS) { m_sh[threadIdx.x] = TCA_NEG; l_sh[threadIdx.x] = 0.0f; }
    const float* kb = kc + (u64)gi * cap * D;
    const float* vb = vc + (u64)gi * cap * D;
    float o[D / 8][4];
#pragma unroll
    for (int j = 0; j < D / 8; j++) o[j][0] = o[j][1] = o[j][2] = o[j][3] = 0.0f;
    for (u32 c0 = 0; c0 < end; c0 += TCA_KEYS) {
        u32 n = min((u32)TCA_KEYS, end - c0);
        __syncthreads();
        for (u32 i = threadIdx.x; i < TCA_KEYS * D; i += 128) {
            u32 key = i / D, dim = i % D;
            kv_sh[key * PITCH + dim] = key < n ? kb[(u64)(c0 + key) * D + dim] : 0.0f;
        }
        __syncthreads();
        // S = Q K^T for this warp's 16 rows and the 32 keys (4 tiles of 8).
        float s[4][4] = {};
#pragma unroll 4
        for (int ks = 0; ks < D; ks += 8) {
            float a[4] = {q_lo[ks + qd], q_hi[ks + qd], q_lo[ks + qd + 4], q_hi[ks + qd + 4]};
#pragma unroll
            for (int j = 0; j < 4; j++) {
                const float* kr = kv_sh + (8 * j + g) * PITCH + ks + qd;
                float b[2] = {kr[0], kr[4]};
                tca_mma3(s[j], a, b);
            }
        }
#pragma unroll
        for (int j = 0; j < 4; j++) {
#pragma unroll
            for (int e = 0; e < 4; e++) {
                u32 row = e < 2 ? r_lo : r_hi, col = 8 * j + 2 * qd + (e & 1), key = c0 + col;
                bool seen = col < n && key < (e < 2 ? vis_lo : vis_hi);
                s_sh[row * TCA_S_PITCH + col] = seen ? s[j][e] * scale : TCA_NEG;
            }
        }
        __syncwarp();
        // Online softmax: lane r < 16 takes row 16w + r.
        if (lane < 16) {
            u32 row = warp * 16 + lane;
            float* sr = s_sh + row * TCA_S_PITCH;
            float mx = m_sh[row];
            for (u32 j = 0; j < n; j++) mx = fmaxf(mx, sr[j]);
            float alpha = expf(m_sh[row] - mx), sum = l_sh[row] * alpha;
            for (u32 j = 0; j < TCA_KEYS; j++) {
                float pj = (j < n && sr[j] > TCA_NEG) ? expf(sr[j] - mx) : 0.0f;
                sr[j] = pj;
                sum += pj;
            }
            m_sh[row] = mx;
            l_sh[row] = sum;
            alpha_sh[row] = alpha;
        }
        __syncthreads();
        for (u32 i = threadIdx.x; i < TCA_KEYS * D; i += 128) {
            u32 key = i / D, dim = i % D;
            kv_sh[key * PITCH + dim] = key < n ? vb[(u64)(c0 + key) * D + dim] : 0.0f;
        }
        __syncthreads();
        // O = alpha * O + P V: P [16 x 32] from shared, V [32 x D].
        float al = alpha_sh[r_lo], ah = alpha_sh[r_hi];
#pragma unroll
        for (int j = 0; j < D / 8; j++) {
            o[j][0] *= al;
            o[j][1] *= al;
            o[j][2] *= ah;
            o[j][3] *= ah;
        }
#pragma unroll
        for (int ks = 0; ks < TCA_KEYS; ks += 8) {
            const float* p_lo = s_sh + r_lo * TCA_S_PITCH + ks + qd;
            const float* p_hi = s_sh + r_hi * TCA_S_PITCH + ks + qd;
            float a[4] = {p_lo[0], p_hi[0], p_lo[4], p_hi[4]};
#pragma unroll
            for (int j = 0; j < D / 8; j++) {
                const float* vr = kv_sh + (ks + qd) * PITCH + 8 * j + g;
                float b[2] = {vr[0], vr[4 * PITCH]};
                tca_mma3(o[j], a, b);
            }
        }
    }
    __syncthreads();
    float inv_lo = 1.0f / l_sh[r_lo], inv_hi = 1.0f / l_sh[r_hi];
    float* out_lo = out + query_of(r_lo, &t_lo);
    float* out_hi = out + query_of(r_hi, &t_hi);
#pragma unroll
    for (int j = 0; j < D / 8; j++) {
        u32 col = 8 * j + 2 * qd;
        if (r_lo < rows) { out_lo[col] = o[j][0] * inv_lo; out_lo[col + 1] = o[j][1] * inv_lo; }
        if (r_hi < rows) { out_hi[col] = o[j][2] * inv_hi; out_hi[col + 1] = o[j][3] * inv_hi; }
    }
}

#define ATTENTION_TC(D) \
    extern "C" __global__ void __launch_bounds__(128) attention_tc_d##D(const float* q, const float* kc, const float* vc, float* out, u32 t, u32 heads, \
                                                                       u32 groups, u32 cap, u32 kv_len, u32 causal, float scale) { \
        attention_tc<D>(q, kc, vc, out, t, heads, groups, cap, kv_len, causal, scale); }
ATTENTION_TC(64)
ATTENTION_TC(128)
