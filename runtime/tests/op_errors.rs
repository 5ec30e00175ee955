//! Bad op arguments are errors that name the op and the offending tensor, never panics.

use uniaudio_runtime::{ops, Backend, Cpu, DType, Error, SampleParams, WeightLayout};

fn cpu() -> Cpu {
    Cpu::new()
}

#[test]
fn matmul_shape_mismatch_names_the_dimension() {
    let b = cpu();
    let x = b.alloc(DType::F32, &[1, 8]).unwrap();
    let w = b.alloc(DType::BF16, &[4, 9]).unwrap();
    let out = b.alloc(DType::F32, &[1, 4]).unwrap();
    let err = ops::matmul(&b, &x, &w, &out, WeightLayout::OutIn, false).unwrap_err();
    let msg = err.to_string();
    assert!(matches!(err, Error::Shape { op: "matmul", .. }), "{msg}");
    assert!(msg.contains("input dim") && msg.contains('8') && msg.contains('9'), "{msg}");
}

#[test]
fn wrong_dtype_is_rejected() {
    let b = cpu();
    let x = b.alloc(DType::BF16, &[2, 4]).unwrap();
    let w = b.alloc(DType::F32, &[4]).unwrap();
    let out = b.alloc(DType::F32, &[2, 4]).unwrap();
    let err = ops::rms_norm(&b, &x, &w, &out, 1e-5).unwrap_err();
    assert!(matches!(err, Error::DType { op: "rms_norm", got: DType::BF16, .. }), "{err}");
}

#[test]
fn output_overlapping_input_is_rejected() {
    let b = cpu();
    let buf = b.alloc(DType::F32, &[4, 8]).unwrap();
    let x = buf.narrow(0, 1).unwrap();
    let out = buf.narrow(0, 1).unwrap().reshape(&[1, 8]).unwrap();
    let w = b.alloc(DType::F32, &[8, 8]).unwrap();
    let err = ops::matmul(&b, &x, &w, &out, WeightLayout::OutIn, false).unwrap_err();
    assert!(matches!(err, Error::Aliasing { op: "matmul", .. }), "{err}");
    // Elementwise ops may write in place, but not into a shifted view.
    let a = buf.narrow(0, 2).unwrap();
    let shifted = buf.narrow(1, 2).unwrap();
    assert!(ops::add(&b, &a, &a, &a).is_ok());
    assert!(matches!(ops::add(&b, &a, &a, &shifted).unwrap_err(), Error::Aliasing { .. }));
}

#[test]
fn out_of_range_ids_and_positions_are_errors() {
    let b = cpu();
    let table = b.alloc(DType::F32, &[10, 4]).unwrap();
    let out = b.alloc(DType::F32, &[1, 4]).unwrap();
    let ids = ops::upload_u32(&b, &[1], &[10]).unwrap();
    let msg = ops::embed_rows(&b, &table, &ids, &out).unwrap_err().to_string();
    assert!(msg.contains("id 10") && msg.contains("10 rows"), "{msg}");

    let codes = ops::upload_u32(&b, &[1, 2], &[1, 5]).unwrap();
    let mask = ops::upload_u32(&b, &[1, 2], &[1, 1]).unwrap();
    let msg = ops::embed_codebook_sum(&b, &table, &codes, &mask, 5, &out).unwrap_err().to_string();
    assert!(msg.contains("codebook 1") && msg.contains("frame 0"), "{msg}");
    // A masked-off code is never read, so it may hold anything.
    let mask = ops::upload_u32(&b, &[1, 2], &[1, 0]).unwrap();
    ops::embed_codebook_sum(&b, &table, &codes, &mask, 5, &out).unwrap();

    let kv = b.alloc(DType::F32, &[1, 2, 4]).unwrap();
    let (kc, vc) = (b.alloc(DType::F32, &[2, 3, 4]).unwrap(), b.alloc(DType::F32, &[2, 3, 4]).unwrap());
    let pos = ops::upload_u32(&b, &[1], &[3]).unwrap();
    let msg = ops::kv_append(&b, &kv, &kv.clone(), &pos, &kc, &vc).unwrap_err().to_string();
    assert!(msg.contains("position 3") && msg.contains("3 positions"), "{msg}");
}

#[test]
fn attention_rejects_bad_lengths_and_groupings() {
    let b = cpu();
    let q = b.alloc(DType::F32, &[2, 6, 8]).unwrap();
    let out = b.alloc(DType::F32, &[2, 6, 8]).unwrap();
    let kc = b.alloc(DType::F32, &[4, 5, 8]).unwrap();
    let vc = b.alloc(DType::F32, &[4, 5, 8]).unwrap();
    assert!(ops::attention(&b, &q, &kc, &vc, &out, 3, true).unwrap_err().to_string().contains("not a multiple"));
    let kc = b.alloc(DType::F32, &[2, 5, 8]).unwrap();
    let vc = b.alloc(DType::F32, &[2, 5, 8]).unwrap();
    assert!(ops::attention(&b, &q, &kc, &vc, &out, 6, true).is_err(), "kv_len beyond capacity");
    assert!(ops::attention(&b, &q, &kc, &vc, &out, 1, true).is_err(), "fewer keys than causal queries");
    assert!(ops::attention(&b, &q, &kc, &vc, &out, 0, false).is_err(), "no keys");
    ops::attention(&b, &q, &kc, &vc, &out, 1, false).unwrap();
}

#[test]
fn sampling_parameters_are_checked() {
    let b = cpu();
    let x = b.alloc(DType::F32, &[1, 10]).unwrap();
    let out = b.alloc(DType::U32, &[1]).unwrap();
    let p = SampleParams { top_k: 5, temperature: 0.0, forbid_below: 0, seed: 1, counter: 0 };
    assert!(ops::top_k_sample(&b, &x, &out, p).unwrap_err().to_string().contains("temperature"));
    let p = SampleParams { temperature: 1.0, forbid_below: 10, ..p };
    assert!(ops::top_k_sample(&b, &x, &out, p).unwrap_err().to_string().contains("forbid_below"));
}

#[test]
fn host_transfers_check_sizes() {
    let b = cpu();
    assert!(b.upload(DType::F32, &[2, 2], &[0u8; 15]).is_err());
    let t = b.alloc(DType::U32, &[3]).unwrap();
    assert!(b.write(&t, &[0u8; 8]).is_err());
    b.write(&t, &[1u8; 12]).unwrap();
    assert!(b.alloc(DType::F32, &[usize::MAX, 4]).is_err(), "overflowing shape");
    assert!(t.narrow(2, 2).is_err());
    assert!(t.reshape(&[2, 2]).is_err());
}

/// Block-quantized weights (Q8_0, Q4_0): views keep whole 32-weight blocks, and the ops
/// that do not read blocks (a K-major product, an embedding) refuse them, naming the dtype.
#[test]
fn block_views_keep_whole_blocks_and_ops_take_blocks_only_where_they_can() {
    let b = cpu();
    let values: Vec<f32> = (0..256).map(|i| ((i * 7919 % 2003) as f32 / 2003.0 - 0.5) * 0.1).collect();
    for dtype in [DType::Q8_0, DType::Q4_0] {
        let name = dtype.to_string();
        let w = ops::upload_f32(&b, &[4, 64], &values, dtype).unwrap();
        assert!(w.narrow(1, 2).is_ok(), "{name}");
        assert!(w.reshape(&[8, 32]).is_ok(), "{name}");
        assert!(w.reshape(&[16, 16]).is_err(), "{name}");
        // Rows of 40 are not whole blocks, even with the bytes of 3 blocks.
        assert!(b.upload(dtype, &[2, 40], &vec![0u8; dtype.bytes(80)]).is_err(), "{name}");
        let x = ops::upload_f32(&b, &[1, 4], &[1.0; 4], DType::F32).unwrap();
        let out = b.alloc(DType::F32, &[1, 64]).unwrap();
        let err = ops::matmul(&b, &x, &w, &out, WeightLayout::InOut, false).unwrap_err().to_string();
        assert!(err.contains(&name) && err.contains('w'), "{err}");
        let ids = ops::upload_u32(&b, &[1], &[2]).unwrap();
        let err = ops::embed_rows(&b, &w, &ids, &out).unwrap_err().to_string();
        assert!(err.contains(&name), "{err}");
    }
}
