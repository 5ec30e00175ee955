// out[n, :] = table[ids[n], :];  codebook sum: out[n, :] = sum_k mask[n,k] ? table[k*card + codes[n,k], :].
template <typename W>
__device__ void embed_rows(const W* table, const u32* ids, float* out, u32 n, u32 cols) {
    u32 i = grid_index();
    if (i >= n * cols) return;
    u32 r = i / cols, c = i % cols;
    out[i] = widen(table[(u64)ids[r] * cols + c]);
}

template <typename W>
__device__ void embed_codebook_sum(const W* table, const u32* codes, const u32* mask, float* out, u32 frames, u32 cols, u32 books, u32 card) {
    u32 i = grid_index();
    if (i >= frames * cols) return;
    u32 f = i / cols, c = i % cols;
    float s = 0.0f;
    for (u32 k = 0; k < books; k++) {
        if (mask[f * books + k] != 0) s += widen(table[((u64)k * card + codes[f * books + k]) * cols + c]);
    }
    out[i] = s;
}

#define EMBED(S, W) \
    extern "C" __global__ void embed_rows_##S(const W* t, const u32* ids, float* out, u32 n, u32 cols) { embed_rows(t, ids, out, n, cols); } \
    extern "C" __global__ void embed_codebook_sum_##S(const W* t, const u32* codes, const u32* mask, float* out, u32 frames, u32 cols, u32 books, u32 card) { \
        embed_codebook_sum(t, codes, mask, out, frames, cols, books, card); }
FOR_WEIGHT_TYPES(EMBED)
