//! Fixture access shared by the integration tests.
#![allow(dead_code)]

use std::collections::HashMap;
use std::path::PathBuf;

/// The encoder fixture, read from the codec crate's copy (never from shared/).
pub fn fixture_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../codec/tests/fixtures/encode")
}

pub fn read_bytes(file: &str) -> Vec<u8> {
    let path = fixture_dir().join(file);
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

pub fn read_json(file: &str) -> serde_json::Value {
    serde_json::from_slice(&read_bytes(file)).expect("fixture JSON")
}

/// Every f32 tensor of a safetensors file: name -> (shape, values).
pub fn read_tensors(file: &str) -> HashMap<String, (Vec<usize>, Vec<f32>)> {
    let bytes = read_bytes(file);
    let st = safetensors::SafeTensors::deserialize(&bytes).expect("safetensors");
    st.tensors()
        .into_iter()
        .map(|(name, view)| {
            assert_eq!(view.dtype(), safetensors::Dtype::F32, "{name}");
            let values = view
                .data()
                .chunks_exact(4)
                .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                .collect();
            (name, (view.shape().to_vec(), values))
        })
        .collect()
}

/// ‖ours − reference‖ / ‖reference‖, in f64.
pub fn rel_l2(ours: &[f32], reference: &[f32]) -> f64 {
    assert_eq!(ours.len(), reference.len(), "length mismatch");
    let (mut num, mut den) = (0.0f64, 0.0f64);
    for (&a, &b) in ours.iter().zip(reference) {
        num += (f64::from(a) - f64::from(b)).powi(2);
        den += f64::from(b).powi(2);
    }
    (num / den.max(f64::MIN_POSITIVE)).sqrt()
}

/// Columns `0..cols` of a row-major `[rows, full_cols]` matrix.
pub fn head_columns(m: &[f32], rows: usize, full_cols: usize, cols: usize) -> Vec<f32> {
    (0..rows)
        .flat_map(|r| m[r * full_cols..r * full_cols + cols].iter().copied())
        .collect()
}
