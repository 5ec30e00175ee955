// rope: rotate-half at per-row positions from a host-built [P, D] cos|sin table.
// kv_append: cache[g, positions[t], :] = src[t, g, :]; with a RoPE table (non-null), K is
// rotated (rotate-half, cos | sin rows) on its way into the cache.
// attention: GQA over the first kv_len cache rows, one block per (query, head); keys are
// processed in chunks whose scores sit in shared memory (online softmax across chunks);
// thread d accumulates output dims d and d + blockDim.x.
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

#define CHUNK 1024

// Online softmax of one (query, head) over keys begin..end of kv group `gi`: running max,
// sum and the unnormalised output dimensions d0 = thread and d1 = thread + blockDim.x.
struct Partial { float m, l, acc0, acc1; };

__device__ Partial attend(const float* qs, float* scores, float* scratch, const float* kc, const float* vc, u32 gi, u32 d, u32 cap, float scale, u32 begin,
                          u32 end) {
    const float* kb = kc + (u64)gi * cap * d;
    const float* vb = vc + (u64)gi * cap * d;
    Partial r = {-3.402823466e38f, 0.0f, 0.0f, 0.0f};
    u32 d0 = threadIdx.x, d1 = threadIdx.x + blockDim.x;
    for (u32 c0 = begin; c0 < end; c0 += CHUNK) {
        u32 len = min(CHUNK, end - c0);
        float local_max = -3.402823466e38f;
        for (u32 j = threadIdx.x; j < len; j += blockDim.x) {
            const float* kr = kb + (u64)(c0 + j) * d;
            float s = 0.0f;
            for (u32 i = 0; i < d; i++) s += qs[i] * kr[i];
            s *= scale;
            scores[j] = s;
            local_max = fmaxf(local_max, s);
        }
        float m_new = fmaxf(r.m, block_max(local_max, scratch));
        float correction = expf(r.m - m_new);
        float local_sum = 0.0f;
        for (u32 j = threadIdx.x; j < len; j += blockDim.x) {
            float pj = expf(scores[j] - m_new);
            scores[j] = pj;
            local_sum += pj;
        }
        r.l = r.l * correction + block_sum(local_sum, scratch);
        r.acc0 *= correction;
        r.acc1 *= correction;
        __syncthreads();
        for (u32 j = 0; j < len; j++) {
            const float* vr = vb + (u64)(c0 + j) * d;
            float pj = scores[j];
            if (d0 < d) r.acc0 += pj * vr[d0];
            if (d1 < d) r.acc1 += pj * vr[d1];
        }
        r.m = m_new;
        __syncthreads();
    }
    return r;
}

// Loads query row `bi` into shared memory; returns the keys it may see.
__device__ u32 load_query(const float* q, float* qs, u32 bi, u32 ti, u32 t, u32 d, u32 kv_len, u32 causal) {
    for (u32 i = threadIdx.x; i < d; i += blockDim.x) qs[i] = q[(u64)bi * d + i];
    __syncthreads();
    return causal ? kv_len - t + ti + 1 : kv_len;
}

extern "C" __global__ void __launch_bounds__(128) attention(const float* q, const float* kc, const float* vc, float* out, u32 t, u32 heads, u32 g, u32 d,
                                                           u32 cap, u32 kv_len, u32 causal, float scale) {
    __shared__ float qs[256];
    __shared__ float scores[CHUNK];
    __shared__ float scratch[32];
    u32 bi = block_index();
    if (bi >= t * heads) return;
    u32 ti = bi / heads, h = bi % heads;
    u32 visible = load_query(q, qs, bi, ti, t, d, kv_len, causal);
    Partial r = attend(qs, scores, scratch, kc, vc, h / (heads / g), d, cap, scale, 0, visible);
    float* o = out + (u64)bi * d;
    u32 d0 = threadIdx.x, d1 = threadIdx.x + blockDim.x;
    if (d0 < d) o[d0] = r.acc0 / r.l;
    if (d1 < d) o[d1] = r.acc1 / r.l;
}

// Split-KV decode attention (flash-decoding), for few queries over long caches.
// attention_split: one block per (query, head, split); each split covers `span` keys and
// writes its running max, sum and unnormalised output to partial[(bi * splits + s) * (d + 2)].
// attention_combine: one block per (query, head) rescales and sums the splits.
extern "C" __global__ void __launch_bounds__(128) attention_split(const float* q, const float* kc, const float* vc, float* partial, u32 t, u32 heads, u32 g,
                                                                 u32 d, u32 cap, u32 kv_len, u32 causal, float scale, u32 splits, u32 span) {
    __shared__ float qs[256];
    __shared__ float scores[CHUNK];
    __shared__ float scratch[32];
    u32 blk = block_index();
    if (blk >= t * heads * splits) return;
    u32 s = blk % splits, bi = blk / splits;
    u32 ti = bi / heads, h = bi % heads;
    u32 visible = load_query(q, qs, bi, ti, t, d, kv_len, causal);
    u32 begin = s * span;
    Partial r = attend(qs, scores, scratch, kc, vc, h / (heads / g), d, cap, scale, begin, min(visible, begin + span));
    float* o = partial + (u64)blk * (d + 2);
    u32 d0 = threadIdx.x, d1 = threadIdx.x + blockDim.x;
    if (d0 < d) o[d0] = r.acc0;
    if (d1 < d) o[d1] = r.acc1;
    if (threadIdx.x == 0) { o[d] = r.m; o[d + 1] = r.l; }
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
