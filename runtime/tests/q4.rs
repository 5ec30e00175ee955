//! 4-bit weights (Q4_0): the block format, files, and the CPU products (`exact`: equal to
//! the f32 products over the dequantized weights, bit for bit).

use std::collections::BTreeMap;

use uniaudio_runtime::cpu::Isa;
use uniaudio_runtime::dtype::{bytes_to_f32, f32_to_bytes, quantize_q4_0};
use uniaudio_runtime::weights::{ModelWeights, SafetensorsWriter, TensorSpec, Q4_METADATA_KEY, Q8_METADATA_KEY};
use uniaudio_runtime::{ops, Backend, Cpu, DType, RowOrder, WeightLayout};

fn values(n: usize, seed: usize) -> Vec<f32> {
    (0..n).map(|i| (((i * 7919 + seed * 31) % 2003) as f32 / 2003.0 - 0.5) * (1.0 + (i % 5) as f32)).collect()
}

#[test]
fn blocks_follow_the_llama_cpp_rule() {
    // The value of largest magnitude (-1) gives d = -1 / -8 = 0.125 and nibble 0; the others
    // take trunc(x / d + 8.5), at most 15.
    let mut block = vec![0f32; 32];
    block[..5].copy_from_slice(&[-1.0, 0.5, 0.25, 0.0, 0.999]);
    block[16..18].copy_from_slice(&[-0.5, 0.1]);
    let bytes = quantize_q4_0(&block);
    assert_eq!(bytes.len(), 18);
    assert_eq!(u16::from_le_bytes([bytes[0], bytes[1]]), half::f16::from_f32(0.125).to_bits());
    // Weight j < 16 is byte 2 + j's low nibble, weight 16 + j its high nibble.
    assert_eq!(&bytes[2..7], &[4 << 4, 12 | 9 << 4, 10 | 8 << 4, 8 | 8 << 4, 15 | 8 << 4]);
    assert!(bytes[7..].iter().all(|&b| b == 8 | 8 << 4));
    assert_eq!(bytes_to_f32(&bytes, DType::Q4_0)[..5], [-1.0, 0.5, 0.25, 0.0, 0.875]);
    assert_eq!(bytes_to_f32(&bytes, DType::Q4_0)[16..18], [-0.5, 0.125]);
    // A positive extreme gives a negative scale; it still maps to nibble 0.
    let positive = quantize_q4_0(&[2.0, -1.0].repeat(16));
    assert_eq!(half::f16::from_le_bytes([positive[0], positive[1]]).to_f32(), -0.25);
    assert_eq!(bytes_to_f32(&positive, DType::Q4_0)[..2], [2.0, -1.0]);
    // An all-zero block has scale 0 (-0, as 0 / -8 is) and stores every weight as 8; a
    // partial last block is padded with zeros.
    let zeros = quantize_q4_0(&[0.0; 32]);
    assert_eq!(half::f16::from_le_bytes([zeros[0], zeros[1]]).to_f32(), 0.0);
    assert!(zeros[2..].iter().all(|&b| b == 0x88));
    let partial = quantize_q4_0(&[2.0; 40]);
    assert_eq!(partial.len(), 36);
    assert_eq!(bytes_to_f32(&partial, DType::Q4_0)[40..], [0.0; 24]);
    assert_eq!(DType::Q4_0.bytes(64), 36);
    assert_eq!(DType::parse("q4"), Some(DType::Q4_0));
    // The error is at most one step of the block's scale (half a step, or a whole one
    // where +8 d clamps to 7 d), plus the scale's own f16 rounding.
    let v = values(4096, 1);
    let back = bytes_to_f32(&f32_to_bytes(&v, DType::Q4_0), DType::Q4_0);
    for (b, (chunk, got)) in v.chunks(32).zip(back.chunks(32)).enumerate() {
        let step = chunk.iter().fold(0f32, |m, x| m.max(x.abs())) / 8.0;
        for (x, y) in chunk.iter().zip(got) {
            assert!((x - y).abs() <= 1.01 * step + 1e-7, "block {b}: {x} -> {y}");
        }
    }
}

#[test]
fn files_store_blocks_as_listed_u8_rows() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("model.safetensors");
    let (w, v) = (values(3 * 64, 2), values(2 * 32, 3));
    let specs = vec![TensorSpec::new("a.weight", DType::Q4_0, &[3, 64]), TensorSpec::new("b.weight", DType::Q8_0, &[2, 32])];
    let mut writer = SafetensorsWriter::create(&path, specs, &BTreeMap::new()).unwrap();
    writer.write_tensor("a.weight", &f32_to_bytes(&w, DType::Q4_0)).unwrap();
    writer.write_tensor("b.weight", &f32_to_bytes(&v, DType::Q8_0)).unwrap();
    writer.finish().unwrap();
    let raw = safetensors::SafeTensors::read_metadata(&std::fs::read(&path).unwrap()).unwrap().1;
    let meta = raw.metadata().as_ref().unwrap();
    assert_eq!((meta[Q4_METADATA_KEY].as_str(), meta[Q8_METADATA_KEY].as_str()), ("a.weight", "b.weight"));
    assert_eq!(raw.info("a.weight").unwrap().shape, vec![3, 36]);
    let m = ModelWeights::from_file(&path).unwrap();
    let view = m.get_checked("a.weight", &[3, 64]).unwrap();
    assert_eq!(view.dtype(), DType::Q4_0);
    assert_eq!(view.to_f32(), bytes_to_f32(&f32_to_bytes(&w, DType::Q4_0), DType::Q4_0));
    assert_eq!(m.get("b.weight").unwrap().dtype(), DType::Q8_0);
    let bad = SafetensorsWriter::create(dir.path().join("bad.safetensors"), vec![TensorSpec::new("b", DType::Q4_0, &[2, 40])], &BTreeMap::new());
    assert!(bad.is_err_and(|e| e.to_string().contains("whole blocks")));
}

/// A file whose header lists the u8 tensor `w` of `shape` as q4_0 (and as q8_0 too if
/// `also_q8`).
fn listed_file(dir: &std::path::Path, shape: [usize; 2], also_q8: bool) -> std::path::PathBuf {
    let path = dir.join("model.safetensors");
    let len = shape[0] * shape[1];
    let q8 = if also_q8 { format!(r#","{Q8_METADATA_KEY}":"w""#) } else { String::new() };
    let header = format!(r#"{{"__metadata__":{{"{Q4_METADATA_KEY}":"w"{q8}}},"w":{{"dtype":"U8","shape":[{},{}],"data_offsets":[0,{len}]}}}}"#, shape[0], shape[1]);
    let mut bytes = (header.len() as u64).to_le_bytes().to_vec();
    bytes.extend_from_slice(header.as_bytes());
    bytes.extend(std::iter::repeat_n(0u8, len));
    std::fs::write(&path, bytes).unwrap();
    path
}

#[test]
fn listed_tensors_that_are_not_blocks_are_refused_by_name() {
    let dir = tempfile::tempdir().unwrap();
    // 34 bytes per row: whole Q8_0 blocks, not whole Q4_0 ones.
    let m = ModelWeights::from_file(&listed_file(dir.path(), [2, 34], false)).unwrap();
    let err = m.get("w").unwrap_err().to_string();
    assert!(err.contains("`w`") && err.contains("q4_0") && err.contains("18-byte"), "{err}");
    let err = ModelWeights::from_file(&listed_file(dir.path(), [2, 36], true)).map(|_| ()).unwrap_err().to_string();
    assert!(err.contains("`w`") && err.contains("both"), "{err}");
}

/// out = x · wᵀ with w given as `bytes` of `dtype` [n, k], on `isa`, rows in `order`.
fn product(isa: Isa, bytes: &[u8], dtype: DType, m: usize, k: usize, n: usize, order: RowOrder) -> Vec<f32> {
    let cpu = Cpu::with_isa(isa);
    let x = ops::upload_f32(&cpu, &[m, k], &values(m * k, 9), DType::F32).unwrap();
    let wt = cpu.upload(dtype, &[n, k], bytes).unwrap();
    let out = cpu.alloc(DType::F32, &[m, n]).unwrap();
    ops::matmul_rows(&cpu, &x, &wt, &out, WeightLayout::OutIn, false, order).unwrap();
    ops::download_f32(&cpu, &out).unwrap()
}

#[test]
fn cpu_q4_products_equal_f32_products_over_the_dequantized_weights() {
    for isa in [Isa::Avx512, Isa::Avx2, Isa::Scalar] {
        if !isa.available() {
            println!("SKIPPED {isa:?}: not available on this CPU");
            continue;
        }
        for (m, k, n) in [(1, 64, 37), (2, 3072, 9), (5, 96, 130), (40, 256, 70)] {
            let q = f32_to_bytes(&values(n * k, 5), DType::Q4_0);
            let dequantized = f32_to_bytes(&bytes_to_f32(&q, DType::Q4_0), DType::F32);
            for order in [RowOrder::Invariant, RowOrder::Free] {
                let a = product(isa, &q, DType::Q4_0, m, k, n, order);
                let b = product(isa, &dequantized, DType::F32, m, k, n, order);
                assert!(a.iter().map(|v| v.to_bits()).eq(b.iter().map(|v| v.to_bits())), "{isa:?} {m}x{k}x{n} {order:?}: q4_0 and f32 products differ");
            }
        }
    }
}

/// The 8-bit levels round x to 8-bit blocks: every row of a decode GEMV (3 rows) and of a
/// many-row product (9 rows, the integer GEMM) stays within the input's rounding of the
/// exact product (relative to the row's Σ|w·x|), and a row computed among others
/// (row-invariant order) gives the bits it gives alone.
#[test]
fn cpu_q4_fast_products_stay_near_and_rows_do_not_depend_on_the_batch() {
    let isa = Isa::Avx2Int8;
    if !isa.available() {
        return println!("SKIPPED {isa:?}: not available on this CPU");
    }
    let (k, n) = (3072, 41);
    let q = f32_to_bytes(&values(n * k, 6), DType::Q4_0);
    let w = bytes_to_f32(&q, DType::Q4_0);
    let x = values(9 * k, 9);
    for (m, order) in [(3, RowOrder::Invariant), (9, RowOrder::Free)] {
        let got = product(isa, &q, DType::Q4_0, m, k, n, order);
        for r in 0..m {
            for j in 0..n {
                let (row, xr) = (&w[j * k..(j + 1) * k], &x[r * k..(r + 1) * k]);
                let exact: f64 = row.iter().zip(xr).map(|(&a, &b)| a as f64 * b as f64).sum();
                let scale: f64 = row.iter().zip(xr).map(|(&a, &b)| (a as f64 * b as f64).abs()).sum();
                // 8-bit rounding of x: at most half a step (max|x| / 254) per element.
                let v = got[r * n + j] as f64;
                assert!((v - exact).abs() <= 0.01 * scale, "{m} rows {order:?}, row {r} column {j}: {v} vs {exact}");
            }
        }
    }
    let batch = product(isa, &q, DType::Q4_0, 3, k, n, RowOrder::Invariant);
    let alone = product(isa, &q, DType::Q4_0, 1, k, n, RowOrder::Invariant);
    assert!(batch[..n].iter().zip(&alone).all(|(a, b)| a.to_bits() == b.to_bits()), "row 0 depends on the batch");
}
