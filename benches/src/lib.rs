//! Criterion benchmarks live in `benches/`; workloads come from `uniaudio_runtime::bench`.
