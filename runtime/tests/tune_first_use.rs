//! Tuning on first use (its own process: it sets the cache directory and the tuning mode
//! before any backend loads them): the first product of an undecided class times the
//! candidates, keeps one, stores it, and never re-times; results are the same bits.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use uniaudio_runtime::cpu::tune as cpu_tune;
use uniaudio_runtime::cpu::Isa;
use uniaudio_runtime::tune::TuneCache;
use uniaudio_runtime::wgpu::tune::{GEMV_CLASSES, GEMV_ROWS, GEMV_ROWS_CANDIDATES};
use uniaudio_runtime::{ops, Backend, Cpu, DType, RowOrder, Tensor, WeightLayout, Wgpu};

/// One cache directory and `UNIAUDIO_TUNE=on` for the whole process, set before any
/// backend reads them.
fn cache_dir() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap().keep();
        std::env::set_var("UNIAUDIO_CACHE_DIR", &dir);
        std::env::set_var("UNIAUDIO_TUNE", "on");
        dir
    })
}

fn inputs<B: Backend>(b: &B, m: usize, k: usize, n: usize) -> (Tensor<B>, Tensor<B>, Tensor<B>) {
    let x: Vec<f32> = (0..m * k).map(|i| ((i * 37) % 101) as f32 / 101.0 - 0.5).collect();
    let w: Vec<f32> = (0..n * k).map(|i| ((i * 53) % 97) as f32 / 97.0 - 0.5).collect();
    let w2: Vec<f32> = (0..n * k).map(|i| ((i * 29) % 89) as f32 / 89.0 - 0.5).collect();
    let up = |shape: &[usize], v: &[f32], dtype| ops::upload_f32(b, shape, v, dtype).unwrap();
    (up(&[m, k], &x, DType::F32), up(&[n, k], &w, DType::BF16), up(&[n, k], &w2, DType::BF16))
}

fn product_in<B: Backend>(b: &B, m: usize, k: usize, n: usize, rows: RowOrder) -> Vec<f32> {
    let (x, w, _) = inputs(b, m, k, n);
    let out = b.alloc(DType::F32, &[m, n]).unwrap();
    ops::matmul_rows(b, &x, &w, &out, WeightLayout::OutIn, false, rows).unwrap();
    ops::download_f32(b, &out).unwrap()
}

fn gate_up<B: Backend>(b: &B, m: usize, k: usize, n: usize) -> Vec<f32> {
    let (x, w, w2) = inputs(b, m, k, n);
    let out = b.alloc(DType::F32, &[m, n]).unwrap();
    ops::gate_up(b, &x, &w, &w2, &out, RowOrder::Invariant).unwrap();
    ops::download_f32(b, &out).unwrap()
}

fn product<B: Backend>(b: &B, m: usize, k: usize, n: usize) -> Vec<f32> {
    product_in(b, m, k, n, RowOrder::Free)
}

fn same_bits(a: &[f32], b: &[f32]) -> bool {
    a.len() == b.len() && a.iter().zip(b).all(|(x, y)| x.to_bits() == y.to_bits())
}

#[test]
fn the_first_product_of_a_class_tunes_it_once_and_stores_the_choice() {
    let dir = cache_dir();
    let cpu = Cpu::new();
    assert!(cpu_tune::status().contains("timed on first use"), "{}", cpu_tune::status());
    // K 1024: packed x of 400 rows is 1.6 MiB, so 1 MiB passes split it and larger do not.
    let (m, k, n) = (400, 1024, 24);
    assert!(!cpu_tune::is_decided(k));
    let before = {
        cpu_tune::use_defaults();
        let out = product(&cpu, m, k, n);
        cpu_tune::forget();
        out
    };
    let tuned = product(&cpu, m, k, n);
    assert!(cpu_tune::is_decided(k), "the product did not tune its class");
    assert!(same_bits(&before, &tuned), "tuning changed the result");
    let cache = TuneCache::open(&dir.join("tune"), cpu_tune::device_key(), &mut |w| panic!("{w}"));
    let entry = format!("{}/k<=2048", cpu_tune::GEMM_PASS);
    let choice = cache.get(&entry).unwrap_or_else(|| panic!("{entry} not stored in {}", cache.path().display()));
    assert_eq!(choice.medians_us.len(), 2, "two distinct pass plans timed: {choice:?}");
    assert_eq!(cpu_tune::gemm_pass_bytes(k).to_string(), choice.candidate);
    // Decided: a later product neither re-times nor rewrites.
    std::fs::remove_file(cache.path()).unwrap();
    product(&cpu, m, k, n);
    assert!(!cache.path().exists(), "a decided class was re-timed");
    // A small product (one pass whatever the candidate) leaves an undecided class alone.
    cpu_tune::forget();
    product(&cpu, 20, k, n);
    assert!(!cpu_tune::is_decided(k));
    // The decode GEMV (one row) tunes its tasks per thread the same way, same bits.
    let wide = 5000;
    cpu_tune::use_defaults();
    let before = product(&cpu, 1, k, wide);
    cpu_tune::forget();
    assert!(!cpu_tune::gemv_is_decided(wide));
    let tuned = product(&cpu, 1, k, wide);
    assert!(cpu_tune::gemv_is_decided(wide), "the GEMV did not tune its class");
    assert!(same_bits(&before, &tuned), "tuning the GEMV changed the result");
    let cache = TuneCache::open(&dir.join("tune"), cpu_tune::device_key(), &mut |w| panic!("{w}"));
    let entry = format!("{}/n>=4096", cpu_tune::GEMV_TASKS);
    let choice = cache.get(&entry).unwrap_or_else(|| panic!("{entry} not stored in {}", cache.path().display()));
    assert_eq!(choice.medians_us.len(), cpu_tune::GEMV_TASKS_CANDIDATES.len(), "{choice:?}");
    assert_eq!(cpu_tune::gemv_tasks_per_thread(wide).to_string(), choice.candidate);
    // The fast 8-bit GEMV tunes its prefetch distance on first use, same bits.
    if Isa::Avx2Int8.available() {
        let int8 = Cpu::with_isa(Isa::Avx2Int8);
        let q8_product = |m: usize, k: usize, n: usize| {
            let x: Vec<f32> = (0..m * k).map(|i| ((i * 37) % 101) as f32 / 101.0 - 0.5).collect();
            let w: Vec<f32> = (0..n * k).map(|i| ((i * 53) % 97) as f32 / 97.0 - 0.5).collect();
            let x = ops::upload_f32(&int8, &[m, k], &x, DType::F32).unwrap();
            let w = ops::upload_f32(&int8, &[n, k], &w, DType::Q8_0).unwrap();
            let out = int8.alloc(DType::F32, &[m, n]).unwrap();
            ops::matmul_rows(&int8, &x, &w, &out, WeightLayout::OutIn, false, RowOrder::Free).unwrap();
            ops::download_f32(&int8, &out).unwrap()
        };
        cpu_tune::use_defaults();
        // A weight smaller than Q8_PREFETCH_MIN_BYTES leaves the distance undecided.
        cpu_tune::forget();
        q8_product(1, 512, 600);
        assert!(!cpu_tune::q8_prefetch_is_decided(), "a cache-sized weight tuned the prefetch distance");
        // 1024 x 17000 Q8_0 weights: 17.6 MiB.
        cpu_tune::use_defaults();
        let before = q8_product(1, 1024, 17000);
        cpu_tune::forget();
        assert!(!cpu_tune::q8_prefetch_is_decided());
        let tuned = q8_product(1, 1024, 17000);
        assert!(cpu_tune::q8_prefetch_is_decided(), "the 8-bit GEMV did not tune its prefetch distance");
        assert!(same_bits(&before, &tuned), "tuning the prefetch distance changed the result");
        let cache = TuneCache::open(&dir.join("tune"), cpu_tune::device_key(), &mut |w| panic!("{w}"));
        let entry = format!("{}/q8_0", cpu_tune::Q8_PREFETCH);
        let choice = cache.get(&entry).unwrap_or_else(|| panic!("{entry} not stored in {}", cache.path().display()));
        assert_eq!(choice.medians_us.len(), cpu_tune::Q8_PREFETCH_FIRST_USE.len(), "{choice:?}");
        assert_eq!(cpu_tune::q8_prefetch_bytes().to_string(), choice.candidate);
    } else {
        println!("SKIPPED the 8-bit GEMV's first-use tuning: this CPU lacks AVX2");
    }
    cpu_tune::use_defaults();
}

#[test]
fn wgpu_tunes_gemv_rows_on_first_use_and_ahead_of_time() {
    let dir = cache_dir();
    let gpu = match Wgpu::new() {
        Ok(g) => g,
        Err(e) if !std::env::var("UNIAUDIO_REQUIRE_WGPU").is_ok_and(|v| v == "1") => return println!("SKIPPED wgpu: {e}"),
        Err(e) => panic!("wgpu backend required but unavailable: {e}"),
    };
    let key = gpu.tune_key();
    let entry = format!("{GEMV_ROWS}/{}", GEMV_CLASSES[0].0);
    let stored = || TuneCache::open(&dir.join("tune"), key.clone(), &mut |w| panic!("{w}")).get(&entry).cloned();
    if stored().is_none() {
        assert!(gpu.tune_status().contains("timed on first use"), "{}", gpu.tune_status());
    }
    // A decode-shaped product (a GEMV) tunes its class on first use and stores the choice.
    let (m, k, n) = (2, 520, 70);
    let first = product_in(&gpu, m, k, n, RowOrder::Invariant);
    let choice = stored().expect("the first GEMV stored its class's choice");
    assert_eq!(choice.medians_us.len(), GEMV_ROWS_CANDIDATES.len());
    assert_eq!(gpu.gemv_rows_in_use()[0].to_string(), choice.candidate);
    // A second adapter handle loads it instead of re-timing.
    let again = Wgpu::new().unwrap();
    assert!(again.tune_status().contains("tuned table"), "{}", again.tune_status());
    assert_eq!(again.gemv_rows_in_use()[0], gpu.gemv_rows_in_use()[0]);
    // Every candidate gives the same bits, for the projections and the gated MLP input.
    let mut reference: Option<(Vec<f32>, Vec<f32>)> = None;
    for &rows in &GEMV_ROWS_CANDIDATES {
        for class in 0..GEMV_CLASSES.len() {
            gpu.set_gemv_rows(class, rows).unwrap();
        }
        let got = (product_in(&gpu, m, k, n, RowOrder::Invariant), gate_up(&gpu, 3, 264, 40));
        match &reference {
            None => reference = Some(got),
            Some((p, g)) => assert!(same_bits(p, &got.0) && same_bits(g, &got.1), "{rows} rows per workgroup changed a result"),
        }
    }
    assert!(same_bits(&first, &reference.unwrap().0));
    assert!(gpu.set_gemv_rows(0, 3).is_err() && gpu.set_gemv_rows(9, 8).is_err());
    // Ahead of time, on small probes: every class times every candidate and keeps the fastest.
    for class in 0..GEMV_CLASSES.len() {
        let run = gpu.tune_gemv_probe(class, Some((1, 256, 96)), DType::BF16, 0, 1).unwrap();
        assert_eq!(run.timings.len(), GEMV_ROWS_CANDIDATES.len());
        assert_eq!(gpu.gemv_rows_in_use()[class], GEMV_ROWS_CANDIDATES[run.best]);
        assert!(run.bytes_per_timing > 0.0);
    }
}

/// A linear over `m` rows (with bias and GELU), a 1-D and a 2-D convolution: the ops the
/// tiled GEMM runs, each of its own class.
fn tiled_ops(gpu: &Wgpu, m: usize) -> [Vec<f32>; 3] {
    use uniaudio_runtime::{Conv2dParams, ConvParams, Epilogue, UnaryFn};
    let up = |shape: &[usize], seed: usize, dtype| {
        let n: usize = shape.iter().product();
        let v: Vec<f32> = (0..n).map(|i| ((i * seed) % 103) as f32 / 103.0 - 0.5).collect();
        ops::upload_f32(gpu, shape, &v, dtype).unwrap()
    };
    let (x, w, bias) = (up(&[m, 72], 37, DType::F32), up(&[90, 72], 53, DType::BF16), up(&[90], 31, DType::BF16));
    let out = gpu.alloc(DType::F32, &[m, 90]).unwrap();
    uniaudio_runtime::op::run(gpu, &uniaudio_runtime::Op::Linear { x: &x, w: &w, bias: Some(&bias), out: &out, epilogue: Epilogue::Act(UnaryFn::GeluErf) }).unwrap();
    let (cx, cw) = (up(&[2, 40, 24], 41, DType::F32), up(&[70, 3, 24], 43, DType::F32));
    let cout = gpu.alloc(DType::F32, &[2, 40, 70]).unwrap();
    let conv = ConvParams { pad_left: 2, dilation: 2, ..ConvParams::plain() };
    uniaudio_runtime::op::run(gpu, &uniaudio_runtime::Op::Conv1d { x: &cx, w: &cw, bias: None, out: &cout, conv }).unwrap();
    let (ix, iw) = (up(&[1, 9, 11, 5], 47, DType::F32), up(&[66, 3, 3, 5], 59, DType::F16));
    let iout = gpu.alloc(DType::F32, &[1, 9, 11, 66]).unwrap();
    let conv2 = Conv2dParams { stride: [1, 1], pad: [1, 1], accumulate: false, relu: true };
    uniaudio_runtime::op::run(gpu, &uniaudio_runtime::Op::Conv2d { x: &ix, w: &iw, bias: None, out: &iout, conv: conv2 }).unwrap();
    [ops::download_f32(gpu, &out).unwrap(), ops::download_f32(gpu, &cout).unwrap(), ops::download_f32(gpu, &iout).unwrap()]
}

#[test]
fn wgpu_tunes_the_gemm_tile_on_first_use_and_ahead_of_time() {
    use uniaudio_runtime::wgpu::tune::{GEMM_CLASSES, GEMM_TILE, GEMM_TILE_CANDIDATES};
    let dir = cache_dir();
    let gpu = match Wgpu::new() {
        Ok(g) => g,
        Err(e) if !std::env::var("UNIAUDIO_REQUIRE_WGPU").is_ok_and(|v| v == "1") => return println!("SKIPPED wgpu: {e}"),
        Err(e) => panic!("wgpu backend required but unavailable: {e}"),
    };
    let key = gpu.tune_key();
    let stored = |class: usize| TuneCache::open(&dir.join("tune"), key.clone(), &mut |w| panic!("{w}")).get(&format!("{GEMM_TILE}/{}", GEMM_CLASSES[class].0)).cloned();
    // The first linear (class gemm/m<256) and convolutions of each kind tune their classes.
    let first = tiled_ops(&gpu, 50);
    for class in [0, 2, 3] {
        let choice = stored(class).unwrap_or_else(|| panic!("class {} stored no choice", GEMM_CLASSES[class].0));
        assert_eq!(choice.medians_us.len(), GEMM_TILE_CANDIDATES.len());
        assert_eq!(gpu.gemm_tiles_in_use()[class].to_string(), choice.candidate);
    }
    assert!(stored(1).is_none(), "no product of 256 rows or more ran");
    // Every tile gives the same bits.
    for &tile in &GEMM_TILE_CANDIDATES {
        for class in 0..GEMM_CLASSES.len() {
            gpu.set_gemm_tile(class, tile).unwrap();
        }
        let got = tiled_ops(&gpu, 50);
        for (i, (a, b)) in first.iter().zip(&got).enumerate() {
            assert!(same_bits(a, b), "tile {tile} changed the result of tiled op {i}");
        }
    }
    assert!(gpu.set_gemm_tile(0, 48).is_err() && gpu.set_gemm_tile(4, 64).is_err());
    // Ahead of time, on small probes (rows, inner, columns).
    for class in 0..GEMM_CLASSES.len() {
        let run = gpu.tune_gemm_probe(class, Some((20, 36, 40)), DType::BF16, 0, 1).unwrap();
        assert_eq!(run.timings.len(), GEMM_TILE_CANDIDATES.len());
        assert_eq!(gpu.gemm_tiles_in_use()[class], GEMM_TILE_CANDIDATES[run.best]);
        assert!(run.flops_per_timing > 0.0);
    }
}
