// The precision of the tensor-core kernels on the CPU emulator (emu.h): the split-TF32
// GEMM, implicit-GEMM convolutions (and their CUDA-core twins) and attention against
// float64 references, bounded far tighter than the op harness's 1e-7 (which the
// `uniaudio-cuda-emu` crate runs over every kernel). Built and run by
// scripts/emulate-cuda-kernels.
#include "all.cpp"

#include <cstdio>
#include <random>
#include <string>

static std::mt19937 rng(1234);
static std::vector<float> random_vec(size_t n, float scale = 1.0f) {
    std::uniform_real_distribution<float> d(-scale, scale);
    std::vector<float> v(n);
    for (auto& x : v) x = d(rng);
    return v;
}
static bf16_t to_bf16(float f) {
    unsigned b = __float_as_uint(f);
    b += 0x7fff + ((b >> 16) & 1);
    return bf16_t{(u16)(b >> 16)};
}

static int failures = 0;
// The bound is far below the f32 paths' 1e-7: these kernels keep float64-level agreement to ~1e-13,
// and a tensor-core product that dropped the low TF32 half of its operands (~3e-8) must fail.
static void check(const std::string& name, const std::vector<float>& got, const std::vector<double>& want, double tol = 1e-10) {
    double err = 0, ref = 0;
    for (size_t i = 0; i < want.size(); i++) {
        err += (got[i] - want[i]) * (got[i] - want[i]);
        ref += want[i] * want[i];
    }
    double nmse = err / (ref > 0 ? ref : 1);
    bool ok = nmse <= tol && std::isfinite(nmse);
    std::printf("%s %-48s NMSE %.3e\n", ok ? "ok  " : "FAIL", name.c_str(), nmse);
    failures += !ok;
}

static double gelu(double y) { return 0.5 * y * (1 + std::tanh(0.7978845608028654 * (y + 0.044715 * y * y * y))); }

// out = act(x . w^T + bias), or out += gate * (...), over bf16 weights.
static void gemm_case(bool tensor_cores, u32 m, u32 n, u32 k, u32 act, bool gated) {
    auto x = random_vec((size_t)m * k), wf = random_vec((size_t)n * k), bf = random_vec(n), gate = random_vec(n), base = random_vec((size_t)m * n);
    std::vector<bf16_t> w(wf.size()), bias(n);
    for (size_t i = 0; i < wf.size(); i++) w[i] = to_bf16(wf[i]);
    for (u32 i = 0; i < n; i++) bias[i] = to_bf16(bf[i]);
    std::vector<float> out = base;
    std::vector<double> want(out.size());
    for (u32 r = 0; r < m; r++)
        for (u32 c = 0; c < n; c++) {
            double y = widen(bias[c]);
            for (u32 i = 0; i < k; i++) y += (double)x[(size_t)r * k + i] * widen(w[(size_t)c * k + i]);
            if (act == 1) y = gelu(y);
            want[(size_t)r * n + c] = gated ? base[(size_t)r * n + c] + gate[c] * y : y;
        }
    const float* g = gated ? gate.data() : nullptr;
    u32 tiles = ((m + 63) / 64) * ((n + 63) / 64);
    if (tensor_cores)
        emu::launch(tiles, dim3{128, 1, 1}, [&] { gemm_tc_bf16(x.data(), w.data(), bias.data(), g, out.data(), m, n, k, act, 0.0f, 0); });
    else
        emu::launch(tiles, dim3{16, 16, 1}, [&] { gemm_bf16(x.data(), w.data(), bias.data(), g, out.data(), m, n, k, act, 0.0f, 0); });
    check(std::string(tensor_cores ? "gemm_tc_bf16 " : "gemm_bf16 ") + std::to_string(m) + "x" + std::to_string(n) + "x" + std::to_string(k) +
              (gated ? " gated" : act ? " gelu" : ""),
          out, want);
}

static std::vector<double> attention_ref(const std::vector<float>& q, const std::vector<float>& kc, const std::vector<float>& vc, u32 t, u32 h, u32 g, u32 d,
                                         u32 cap, u32 kv_len, bool causal) {
    std::vector<double> out((size_t)t * h * d);
    for (u32 ti = 0; ti < t; ti++)
        for (u32 hi = 0; hi < h; hi++) {
            u32 gi = hi / (h / g), vis = causal ? kv_len - t + ti + 1 : kv_len;
            std::vector<double> s(vis);
            double mx = -1e300, sum = 0;
            for (u32 j = 0; j < vis; j++) {
                double dot = 0;
                for (u32 i = 0; i < d; i++) dot += (double)q[((size_t)ti * h + hi) * d + i] * kc[((size_t)gi * cap + j) * d + i];
                s[j] = dot / std::sqrt((double)d);
                mx = std::max(mx, s[j]);
            }
            for (auto& v : s) sum += (v = std::exp(v - mx));
            for (u32 i = 0; i < d; i++) {
                double acc = 0;
                for (u32 j = 0; j < vis; j++) acc += s[j] * vc[((size_t)gi * cap + j) * d + i];
                out[((size_t)ti * h + hi) * d + i] = acc / sum;
            }
        }
    return out;
}

static void attention_case(u32 t, u32 h, u32 g, u32 d, u32 kv_len, bool causal) {
    u32 cap = kv_len + 3;
    auto q = random_vec((size_t)t * h * d, 2.0f), kc = random_vec((size_t)g * cap * d, 2.0f), vc = random_vec((size_t)g * cap * d);
    std::vector<float> out((size_t)t * h * d, NAN);
    float scale = 1.0f / std::sqrt((float)d);
    u32 blocks = g * ((t * (h / g) + 63) / 64);
    if (d == 64) emu::launch(blocks, dim3{128, 1, 1}, [&] { attention_tc_d64(q.data(), kc.data(), vc.data(), out.data(), t, h, g, cap, kv_len, causal, scale); });
    else emu::launch(blocks, dim3{128, 1, 1}, [&] { attention_tc_d128(q.data(), kc.data(), vc.data(), out.data(), t, h, g, cap, kv_len, causal, scale); });
    char shape[96];
    std::snprintf(shape, sizeof shape, "attention_tc t%u h%u g%u d%u kv%u%s", t, h, g, d, kv_len, causal ? " causal" : "");
    check(shape, out, attention_ref(q, kc, vc, t, h, g, d, cap, kv_len, causal));
}

// Implicit-GEMM conv1d (strided, grouped, PReLU, accumulate) over bf16 weights, one GEMM
// per group; the harness's 16-bit convolutions are too small for these kernels.
static void conv1d_case(bool tensor_cores, u32 batch, u32 l_in, u32 c_in, u32 c_out, u32 k, u32 stride, u32 groups, u32 pad, bool prelu, bool acc) {
    u32 cg = c_in / groups, og = c_out / groups, l_out = (l_in + 2 * pad - k) / stride + 1;
    auto x = random_vec((size_t)batch * l_in * c_in), wf = random_vec((size_t)c_out * k * cg), bf = random_vec(c_out);
    auto base = random_vec((size_t)batch * l_out * c_out);
    std::vector<bf16_t> w(wf.size()), bias(c_out);
    for (size_t i = 0; i < wf.size(); i++) w[i] = to_bf16(wf[i]);
    for (u32 i = 0; i < c_out; i++) bias[i] = to_bf16(bf[i]);
    float slope = prelu ? 0.2f : 0.0f;
    std::vector<float> out = base;
    std::vector<double> want(out.size());
    for (u32 b = 0; b < batch; b++)
        for (u32 j = 0; j < l_out; j++)
            for (u32 o = 0; o < c_out; o++) {
                double y = widen(bias[o]);
                for (u32 kk = 0; kk < k; kk++) {
                    int u = (int)(j * stride + kk) - (int)pad;
                    if (u < 0 || u >= (int)l_in) continue;
                    for (u32 i = 0; i < cg; i++)
                        y += (double)widen(w[((size_t)o * k + kk) * cg + i]) * x[((size_t)b * l_in + u) * c_in + (o / og) * cg + i];
                }
                if (prelu && y < 0) y *= slope;
                size_t at = ((size_t)b * l_out + j) * c_out + o;
                want[at] = acc ? base[at] + y : y;
            }
    u32 blocks = groups * ((batch * l_out + 63) / 64) * ((og + 63) / 64);
    auto run = [&] {
        if (tensor_cores) conv1d_gemm_tc_bf16(x.data(), w.data(), bias.data(), out.data(), batch, l_in, c_in, l_out, c_out, k, stride, groups, 1, pad, 1, prelu, slope, acc);
        else conv1d_gemm_bf16(x.data(), w.data(), bias.data(), out.data(), batch, l_in, c_in, l_out, c_out, k, stride, groups, 1, pad, 1, prelu, slope, acc);
    };
    emu::launch(blocks, tensor_cores ? dim3{128, 1, 1} : dim3{16, 16, 1}, run);
    char name[96];
    std::snprintf(name, sizeof name, "%s b%u l%u %u->%u k%u s%u g%u", tensor_cores ? "conv1d_gemm_tc_bf16" : "conv1d_gemm_bf16", batch, l_in, c_in, c_out, k, stride,
                  groups);
    check(name, out, want);
}

// Implicit-GEMM channels-last conv2d (bias, accumulate, ReLU) over bf16 weights.
static void conv2d_case(bool tensor_cores, u32 batch, u32 h, u32 wd, u32 c_in, u32 c_out, u32 kh, u32 kw, u32 sh, u32 sw, u32 ph, u32 pw) {
    u32 oh = (h + 2 * ph - kh) / sh + 1, ow = (wd + 2 * pw - kw) / sw + 1;
    auto x = random_vec((size_t)batch * h * wd * c_in), wf = random_vec((size_t)c_out * kh * kw * c_in), bf = random_vec(c_out);
    auto base = random_vec((size_t)batch * oh * ow * c_out);
    std::vector<bf16_t> w(wf.size()), bias(c_out);
    for (size_t i = 0; i < wf.size(); i++) w[i] = to_bf16(wf[i]);
    for (u32 i = 0; i < c_out; i++) bias[i] = to_bf16(bf[i]);
    std::vector<float> out = base;
    std::vector<double> want(out.size());
    for (u32 b = 0; b < batch; b++)
        for (u32 i = 0; i < oh; i++)
            for (u32 j = 0; j < ow; j++)
                for (u32 o = 0; o < c_out; o++) {
                    double y = widen(bias[o]);
                    for (u32 p = 0; p < kh; p++)
                        for (u32 q = 0; q < kw; q++) {
                            int hi = (int)(i * sh + p) - (int)ph, wi = (int)(j * sw + q) - (int)pw;
                            if (hi < 0 || wi < 0 || hi >= (int)h || wi >= (int)wd) continue;
                            for (u32 c = 0; c < c_in; c++)
                                y += (double)widen(w[(((size_t)o * kh + p) * kw + q) * c_in + c]) * x[(((size_t)b * h + hi) * wd + wi) * c_in + c];
                        }
                    size_t at = (((size_t)b * oh + i) * ow + j) * c_out + o;
                    want[at] = std::max(0.0, base[at] + y);
                }
    u32 blocks = ((batch * oh * ow + 63) / 64) * ((c_out + 63) / 64);
    auto run = [&] {
        if (tensor_cores) conv2d_tc_bf16(x.data(), w.data(), bias.data(), out.data(), batch, h, wd, c_in, oh, ow, c_out, kh, kw, sh, sw, ph, pw, 1, 1);
        else conv2d_bf16(x.data(), w.data(), bias.data(), out.data(), batch, h, wd, c_in, oh, ow, c_out, kh, kw, sh, sw, ph, pw, 1, 1);
    };
    emu::launch(blocks, tensor_cores ? dim3{128, 1, 1} : dim3{16, 16, 1}, run);
    char name[96];
    std::snprintf(name, sizeof name, "%s b%u %ux%ux%u->%u k%ux%u s%ux%u", tensor_cores ? "conv2d_tc_bf16" : "conv2d_bf16", batch, h, wd, c_in, c_out, kh, kw, sh, sw);
    check(name, out, want);
}

int main() {
    for (bool tc : {true, false}) {
        gemm_case(tc, 70, 90, 50, 0, false);
        gemm_case(tc, 17, 130, 96, 1, false);
        gemm_case(tc, 64, 64, 64, 0, true);
        conv1d_case(tc, 2, 61, 24, 64, 3, 2, 1, 1, false, false);
        conv1d_case(tc, 1, 50, 32, 96, 5, 2, 2, 2, true, true);
        conv2d_case(tc, 2, 11, 9, 8, 70, 3, 3, 2, 2, 1, 1);
        conv2d_case(tc, 1, 7, 12, 5, 33, 2, 3, 1, 2, 0, 1);
    }
    attention_case(40, 8, 2, 64, 50, true);
    attention_case(24, 6, 2, 128, 24, false);
    attention_case(70, 2, 1, 64, 90, true);
    std::printf("%s: %d failed\n", failures ? "FAIL" : "ok", failures);
    return failures ? 1 : 0;
}
