//! The fast precision's many-query attention on the AVX512-BF16 levels, from 256 visible
//! keys (the GEMMs' bf16 policy): per head, K and V are rounded once into the bf16 pair
//! layout of `gemm_bf16`'s 6 x 64 register tile (Kᵀ by 16 x 16 register transposes of
//! keys' rows of pairs, V by interleaving two keys' rounded rows), and per panel of six
//! queries (sixteen on the AMX level, where AMX tiles take the register tile's place:
//! `gemm_amx::rows_product`)
//! - the scores S = Q·Kᵀ/√D come from that tile (keys in lanes, head dimensions as the
//!   inner index),
//! - are biased and masked in f32; their exponentials (less the row's largest score) are
//!   rounded to bf16 pairs of keys as they are made, unnormalised,
//! - and O = P·V comes from the same tile (head dimensions in lanes, keys inner), each row
//!   scaled by 1 / its f32 sum of exponentials as it is copied out.
//!
//! The GEMM route (`attention_blocked`) packed K again for every block of queries, ran
//! P·V in f32 (64 output columns are below the bf16 policy) and spent the rest on short
//! products, reaching 37 % of the `vdpbf16ps` peak on a 1500-position encoder window.
//!
//! Each output depends only on its query row: a panel's rows share only the keys they
//! sweep, and keys past a row's visible ones enter as exact zeros of P (so a non-finite
//! value in such a key's V, which 0 · V turns into NaN, is the one exception, as in the
//! GEMM route). Query heads that share a K/V group share its rounded pairs.

use rayon::prelude::*;

use super::attention_blocked::Problem;
use super::gemm::{MR, NR};
use super::gemm_bf16::GROUPS;
use super::pair_tile::{round_pairs, tile, Runs, COLS};
use super::simd::Isa;
use super::view::SharedOut;
use crate::aligned::AlignedVec;

/// Query panels per task.
const PANELS_PER_TASK: usize = 8;
/// Queries per panel on the AMX level: a tile's rows (on the others, the pair tile's MR).
const AMX_ROWS: usize = 16;

/// out [T, H, D] = softmax(q·Kᵀ/√D + bias)·V per head; `isa` must have bf16 dot products.
pub fn attention(isa: Isa, p: &Problem, out: &mut [f32]) {
    attention_in_tasks(isa, p, out, PANELS_PER_TASK);
}

/// `attention` with `panels` query panels per task (results do not depend on it).
pub(crate) fn attention_in_tasks(isa: Isa, p: &Problem, out: &mut [f32], panels: usize) {
    assert!(isa.bf16_dot(), "the bf16 attention needs AVX512-BF16, not {}", isa.key());
    let (t, h, d) = (p.queries, p.heads, p.d);
    if t * h * d == 0 {
        return;
    }
    assert!(p.q.len() >= t * h * d && out.len() >= t * h * d, "attention q/out hold {} and {} floats, {t} x {h} x {d} needed", p.q.len(), out.len());
    let keys = (0..t).map(|i| (p.visible)(i)).max().unwrap_or(0);
    // One set of pairs per distinct K/V group, made by its first head (grouped-query
    // heads share theirs).
    let first: Vec<usize> = (0..h).map(|hd| (0..hd).find(|&o| std::ptr::eq((p.k)(o), (p.k)(hd)) && std::ptr::eq((p.v)(o), (p.v)(hd))).unwrap_or(hd)).collect();
    let pairs: Vec<Option<HeadPairs>> = (0..h).into_par_iter().map(|hd| (first[hd] == hd).then(|| HeadPairs::new((p.k)(hd), (p.v)(hd), keys, d))).collect();
    let heads: Vec<&HeadPairs> = first.iter().map(|&f| pairs[f].as_ref().expect("a group's first head made its pairs")).collect();
    let rows_per_panel = if isa.amx() { AMX_ROWS } else { MR };
    let (panels, row_panels) = (panels.max(1), t.div_ceil(rows_per_panel));
    let chunks = row_panels.div_ceil(panels);
    let shared = SharedOut::new(out);
    // A panel's buffers serve every task of a rayon job.
    (0..h * chunks).into_par_iter().for_each_init(|| Panel::new(keys, d, rows_per_panel), |panel, task| {
        let (hd, chunk) = (task / chunks, task % chunks);
        let last = ((chunk + 1) * panels).min(row_panels);
        let mut run_panels = || {
            for rp in chunk * panels..last {
                let (t0, rows) = (rp * rows_per_panel, (t - rp * rows_per_panel).min(rows_per_panel));
                // The next panel's query rows lie a row of every head apart: ask for them
                // while this panel's products run.
                if rp + 1 < last {
                    for i in t0 + rows_per_panel..(t0 + 2 * rows_per_panel).min(t) {
                        super::prefetch::to_l1(&p.q[(i * h + hd) * d..][..d]);
                    }
                }
                let o = panel.run(isa, p, heads[hd], hd, t0, rows);
                for (r, orow) in o.chunks_exact(d).enumerate() {
                    // SAFETY: (query t0 + r, head hd) belongs to this task only; in bounds
                    // (asserted above).
                    unsafe { shared.slice(((t0 + r) * h + hd) * d, d) }.copy_from_slice(orow);
                }
            }
        };
        // The tile state lasts the task (`Panel::product` runs inside it).
        if isa.amx() {
            super::gemm_amx::with_tiles(run_panels);
        } else {
            run_panels();
        }
    });
}

/// One head's K and V as tile operands. Each panel's pairs are zero padded to a multiple
/// of 16, so an AMX tile (16 pairs deep) never reads into the next panel.
struct HeadPairs {
    /// Kᵀ per part of 64 keys: GROUPS panels [d2p][16] of pairs of head dimensions.
    k: AlignedVec<u32>,
    /// V per part of 64 head dimensions: GROUPS panels [k2p][16] of pairs of keys.
    v: AlignedVec<u32>,
    /// Pairs of head dimensions; and of head dimensions and keys padded to a multiple of 16.
    d2: usize,
    d2p: usize,
    k2p: usize,
}

impl HeadPairs {
    /// K and V rows [keys, D] rounded to bf16 pairs (zero past the last key or dimension).
    fn new(k: &[f32], v: &[f32], keys: usize, d: usize) -> HeadPairs {
        assert!(k.len() >= keys * d && v.len() >= keys * d, "K/V hold {} and {} floats, {keys} x {d} needed", k.len(), v.len());
        let (d2, k2) = (d.div_ceil(2), keys.div_ceil(2));
        let (d2p, k2p) = (d2.next_multiple_of(16), k2.next_multiple_of(16));
        let mut kp = AlignedVec::zeroed(keys.div_ceil(COLS) * GROUPS * d2p * NR);
        let mut vp = AlignedVec::zeroed(d.div_ceil(COLS) * GROUPS * k2p * NR);
        // SAFETY (both calls): the bf16 attention runs only on levels with AVX512-BF16
        // (asserted by `attention_in_tasks`); the buffers are sized above.
        #[cfg(target_arch = "x86_64")]
        unsafe {
            for (panel, dst) in kp.chunks_exact_mut(d2p * NR).take(keys.div_ceil(NR)).enumerate() {
                crate::cpu::gemm_avx512::row_pair_panel(k, d, keys, panel * NR, dst);
            }
            for j in 0..k2 {
                let hi = (2 * j + 1 < keys).then(|| &v[(2 * j + 1) * d..(2 * j + 2) * d]);
                x86::v_pairs(&v[2 * j * d..(2 * j + 1) * d], hi, k2p * NR, &mut vp[j * NR..]);
            }
        }
        #[cfg(not(target_arch = "x86_64"))]
        unreachable!("AVX512-BF16 exists only on x86-64 ({})", kp.len() + vp.len());
        HeadPairs { k: kp, v: vp, d2, d2p, k2p }
    }
}

/// A task's buffers for one panel of queries (MR, or AMX_ROWS on the AMX level). Rows
/// past the panel's last query keep what an earlier panel left: their sums are computed
/// and never stored.
struct Panel {
    /// Queries per panel.
    rows: usize,
    /// Scores, then probabilities: a row per query of whole 64-key parts.
    s: AlignedVec<f32>,
    /// q · 1/√D as rows of pairs of head dimensions; P as rows of pairs of keys (aligned,
    /// with rows of whole cache lines: an AMX tile loads one a row).
    q: AlignedVec<u32>,
    p: AlignedVec<u32>,
    /// One part of O: a row per query of 64 head dimensions.
    o: AlignedVec<f32>,
    /// The panel's outputs, rows of D.
    out: Vec<f32>,
    /// A scaled query row.
    scaled: Vec<f32>,
    /// Row lengths of s, q and p.
    s_len: usize,
    q_len: usize,
    p_len: usize,
}

impl Panel {
    fn new(keys: usize, d: usize, rows: usize) -> Panel {
        let (s_len, q_len, p_len) = (keys.div_ceil(COLS) * COLS, d.div_ceil(32) * 16, keys.div_ceil(32) * 16);
        let (s, q, p) = (AlignedVec::zeroed(rows * s_len), AlignedVec::zeroed(rows * q_len), AlignedVec::zeroed(rows * p_len));
        Panel { rows, s, q, p, o: AlignedVec::zeroed(rows * COLS), out: vec![0f32; rows * d], scaled: vec![0f32; d], s_len, q_len, p_len }
    }

    /// The outputs of queries t0..t0 + rows (at most a panel's) of head hd, rows of D.
    fn run(&mut self, isa: Isa, p: &Problem, head: &HeadPairs, hd: usize, t0: usize, rows: usize) -> &[f32] {
        let (d, d2) = (p.d, head.d2);
        let scale = 1.0 / (d as f32).sqrt();
        for r in 0..rows {
            let q = &p.q[((t0 + r) * p.heads + hd) * d..][..d];
            self.scaled.iter_mut().zip(q).for_each(|(s, &v)| *s = v * scale);
            round_pairs(&self.scaled, &mut self.q[r * self.q_len..][..self.q_len]);
        }
        let seen: [usize; AMX_ROWS] = std::array::from_fn(|r| if r < rows { (p.visible)(t0 + r) } else { 0 });
        let visible = seen.iter().copied().max().unwrap_or(0);
        // S per part of 64 keys, stored straight into the score rows.
        for part in 0..visible.div_ceil(COLS) {
            let k = &head.k[part * GROUPS * head.d2p * NR..];
            self.product(isa, Operand::Queries, Runs::plain(d2), k, head.d2p * NR, part * COLS);
        }
        let pairs = visible.div_ceil(2);
        // P unnormalised (its largest value 1), each output row scaled by 1 / its sum.
        let mut inv = [0f32; AMX_ROWS];
        for (r, &seen) in seen.iter().enumerate().take(rows) {
            let row = &mut self.s[r * self.s_len..][..visible.div_ceil(COLS) * COLS];
            if let Some(bias) = p.bias {
                bias(hd, t0 + r, &mut row[..seen]);
            }
            let used = (2 * pairs).next_multiple_of(32).min(row.len());
            inv[r] = super::vexp::softmax_pairs(isa, row, seen, &mut self.p[r * self.p_len..][..used.div_ceil(32) * 16]);
        }
        // O per part of 64 head dimensions, over the visible keys.
        for part in 0..d.div_ceil(COLS) {
            self.product(isa, Operand::Probabilities, Runs::plain(pairs), &head.v[part * GROUPS * head.k2p * NR..], head.k2p * NR, 0);
            let cols = (d - part * COLS).min(COLS);
            for ((dst, src), inv) in self.out.chunks_exact_mut(d).zip(self.o.chunks_exact(COLS)).zip(inv).take(rows) {
                dst[part * COLS..][..cols].iter_mut().zip(src).for_each(|(o, &v)| *o = v * inv);
            }
        }
        &self.out[..rows * d]
    }

    /// Every panel row's 64 sums of its queries (into s from column `col`) or
    /// probabilities (into o) with `b`'s GROUPS panels `stride` apart, over `runs.pairs`
    /// pairs: on AMX tiles for a panel of AMX_ROWS, on the pair tile for one of MR.
    fn product(&mut self, isa: Isa, a: Operand, runs: Runs, b: &[u32], stride: usize, col: usize) {
        let (rows, a_len) = match a {
            Operand::Queries => (&self.q, self.q_len),
            Operand::Probabilities => (&self.p, self.p_len),
        };
        let (out, out_len) = match a {
            Operand::Queries => (&mut self.s[col..], self.s_len),
            Operand::Probabilities => (&mut self.o[..], COLS),
        };
        if isa.amx() {
            let steps = runs.pairs.div_ceil(16);
            assert!(self.rows == AMX_ROWS && steps * 16 <= a_len && b.len() >= (GROUPS - 1) * stride + steps * 16 * NR, "AMX attention operands");
            assert!(out.len() >= (AMX_ROWS - 1) * out_len + COLS, "AMX attention outputs");
            // SAFETY: inside `with_tiles` (a task's, in `attention_in_tasks`); the AMX_ROWS
            // rows hold a_len ≥ steps·16 pairs
            // (zero past the pairs that count: `round_pairs` and `softmax_pairs` pad them),
            // b's panels hold steps·16 rows (`HeadPairs` pads them), out holds AMX_ROWS rows
            // of 64 sums (asserted above).
            unsafe { super::gemm_amx::rows_product(rows.as_ptr(), a_len, Runs::plain(steps * 16), b.as_ptr(), stride, out.as_mut_ptr(), out_len) };
            return;
        }
        let a_rows: [&[u32]; MR] = std::array::from_fn(|r| &rows[r * a_len..][..a_len]);
        tile(runs, a_rows, b, stride, out.chunks_mut(out_len).map(|row| &mut row[..COLS]));
    }
}

/// The first operand of a panel's product: its rows of pairs.
#[derive(Clone, Copy)]
enum Operand {
    Queries,
    Probabilities,
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use std::arch::x86_64::*;

    use super::NR;
    use crate::cpu::vexp::x86::tail_mask;

    /// V rows `lo` and `hi` (`None`: zeros) as pairs of keys: column c's pair at
    /// dst[(c / 16) · stride + c % 16], a whole group of 16 at a time (zero past the row).
    #[target_feature(enable = "avx512f,avx512bw,avx512bf16")]
    pub(super) unsafe fn v_pairs(lo: &[f32], hi: Option<&[f32]>, stride: usize, dst: &mut [u32]) {
        let d = lo.len();
        let groups = d.div_ceil(NR);
        assert!(hi.is_none_or(|h| h.len() == d) && (groups == 0 || dst.len() >= (groups - 1) * stride + NR), "V pair bounds");
        // Halves [lo 0..16, hi 0..16] into pairs (lo c, hi c).
        let order = _mm512_set_epi16(
            31, 15, 30, 14, 29, 13, 28, 12, 27, 11, 26, 10, 25, 9, 24, 8, 23, 7, 22, 6, 21, 5, 20, 4, 19, 3, 18, 2, 17, 1, 16, 0,
        );
        for g in 0..groups {
            let mask = tail_mask((d - g * NR).min(NR));
            let a = _mm512_maskz_loadu_ps(mask, lo.as_ptr().add(g * NR));
            let b = match hi {
                Some(h) => _mm512_maskz_loadu_ps(mask, h.as_ptr().add(g * NR)),
                None => _mm512_setzero_ps(),
            };
            let halves = std::mem::transmute::<__m512bh, __m512i>(_mm512_cvtne2ps_pbh(b, a));
            _mm512_storeu_si512(dst.as_mut_ptr().add(g * stride) as *mut _, _mm512_permutexvar_epi16(order, halves));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::attention_blocked::{attention_in_blocks, ScoreBias};
    use super::*;

    use super::super::pair_tile::test_operands::values;

    /// K and V as tile operands hold each value's bf16 rounding (to nearest even) where the
    /// tile reads it, zeros elsewhere (each panel padded to a multiple of 16 pairs): even
    /// and odd D, key counts that end mid-panel and mid-pair, one key, D past one
    /// 16-column group and past 32 pairs.
    #[test]
    fn head_pairs_hold_each_value_rounded_in_its_place() {
        if !Isa::Avx512Bf16.available() {
            return eprintln!("skipped avx512bf16: this CPU lacks it");
        }
        let bf16 = |x: f32| half::bf16::from_f32(x).to_bits() as u32;
        for (keys, d) in [(37usize, 64usize), (300, 72), (1, 16), (16, 6), (33, 33), (70, 130)] {
            let (k, v) = (values(keys * d, 7, 3.0), values(keys * d, 8, 3.0));
            let pairs = HeadPairs::new(&k, &v, keys, d);
            let (d2, k2) = (d.div_ceil(2), keys.div_ceil(2));
            let (d2p, k2p) = (d2.next_multiple_of(16), k2.next_multiple_of(16));
            let mut want_k = vec![0u32; keys.div_ceil(COLS) * GROUPS * d2p * NR];
            for key in 0..keys {
                for j in 0..d2 {
                    let hi = if 2 * j + 1 < d { bf16(k[key * d + 2 * j + 1]) } else { 0 };
                    want_k[(key / NR) * d2p * NR + j * NR + key % NR] = bf16(k[key * d + 2 * j]) | hi << 16;
                }
            }
            let mut want_v = vec![0u32; d.div_ceil(COLS) * GROUPS * k2p * NR];
            for j in 0..k2 {
                for c in 0..d {
                    let hi = if 2 * j + 1 < keys { bf16(v[(2 * j + 1) * d + c]) } else { 0 };
                    want_v[((c / NR) * k2p + j) * NR + c % NR] = bf16(v[2 * j * d + c]) | hi << 16;
                }
            }
            assert!(*pairs.k == want_k[..], "K pairs, {keys} keys of {d}");
            assert!(*pairs.v == want_v[..], "V pairs, {keys} keys of {d}");
        }
    }

    /// Against the f32 attention (the exact level): causal with a partial last key part
    /// and two head-dimension parts, bidirectional with a bias and an odd head dimension,
    /// and a causal window whose panels' rows see different key counts (251-290). The
    /// error is bf16 rounding of q, K, P and V (NMSE well under the harness's 3e-5), and
    /// every split of the queries into tasks gives the same bits. At each bf16 level the
    /// CPU has: the pair tile's six-query panels, and AMX tiles' sixteen.
    #[test]
    fn matches_the_f32_attention_and_ignores_the_task_split() {
        for isa in [Isa::Avx512Bf16, Isa::Amx] {
            if !isa.available() {
                eprintln!("skipped {}: this CPU lacks it", isa.key());
                continue;
            }
            matches_the_f32_attention_at(isa);
        }
    }

    fn matches_the_f32_attention_at(isa: Isa) {
        let bias = |hd: usize, i: usize, row: &mut [f32]| row.iter_mut().enumerate().for_each(|(j, v)| *v += ((hd + i + 3 * j) % 7) as f32 * 0.3 - 0.9);
        // (queries, keys, heads, d, causal, bias)
        for (t, keys, h, d, causal, biased) in [(21, 300, 3, 72, true, false), (260, 260, 2, 33, false, true), (40, 290, 2, 64, true, false)] {
            let q = values(t * h * d, 1, 2.0);
            let (k, v) = (values(h * keys * d, 2, 2.0), values(h * keys * d, 3, 1.0));
            let kh = |hd: usize| &k[hd * keys * d..(hd + 1) * keys * d];
            let vh = |hd: usize| &v[hd * keys * d..(hd + 1) * keys * d];
            let visible = move |i: usize| if causal { keys - t + i + 1 } else { keys };
            let p = Problem { queries: t, heads: h, d, q: &q, k: &kh, v: &vh, visible: &visible, bias: biased.then_some(&bias as ScoreBias) };
            let mut want = vec![0f32; t * h * d];
            attention_in_blocks(Isa::Avx512, &p, &mut want, 64);
            let mut got = vec![f32::NAN; t * h * d];
            attention_in_tasks(isa, &p, &mut got, PANELS_PER_TASK);
            let (err, norm) = got.iter().zip(&want).fold((0f64, 0f64), |(e, n), (&g, &w)| (e + (g as f64 - w as f64).powi(2), n + (w as f64).powi(2)));
            let nmse = err / norm;
            eprintln!("{}: t {t}, keys {keys}, d {d}: NMSE {nmse:.2e}", isa.key());
            assert!(nmse < 1e-5, "{}: t {t}, keys {keys}, d {d}: NMSE {nmse:.2e}", isa.key());
            for panels in [1, 3, 100] {
                let mut split = vec![f32::NAN; t * h * d];
                attention_in_tasks(isa, &p, &mut split, panels);
                assert!(split.iter().zip(&got).all(|(a, b)| a.to_bits() == b.to_bits()), "{panels} panels per task differ");
            }
        }
    }
}
