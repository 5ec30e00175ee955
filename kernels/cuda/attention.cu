// rope: rotate-half at per-row positions from a host-built [P, D] cos|sin table.
// kv_append: cache[g, positions[t], :] = src[t, g, :]; with a RoPE table (non-null), K is
// rotated (rotate-half, cos | sin rows) on its way into the cache.
extern "C" __global__ void rope(const float* x, const u32* positions, const float* table, float* out, u32 t, u32 heads, u32 d) {
    u32 i = grid_index();
    u32 half = d / 2;
    if (i >= t * heads * half) return;
    u32 j = i % half, th = i / half, ti = th / heads;
    const float* row = table + (u64)positions[ti] * d;
    float c = row[j], s = row[half + j];
    u64 base = (u64)th * d;
    float a = x[base + j], b = x[base + half + j];
    out[base + j] = a * c - b * s;
    out[base + half + j] = b * c + a * s;
}

extern "C" __global__ void kv_append(const float* k, const float* v, const u32* positions, const float* table, float* kc, float* vc, u32 t, u32 g, u32 d,
                                     u32 cap) {
    u32 i = grid_index();
    if (i >= t * g * d) return;
    u32 di = i % d, gi = (i / d) % g, ti = i / (d * g);
    u32 pos = positions[ti];
    u64 dst = ((u64)gi * cap + pos) * d + di;
    if (table) {
        u32 half = d / 2, j = di % half;
        u64 row = i - di;
        float a = k[row + j], b = k[row + j + half];
        float c = table[(u64)pos * d + j], s = table[(u64)pos * d + half + j];
        kc[dst] = di < half ? a * c - b * s : b * c + a * s;
    } else {
        kc[dst] = k[i];
    }
    vc[dst] = v[i];
}

// Attention is GQA-aware and tiled: a block takes `qb` query rows of one KV group g (row r
// of the group is query t = r / rep, head g * rep + r % rep, rep = H / G), so each K and V
// row is read from memory once for all the heads that share it, in decode (the group's
// heads) and prefill (several queries). Keys pass through shared memory `tk` at a time
// (rows padded to d + 1 floats, so the per-key dot products hit distinct banks) with an
// online softmax per row; thread e accumulates output dims e and e + 128 of every row.
#define ATT_THREADS 128
#define ATT_MAX_QB 16
#define ATT_Q_TILE 2048
#define ATT_KV_TILE 4224
#define ATT_S_TILE 512
#define ATT_NEG (-3.402823466e38f)

struct AttShape {
    u32 t, heads, g, d, cap, kv_len, causal;
    float scale;
    u32 qb, tk;
};

// Kernels take the shape as scalars (in this order) and rebuild the struct.
#define ATT_SHAPE_PARAMS u32 t, u32 heads, u32 g, u32 d, u32 cap, u32 kv_len, u32 causal, float scale, u32 qb, u32 tk
#define ATT_SHAPE {t, heads, g, d, cap, kv_len, causal, scale, qb, tk}

struct AttShared {
    float q[ATT_Q_TILE];
    float kv[ATT_KV_TILE];
    float s[ATT_S_TILE];
    float m[ATT_MAX_QB], l[ATT_MAX_QB], alpha[ATT_MAX_QB];
};

__device__ __forceinline__ u32 att_blocks_per_group(const AttShape& a) { return (a.t * (a.heads / a.g) + a.qb - 1) / a.qb; }

// Row r of the block starting at group row `first` of group gi: (query, head).
__device__ __forceinline__ void att_query(const AttShape& a, u32 gi, u32 first, u32 r, u32* ti, u32* h) {
    u32 rep = a.heads / a.g, flat = first + r;
    *ti = flat / rep;
    *h = gi * rep + flat % rep;
}

__device__ __forceinline__ u32 att_visible(const AttShape& a, u32 ti) { return a.causal ? a.kv_len - a.t + ti + 1 : a.kv_len; }

// Online softmax of the block's rows over keys begin..end; leaves each row's max and sum
// in sh.m / sh.l and the unnormalised outputs in acc0 / acc1.
__device__ void att_block(const AttShape& a, AttShared& sh, const float* q, const float* kc, const float* vc, u32 gi, u32 first, u32 rows, u32 begin,
                          u32 end, float* acc0, float* acc1) {
    u32 e = threadIdx.x, d = a.d, pitch = d + 1;
#pragma unroll
    for (u32 r = 0; r < ATT_MAX_QB; r++) acc0[r] = acc1[r] = 0.0f;
    for (u32 i = e; i < rows * d; i += ATT_THREADS) {
        u32 ti, h;
        att_query(a, gi, first, i / d, &ti, &h);
        sh.q[i] = q[((u64)ti * a.heads + h) * d + i % d];
    }
    if (e < rows) { sh.m[e] = ATT_NEG; sh.l[e] = 0.0f; }
    const float* kb = kc + (u64)gi * a.cap * d;
    const float* vb = vc + (u64)gi * a.cap * d;
    for (u32 c0 = begin; c0 < end; c0 += a.tk) {
        u32 n = min(a.tk, end - c0);
        __syncthreads();
        for (u32 i = e; i < n * d; i += ATT_THREADS) sh.kv[(i / d) * pitch + i % d] = kb[(u64)c0 * d + i];
        __syncthreads();
        for (u32 i = e; i < rows * a.tk; i += ATT_THREADS) {
            u32 r = i / a.tk, j = i % a.tk, ti, h;
            att_query(a, gi, first, r, &ti, &h);
            float s = ATT_NEG;
            if (j < n && c0 + j < att_visible(a, ti)) {
                const float* qr = sh.q + r * d;
                const float* kr = sh.kv + j * pitch;
                float dot = 0.0f;
                for (u32 k = 0; k < d; k++) dot += qr[k] * kr[k];
                s = dot * a.scale;
            }
            sh.s[i] = s;
        }
        __syncthreads();
        if (e < rows) {
            float mx = sh.m[e];
            for (u32 j = 0; j < n; j++) mx = fmaxf(mx, sh.s[e * a.tk + j]);
            float alpha = expf(sh.m[e] - mx), sum = sh.l[e] * alpha;
            for (u32 j = 0; j < n; j++) {
                float s = sh.s[e * a.tk + j];
                float pj = s > ATT_NEG ? expf(s - mx) : 0.0f;
                sh.s[e * a.tk + j] = pj;
                sum += pj;
            }
            sh.m[e] = mx;
            sh.l[e] = sum;
            sh.alpha[e] = alpha;
        }
        for (u32 i = e; i < n * d; i += ATT_THREADS) sh.kv[(i / d) * pitch + i % d] = vb[(u64)c0 * d + i];
        __syncthreads();
        // Unrolled over the largest tile so the accumulators stay in registers.
#pragma unroll
        for (u32 r = 0; r < ATT_MAX_QB; r++) {
            if (r >= rows) break;
            float a0 = acc0[r] * sh.alpha[r], a1 = acc1[r] * sh.alpha[r];
            for (u32 j = 0; j < n; j++) {
                float pj = sh.s[r * a.tk + j];
                if (e < d) a0 += pj * sh.kv[j * pitch + e];
                if (e + ATT_THREADS < d) a1 += pj * sh.kv[j * pitch + e + ATT_THREADS];
            }
            acc0[r] = a0;
            acc1[r] = a1;
        }
    }
    __syncthreads();
}

extern "C" __global__ void __launch_bounds__(ATT_THREADS) attention(const float* q, const float* kc, const float* vc, float* out, ATT_SHAPE_PARAMS) {
    __shared__ AttShared sh;
    AttShape a = ATT_SHAPE;
    u32 bi = block_index(), per_group = att_blocks_per_group(a);
    if (bi >= a.g * per_group) return;
    u32 gi = bi / per_group, first = (bi % per_group) * a.qb;
    u32 rows = min(a.qb, a.t * (a.heads / a.g) - first), ti, h;
    att_query(a, gi, first, rows - 1, &ti, &h);
    float acc0[ATT_MAX_QB], acc1[ATT_MAX_QB];
    att_block(a, sh, q, kc, vc, gi, first, rows, 0, att_visible(a, ti), acc0, acc1);
    u32 e = threadIdx.x;
#pragma unroll
    for (u32 r = 0; r < ATT_MAX_QB; r++) {
        if (r >= rows) break;
        att_query(a, gi, first, r, &ti, &h);
        float* o = out + ((u64)ti * a.heads + h) * a.d;
        float inv = 1.0f / sh.l[r];
        if (e < a.d) o[e] = acc0[r] * inv;
        if (e + ATT_THREADS < a.d) o[e + ATT_THREADS] = acc1[r] * inv;
    }
}

// Split-KV decode attention (flash-decoding), for few blocks over long caches.
// attention_split: block (query block, split) covers keys split * span .. + span and writes
// each row's running max, sum and unnormalised output to partial[(row * splits + s) * (d + 2)]
// (row = t * H + h). attention_combine: one block per row rescales and sums the splits.
extern "C" __global__ void __launch_bounds__(ATT_THREADS) attention_split(const float* q, const float* kc, const float* vc, float* partial,
                                                                         ATT_SHAPE_PARAMS, u32 splits, u32 span) {
    __shared__ AttShared sh;
    AttShape a = ATT_SHAPE;
    u32 bi = block_index(), per_group = att_blocks_per_group(a);
    if (bi >= a.g * per_group * splits) return;
    u32 s = bi % splits, qbi = bi / splits;
    u32 gi = qbi / per_group, first = (qbi % per_group) * a.qb;
    u32 rows = min(a.qb, a.t * (a.heads / a.g) - first), ti, h;
    att_query(a, gi, first, rows - 1, &ti, &h);
    u32 begin = s * span;
    float acc0[ATT_MAX_QB], acc1[ATT_MAX_QB];
    att_block(a, sh, q, kc, vc, gi, first, rows, begin, min(att_visible(a, ti), begin + span), acc0, acc1);
    u32 e = threadIdx.x;
#pragma unroll
    for (u32 r = 0; r < ATT_MAX_QB; r++) {
        if (r >= rows) break;
        att_query(a, gi, first, r, &ti, &h);
        float* o = partial + (((u64)ti * a.heads + h) * splits + s) * (a.d + 2);
        if (e < a.d) o[e] = acc0[r];
        if (e + ATT_THREADS < a.d) o[e + ATT_THREADS] = acc1[r];
        if (e == 0) { o[a.d] = sh.m[r]; o[a.d + 1] = sh.l[r]; }
    }
}

extern "C" __global__ void __launch_bounds__(128) attention_combine(const float* partial, float* out, u32 rows, u32 d, u32 splits) {
    u32 bi = block_index();
    if (bi >= rows) return;
    const float* base = partial + (u64)bi * splits * (d + 2);
    float m = -3.402823466e38f;
    for (u32 s = 0; s < splits; s++) {
        float l = base[s * (d + 2) + d + 1];
        if (l > 0.0f) m = fmaxf(m, base[s * (d + 2) + d]);
    }
    float total = 0.0f;
    for (u32 s = 0; s < splits; s++) {
        float l = base[s * (d + 2) + d + 1];
        if (l > 0.0f) total += l * expf(base[s * (d + 2) + d] - m);
    }
    for (u32 i = threadIdx.x; i < d; i += blockDim.x) {
        float acc = 0.0f;
        for (u32 s = 0; s < splits; s++) {
            const float* ps = base + s * (d + 2);
            if (ps[d + 1] > 0.0f) acc += ps[i] * expf(ps[d] - m);
        }
        out[(u64)bi * d + i] = acc / total;
    }
}
