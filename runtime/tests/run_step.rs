//! `Backend::run_step` on the CPU: a step runs on a pool thread, a nested step inline,
//! and steps from several threads sharing one backend all finish, each with the result
//! it gives alone.

use std::sync::{mpsc, Arc};
use std::time::Duration;

use uniaudio_runtime::dtype::f32_to_bytes;
use uniaudio_runtime::{ops, Backend, Cpu, DType, Tensor, WeightLayout};

#[test]
fn a_step_runs_on_a_pool_thread_and_a_nested_step_inline() {
    let b = Cpu::new();
    let (outer, inner) = b.run_step(|| (rayon::current_thread_index(), b.run_step(rayon::current_thread_index)));
    assert!(outer.is_some(), "the step ran outside the pool");
    assert_eq!(outer, inner, "the nested step moved to another thread");
}

/// Twenty chained products (each splits across the pool); the last output's bytes.
fn chained_products(b: &Cpu, x0: &[f32], w: &Tensor<Cpu>, rows: usize, k: usize) -> Vec<u8> {
    let x = b.upload(DType::F32, &[rows, k], &f32_to_bytes(x0, DType::F32)).unwrap();
    let y = b.alloc(DType::F32, &[rows, k]).unwrap();
    for i in 0..20 {
        let (src, dst) = if i % 2 == 0 { (&x, &y) } else { (&y, &x) };
        ops::matmul(b, src, w, dst, WeightLayout::OutIn, false).unwrap();
    }
    b.download(&x).unwrap()
}

#[test]
fn steps_from_several_threads_on_one_backend_all_finish() {
    let (rows, k) = (48, 256);
    let b = Arc::new(Cpu::new());
    let wv: Vec<f32> = (0..k * k).map(|i| (((i * 7919) % 1013) as f32 / 1013.0 - 0.5) * 0.2).collect();
    let w = Arc::new(b.upload(DType::F32, &[k, k], &f32_to_bytes(&wv, DType::F32)).unwrap());
    let inputs: Vec<Vec<f32>> = (0..6).map(|s| (0..rows * k).map(|i| ((i * 31 + s * 17) % 101) as f32 / 101.0 - 0.5).collect()).collect();
    let alone: Vec<Vec<u8>> = inputs.iter().map(|x| chained_products(&b, x, &w, rows, k)).collect();

    let (done, finished) = mpsc::channel();
    for (s, x) in inputs.into_iter().enumerate() {
        let (b, w, done) = (b.clone(), w.clone(), done.clone());
        std::thread::spawn(move || {
            let got: Vec<Vec<u8>> = (0..4).map(|_| b.run_step(|| chained_products(&b, &x, &w, rows, k))).collect();
            done.send((s, got)).unwrap();
        });
    }
    for _ in 0..alone.len() {
        // A step nested inside another's op would wait forever for the backend's lock.
        let (s, got) = finished.recv_timeout(Duration::from_secs(60)).expect("a step never finished (deadlock)");
        assert!(got.iter().all(|g| *g == alone[s]), "thread {s}: a step's result differs from the same step alone");
    }
}
