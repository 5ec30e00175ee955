//! 8-bit weights (Q8_0): the block format, files, views, validation, and the CPU
//! products (which must equal the f32 products over the dequantized weights, bit for bit).

use std::collections::BTreeMap;

use uniaudio_runtime::cpu::Isa;
use uniaudio_runtime::dtype::{bytes_to_f32, f32_to_bytes, quantize_q8_0};
use uniaudio_runtime::weights::{ModelWeights, SafetensorsWriter, TensorSpec, Q8_METADATA_KEY};
use uniaudio_runtime::{ops, Backend, Cpu, DType, RowOrder, Tensor, WeightLayout};

fn values(n: usize, seed: usize) -> Vec<f32> {
    (0..n).map(|i| (((i * 7919 + seed * 31) % 2003) as f32 / 2003.0 - 0.5) * (1.0 + (i % 5) as f32)).collect()
}

#[test]
fn blocks_follow_the_llama_cpp_rule() {
    // max |x| = 1: d = 1/127; halves round away from zero (63.5 -> 64, -0.5 -> -1).
    let mut block = vec![0f32; 32];
    block[..5].copy_from_slice(&[-1.0, 0.5, 0.25, 0.0, -0.5 / 127.0]);
    let bytes = quantize_q8_0(&block);
    assert_eq!(bytes.len(), 34);
    assert_eq!(u16::from_le_bytes([bytes[0], bytes[1]]), half::f16::from_f32(1.0 / 127.0).to_bits());
    assert_eq!(&bytes[2..7], &[(-127i8) as u8, 64, 32, 0, (-1i8) as u8]);
    assert!(bytes[7..].iter().all(|&b| b == 0));
    let d = half::f16::from_f32(1.0 / 127.0).to_f32();
    assert_eq!(bytes_to_f32(&bytes, DType::Q8_0)[..3], [-127.0 * d, 64.0 * d, 32.0 * d]);
    // An all-zero block has scale 0; a partial last block is padded with zeros.
    let zeros = quantize_q8_0(&[0.0; 32]);
    assert!(zeros.iter().all(|&b| b == 0));
    let partial = quantize_q8_0(&[2.0; 40]);
    assert_eq!(partial.len(), 68);
    assert!(partial[34 + 2 + 8..].iter().all(|&b| b == 0));
    assert_eq!(DType::Q8_0.bytes(64), 68);
    assert_eq!(DType::parse("q8"), Some(DType::Q8_0));
    // Quantization error is at most half a step of each block's scale.
    let v = values(4096, 1);
    let back = bytes_to_f32(&f32_to_bytes(&v, DType::Q8_0), DType::Q8_0);
    for (b, (chunk, got)) in v.chunks(32).zip(back.chunks(32)).enumerate() {
        let step = chunk.iter().fold(0f32, |m, x| m.max(x.abs())) / 127.0;
        for (x, y) in chunk.iter().zip(got) {
            // Half a step, plus the scale's own f16 rounding (2^-11 relative) times 127.
            assert!((x - y).abs() <= 0.57 * step + 1e-7, "block {b}: {x} -> {y}");
        }
    }
}

#[test]
fn files_store_blocks_as_listed_u8_rows() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("model.safetensors");
    let w = values(3 * 64, 2);
    let specs = vec![TensorSpec::new("a.weight", DType::Q8_0, &[3, 64]), TensorSpec::new("norm", DType::F32, &[5])];
    let mut writer = SafetensorsWriter::create(&path, specs, &BTreeMap::new()).unwrap();
    writer.write_tensor("a.weight", &f32_to_bytes(&w, DType::Q8_0)).unwrap();
    writer.write_tensor("norm", &f32_to_bytes(&values(5, 3), DType::F32)).unwrap();
    writer.finish().unwrap();
    let raw = safetensors::SafeTensors::read_metadata(&std::fs::read(&path).unwrap()).unwrap().1;
    assert_eq!(raw.metadata().as_ref().unwrap()[Q8_METADATA_KEY], "a.weight");
    let m = ModelWeights::from_file(&path).unwrap();
    assert_eq!(m.shape("a.weight"), Some(vec![3, 64]));
    let view = m.get_checked("a.weight", &[3, 64]).unwrap();
    assert_eq!(view.dtype(), DType::Q8_0);
    assert_eq!(view.to_f32(), bytes_to_f32(&f32_to_bytes(&w, DType::Q8_0), DType::Q8_0));
    // Rows that do not hold whole blocks cannot be written.
    let bad = SafetensorsWriter::create(dir.path().join("bad.safetensors"), vec![TensorSpec::new("b", DType::Q8_0, &[2, 40])], &BTreeMap::new());
    assert!(bad.is_err_and(|e| e.to_string().contains("whole blocks")));
}

#[test]
fn a_listed_tensor_that_is_not_blocks_is_refused_by_name() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("model.safetensors");
    let header = format!(r#"{{"__metadata__":{{"{Q8_METADATA_KEY}":"w"}},"w":{{"dtype":"U8","shape":[2,33],"data_offsets":[0,66]}}}}"#);
    let mut bytes = (header.len() as u64).to_le_bytes().to_vec();
    bytes.extend_from_slice(header.as_bytes());
    bytes.extend_from_slice(&[0u8; 66]);
    std::fs::write(&path, bytes).unwrap();
    let m = ModelWeights::from_file(&path).unwrap();
    let err = m.get("w").unwrap_err().to_string();
    assert!(err.contains("`w`") && err.contains("q8_0"), "{err}");
}

/// out = x · wᵀ with `w` in `dtype`, on `isa`, rows in `order`.
fn product(isa: Isa, w: &[f32], dtype: DType, m: usize, k: usize, n: usize, order: RowOrder) -> Vec<u32> {
    let cpu = Cpu::with_isa(isa);
    let x: Tensor<Cpu> = ops::upload_f32(&cpu, &[m, k], &values(m * k, 9), DType::F32).unwrap();
    let wt = ops::upload_f32(&cpu, &[n, k], w, dtype).unwrap();
    let out = cpu.alloc(DType::F32, &[m, n]).unwrap();
    ops::matmul_rows(&cpu, &x, &wt, &out, WeightLayout::OutIn, false, order).unwrap();
    ops::download_f32(&cpu, &out).unwrap().iter().map(|v| v.to_bits()).collect()
}

#[test]
fn cpu_q8_products_equal_f32_products_over_the_dequantized_weights() {
    for isa in [Isa::Avx512, Isa::Avx2, Isa::Scalar] {
        if !isa.available() {
            println!("SKIPPED {isa:?}: not available on this CPU");
            continue;
        }
        for (m, k, n) in [(1, 64, 37), (2, 3072, 9), (5, 96, 130), (40, 256, 70)] {
            let q = f32_to_bytes(&values(n * k, 5), DType::Q8_0);
            let dequantized = bytes_to_f32(&q, DType::Q8_0);
            for order in [RowOrder::Invariant, RowOrder::Free] {
                let a = product(isa, &dequantized, DType::Q8_0, m, k, n, order);
                let b = product(isa, &dequantized, DType::F32, m, k, n, order);
                assert!(a == b, "{isa:?} {m}x{k}x{n} {order:?}: q8_0 and f32 products differ");
            }
        }
    }
}
