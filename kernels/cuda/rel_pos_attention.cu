// WavLM's bidirectional self-attention with a gated relative position bias, tiled as
// attention.cu: a 128-thread block takes `qb` consecutive queries of one head h; keys go
// through shared memory `tk` at a time (rows padded to d + 1 floats) with an online softmax
// per query; thread e accumulates output dimensions e and e + 128 of every query.
//   logits[i, j] = q_i . k_j * scale + g_i * rel[h, j - i + T - 1], over all T keys;
//   g_i = sigmoid(z0 + z1 + z2 + z3) * (sigmoid(z4 + .. + z7) * gate_const[h] - 1) + 2,
//   z = gate[i, h, :].
// q, k, v, out [T, H, D] f32 (D <= 256); gate [T, H, 8]; gate_const [H]; rel [H, 2T - 1].
#define RPA_THREADS 128
#define RPA_MAX_QB 16
#define RPA_Q_TILE 2048
#define RPA_KV_TILE 4224
#define RPA_S_TILE 512

struct RpaShared {
    float q[RPA_Q_TILE];
    float kv[RPA_KV_TILE];
    float s[RPA_S_TILE];
    float g[RPA_MAX_QB], m[RPA_MAX_QB], l[RPA_MAX_QB], alpha[RPA_MAX_QB];
};

__device__ __forceinline__ float rpa_sigmoid(float x) { return 1.0f / (1.0f + expf(-x)); }

// qb queries per block (qb * d <= RPA_Q_TILE), tk keys per tile (tk * (d + 1) <= RPA_KV_TILE,
// qb * tk <= RPA_S_TILE).
extern "C" __global__ void __launch_bounds__(RPA_THREADS) rel_pos_attention(const float* q, const float* k, const float* v, const float* gate,
                                                                            const float* gate_const, const float* rel, float* out, u32 t, u32 heads,
                                                                            u32 d, u32 qb, u32 tk, float scale) {
    __shared__ RpaShared sh;
    u32 blocks = (t + qb - 1) / qb, bi = block_index(), e = threadIdx.x;
    if (bi >= blocks * heads) return;
    // Head-major, so neighbouring blocks read the same head's keys.
    u32 h = bi / blocks, i0 = (bi % blocks) * qb, rows = min(qb, t - i0), pitch = d + 1;
    u64 hd = (u64)heads * d;
    for (u32 i = e; i < rows * d; i += RPA_THREADS) sh.q[i] = q[(i0 + i / d) * hd + h * d + i % d];
    if (e < rows) {
        const float* z = gate + ((u64)(i0 + e) * heads + h) * 8;
        float ga = rpa_sigmoid(z[0] + z[1] + z[2] + z[3]), gb = rpa_sigmoid(z[4] + z[5] + z[6] + z[7]);
        sh.g[e] = ga * (gb * gate_const[h] - 1.0f) + 2.0f;
        sh.m[e] = -3.402823466e38f;
        sh.l[e] = 0.0f;
    }
    float acc0[RPA_MAX_QB], acc1[RPA_MAX_QB];
#pragma unroll
    for (u32 r = 0; r < RPA_MAX_QB; r++) acc0[r] = acc1[r] = 0.0f;
    // rel[h, j - i + T - 1] = diag[j - i].
    const float* diag = rel + (u64)h * (2 * t - 1) + t - 1;
    for (u32 c0 = 0; c0 < t; c0 += tk) {
        u32 n = min(tk, t - c0);
        __syncthreads();
        for (u32 i = e; i < n * d; i += RPA_THREADS) sh.kv[(i / d) * pitch + i % d] = k[(c0 + i / d) * hd + h * d + i % d];
        __syncthreads();
        for (u32 i = e; i < rows * tk; i += RPA_THREADS) {
            u32 r = i / tk, j = i % tk;
            float s = -3.402823466e38f;
            if (j < n) {
                const float* qr = sh.q + r * d;
                const float* kr = sh.kv + j * pitch;
                float dot = 0.0f;
                for (u32 kk = 0; kk < d; kk++) dot += qr[kk] * kr[kk];
                s = dot * scale + sh.g[r] * diag[(int)(c0 + j) - (int)(i0 + r)];
            }
            sh.s[i] = s;
        }
        __syncthreads();
        if (e < rows) {
            float mx = sh.m[e];
            for (u32 j = 0; j < n; j++) mx = fmaxf(mx, sh.s[e * tk + j]);
            float alpha = expf(sh.m[e] - mx), sum = sh.l[e] * alpha;
            for (u32 j = 0; j < n; j++) {
                float pj = expf(sh.s[e * tk + j] - mx);
                sh.s[e * tk + j] = pj;
                sum += pj;
            }
            sh.m[e] = mx;
            sh.l[e] = sum;
            sh.alpha[e] = alpha;
        }
        for (u32 i = e; i < n * d; i += RPA_THREADS) sh.kv[(i / d) * pitch + i % d] = v[(c0 + i / d) * hd + h * d + i % d];
        __syncthreads();
        // Unrolled over the largest block so the accumulators stay in registers.
#pragma unroll
        for (u32 r = 0; r < RPA_MAX_QB; r++) {
            if (r >= rows) break;
            float a0 = acc0[r] * sh.alpha[r], a1 = acc1[r] * sh.alpha[r];
            for (u32 j = 0; j < n; j++) {
                float pj = sh.s[r * tk + j];
                if (e < d) a0 += pj * sh.kv[j * pitch + e];
                if (e + RPA_THREADS < d) a1 += pj * sh.kv[j * pitch + e + RPA_THREADS];
            }
            acc0[r] = a0;
            acc1[r] = a1;
        }
    }
    __syncthreads();
#pragma unroll
    for (u32 r = 0; r < RPA_MAX_QB; r++) {
        if (r >= rows) break;
        float* o = out + (i0 + r) * hd + h * d;
        float inv = 1.0f / sh.l[r];
        if (e < d) o[e] = acc0[r] * inv;
        if (e + RPA_THREADS < d) o[e + RPA_THREADS] = acc1[r] * inv;
    }
}
