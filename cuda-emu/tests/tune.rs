//! `cuda.gemv.warps` through the CUDA op mapping on the emulator (its own process: it sets
//! the cache directory and the tuning mode before any device loads them): the first GEMV
//! of an undecided class times the candidates on itself, keeps one, stores it, and never
//! re-times; results are the same bits; accumulating products never time themselves; a
//! later device loads the stored choice; ahead-of-time tuning leaves the class at its winner.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use uniaudio_cuda_emu::{CudaEmu, EmuOptions};
use uniaudio_runtime::cuda::launch::KernelDevice;
use uniaudio_runtime::cuda::tune::{self, GATE_UP_CLASS, GEMV_WARPS, GEMV_WARPS_CANDIDATES, GEMV_WARPS_DEFAULT};
use uniaudio_runtime::tune::TuneCache;
use uniaudio_runtime::{ops, Backend, DType, Precision, RowOrder, Tensor, WeightLayout};

fn cache_dir() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap().keep();
        std::env::set_var("UNIAUDIO_CACHE_DIR", &dir);
        std::env::set_var("UNIAUDIO_TUNE", "on");
        dir
    })
}

/// An emulator that tunes like a device (`UNIAUDIO_TUNE=on`, the test's cache).
fn emu() -> CudaEmu {
    cache_dir();
    let emu = CudaEmu::new(EmuOptions { tensor_cores: true, sm_count: 4, precision: Precision::Exact });
    emu.load_tuning();
    emu
}

fn inputs(b: &CudaEmu, m: usize, k: usize, n: usize) -> (Tensor<CudaEmu>, Tensor<CudaEmu>) {
    let x: Vec<f32> = (0..m * k).map(|i| ((i * 37) % 101) as f32 / 101.0 - 0.5).collect();
    let w: Vec<f32> = (0..n * k).map(|i| ((i * 53) % 97) as f32 / 97.0 - 0.5).collect();
    (ops::upload_f32(b, &[m, k], &x, DType::F32).unwrap(), ops::upload_f32(b, &[n, k], &w, DType::BF16).unwrap())
}

/// The gated MLP input of a 3 x 96 x 40 problem (class `gate_up`).
fn gate_up(b: &CudaEmu) -> Vec<f32> {
    let (m, k, n) = (3, 96, 40);
    let (x, w) = inputs(b, m, k, n);
    let (_, w2) = inputs(b, 1, k, n);
    let out = b.alloc(DType::F32, &[m, n]).unwrap();
    ops::gate_up(b, &x, &w, &w2, &out, RowOrder::Invariant).unwrap();
    ops::download_f32(b, &out).unwrap()
}

/// A 2 x 96 x 40 product (class `matmul/k<=4096`), optionally added onto ones.
fn product(b: &CudaEmu, accumulate: bool) -> Vec<f32> {
    let (m, k, n) = (2, 96, 40);
    let (x, w) = inputs(b, m, k, n);
    let out = ops::upload_f32(b, &[m, n], &vec![1.0; m * n], DType::F32).unwrap();
    ops::matmul_rows(b, &x, &w, &out, WeightLayout::OutIn, accumulate, RowOrder::Free).unwrap();
    ops::download_f32(b, &out).unwrap()
}

fn same_bits(a: &[f32], b: &[f32]) -> bool {
    a.len() == b.len() && a.iter().zip(b).all(|(x, y)| x.to_bits() == y.to_bits())
}

fn stored(b: &CudaEmu) -> TuneCache {
    TuneCache::open(&cache_dir().join("tune"), b.tune_key(), &mut |w| panic!("{w}"))
}

#[test]
fn the_first_gemv_of_a_class_tunes_it_once_and_a_later_device_loads_it() {
    let b = emu();
    let tuned = b.gemv_tuning();
    assert!(!tuned.is_decided(0), "a fresh cache left the class decided");
    // Accumulating products never time themselves (a dozen runs would add a dozen times).
    let before_acc = {
        let out = product(&b, true);
        assert!(!tuned.is_decided(0), "an accumulating product tuned its class");
        out
    };
    let reference = {
        tune::set_gemv_warps(&b, 0, GEMV_WARPS_DEFAULT).unwrap();
        let out = product(&b, false);
        tuned.reset(false);
        out
    };
    let first = product(&b, false);
    assert!(tuned.is_decided(0), "the product did not tune its class");
    assert!(same_bits(&reference, &first), "tuning changed the result");
    let entry = format!("{GEMV_WARPS}/matmul/k<=4096");
    let cache = stored(&b);
    let choice = cache.get(&entry).unwrap_or_else(|| panic!("{entry} not stored in {}", cache.path().display()));
    assert_eq!(choice.medians_us.len(), GEMV_WARPS_CANDIDATES.len(), "every candidate timed: {choice:?}");
    assert_eq!(choice.candidate, tuned.get(0).to_string());
    // Decided: a later product neither re-times nor rewrites.
    std::fs::remove_file(cache.path()).unwrap();
    assert!(same_bits(&first, &product(&b, false)));
    assert!(!cache.path().exists(), "a decided class was re-timed and stored again");
    // The accumulating product at the tuned value adds the same bits as at the default.
    assert!(same_bits(&before_acc, &product(&b, true)), "the tuned warps changed an accumulating product");
    // A later device loads what is stored, and never re-times.
    let mut cache = stored(&b);
    cache.insert(&entry, uniaudio_runtime::tune::Choice { candidate: "2".into(), medians_us: [("2".to_string(), 1.0)].into() });
    cache.save().unwrap();
    let later = emu();
    assert!(later.gemv_tuning().is_decided(0));
    assert_eq!(tune::gemv_warps_in_use(&later)[0], 2);
    assert!(same_bits(&first, &product(&later, false)));
}

#[test]
fn ahead_of_time_tuning_times_every_candidate_and_keeps_the_winner() {
    let b = emu();
    let run = tune::tune_gemv_probe(&b, GATE_UP_CLASS, Some((1, 64, 24)), DType::BF16, 0, 1).unwrap();
    assert_eq!(run.timings.len(), GEMV_WARPS_CANDIDATES.len());
    assert_eq!(tune::gemv_warps_in_use(&b)[GATE_UP_CLASS], GEMV_WARPS_CANDIDATES[run.best]);
    assert!(b.gemv_tuning().is_decided(GATE_UP_CLASS));
    assert!(run.bytes_per_timing >= (2 * 64 * 24 * 2) as f64);
    assert!(tune::tune_gemv_probe(&b, 3, None, DType::BF16, 0, 1).is_err(), "class 3 does not exist");
    assert!(tune::set_gemv_warps(&b, 0, 3).is_err(), "3 warps is not a candidate");
}

#[test]
fn every_candidate_computes_the_same_bits() {
    let b = CudaEmu::new(EmuOptions { tensor_cores: true, sm_count: 4, precision: Precision::Exact });
    let at = |warps: usize| {
        for class in 0..tune::GEMV_CLASSES.len() {
            tune::set_gemv_warps(&b, class, warps).unwrap();
        }
        (product(&b, false), product(&b, true), gate_up(&b))
    };
    let default = at(GEMV_WARPS_DEFAULT);
    for &warps in &GEMV_WARPS_CANDIDATES {
        let got = at(warps);
        assert!(same_bits(&got.0, &default.0) && same_bits(&got.1, &default.1), "{warps} warps changed a product");
        assert!(same_bits(&got.2, &default.2), "{warps} warps changed the gated MLP input");
    }
}
