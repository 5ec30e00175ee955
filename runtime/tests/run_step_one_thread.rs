//! `Backend::run_step` with a pool of one thread: a step on the pool's only thread and
//! ops issued directly from another thread on the same backend both finish (the step
//! never blocks the pool while the other thread's op waits for it).

use std::sync::{mpsc, Arc};
use std::time::Duration;

use uniaudio_runtime::dtype::f32_to_bytes;
use uniaudio_runtime::{ops, Backend, Cpu, DType, WeightLayout};

#[test]
fn a_step_and_direct_ops_share_a_one_thread_pool() {
    rayon::ThreadPoolBuilder::new().num_threads(1).build_global().expect("this test binary configures the global pool first");
    let (rows, k) = (48, 256);
    let b = Arc::new(Cpu::new());
    let bytes = |n: usize, s: usize| -> Vec<u8> { f32_to_bytes(&(0..n).map(|i| (((i * 31 + s) % 101) as f32 / 101.0 - 0.5) * 0.1).collect::<Vec<_>>(), DType::F32) };
    let w = Arc::new(b.upload(DType::F32, &[k, k], &bytes(k * k, 7)).unwrap());
    let products = move |b: &Cpu, w: &uniaudio_runtime::Tensor<Cpu>| {
        let x = b.upload(DType::F32, &[rows, k], &bytes(rows * k, 3)).unwrap();
        let y = b.alloc(DType::F32, &[rows, k]).unwrap();
        for _ in 0..200 {
            ops::matmul(b, &x, w, &y, WeightLayout::OutIn, false).unwrap();
        }
        b.download(&y).unwrap()
    };
    let (done, finished) = mpsc::channel();
    for in_step in [true, false] {
        let (b, w, done) = (b.clone(), w.clone(), done.clone());
        std::thread::spawn(move || {
            let out = if in_step { b.run_step(|| products(&b, &w)) } else { products(&b, &w) };
            done.send(out).unwrap();
        });
    }
    let a = finished.recv_timeout(Duration::from_secs(60)).expect("deadlock: neither caller finished");
    let b = finished.recv_timeout(Duration::from_secs(60)).expect("deadlock: one caller never finished");
    assert_eq!(a, b, "the same products differ between the step and the direct caller");
}
