//! Model directories: single files, shards, unaligned offsets, and hostile files.
//! Every bad file must give an error naming the file or tensor, never a panic.

use std::collections::BTreeMap;
use std::path::Path;

use uniaudio_runtime::dtype::{bytes_to_f32, f32_to_bytes};
use uniaudio_runtime::weights::{ModelWeights, SafetensorsFile, SafetensorsWriter, TensorSpec};
use uniaudio_runtime::{ops, Backend, Cpu, DType, Error, WeightLayout};

fn write_model(path: &Path, tensors: &[(&str, DType, &[usize], Vec<f32>)]) {
    let specs = tensors.iter().map(|(n, d, s, _)| TensorSpec::new(*n, *d, s)).collect();
    let mut w = SafetensorsWriter::create(path, specs, &BTreeMap::new()).unwrap();
    for (n, d, _, v) in tensors {
        w.write_tensor(n, &f32_to_bytes(v, *d)).unwrap();
    }
    w.finish().unwrap();
}

/// A raw safetensors file: 8-byte length, header JSON (unpadded), data.
fn raw_file(path: &Path, header: &str, data: &[u8]) {
    let mut bytes = (header.len() as u64).to_le_bytes().to_vec();
    bytes.extend_from_slice(header.as_bytes());
    bytes.extend_from_slice(data);
    std::fs::write(path, bytes).unwrap();
}

fn ramp(n: usize) -> Vec<f32> {
    (0..n).map(|i| i as f32 * 0.5 - 3.0).collect()
}

#[test]
fn single_file_round_trips_zero_copy() {
    let dir = tempfile::tempdir().unwrap();
    write_model(&dir.path().join("model.safetensors"), &[("a.weight", DType::BF16, &[3, 4], ramp(12)), ("b", DType::F32, &[5], ramp(5))]);
    let m = ModelWeights::open(dir.path()).unwrap();
    let a = m.get_checked("a.weight", &[3, 4]).unwrap();
    assert_eq!(a.dtype(), DType::BF16);
    assert!(a.is_zero_copy());
    assert_eq!(a.to_f32(), ramp(12));
    assert_eq!(m.get("b").unwrap().to_f32(), ramp(5));
    assert!(!dir.path().join("model.safetensors.tmp").exists());

    // The CPU backend computes on the mapped bytes in place and refuses to write them.
    let cpu = Cpu::new();
    let w = cpu.upload_weight(&a).unwrap();
    let x = ops::upload_f32(&cpu, &[1, 4], &[1.0, 0.0, 0.0, 1.0], DType::F32).unwrap();
    let out = cpu.alloc(DType::F32, &[1, 3]).unwrap();
    ops::matmul(&cpu, &x, &w, &out, WeightLayout::OutIn, false).unwrap();
    assert_eq!(ops::download_f32(&cpu, &out).unwrap(), vec![-3.0 + -1.5, -1.0 + 0.5, 1.0 + 2.5]);
    assert!(matches!(cpu.write(&w, &[0u8; 24]).unwrap_err(), Error::ReadOnly { .. }));
}

#[test]
fn whole_line_tensors_start_on_cache_lines_and_the_data_has_no_holes() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("model.safetensors");
    // Written in this order; the 10-byte, 12-byte and 66-byte tensors are not whole lines
    // (the f32 one must not follow the 10-byte one, or it would lose its 4-byte alignment).
    let tensors: [(&str, DType, &[usize], Vec<f32>); 6] = [
        ("tiny", DType::BF16, &[5], ramp(5)),
        ("w1", DType::BF16, &[4, 32], ramp(128)),
        ("odd", DType::F32, &[3], ramp(3)),
        ("w2", DType::F32, &[16, 4], ramp(64)),
        ("tail", DType::F16, &[33], ramp(33)),
        ("w3", DType::BF16, &[32], ramp(32)),
    ];
    write_model(&path, &tensors);
    let bytes = std::fs::read(&path).unwrap();
    let header_len = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    let data = 8 + header_len;
    assert_eq!(data % 64, 0, "the data section starts on a line");
    let header: serde_json::Value = serde_json::from_slice(&bytes[8..data]).unwrap();
    let mut spans = Vec::new();
    for (name, dtype, shape, _) in &tensors {
        let o = &header[*name]["data_offsets"];
        let (start, end) = (o[0].as_u64().unwrap() as usize, o[1].as_u64().unwrap() as usize);
        assert_eq!(end - start, dtype.bytes(shape.iter().product()), "{name}");
        if (end - start) % 64 == 0 {
            assert_eq!((data + start) % 64, 0, "{name} starts on a line");
        }
        spans.push((start, end));
    }
    spans.sort();
    assert_eq!(spans[0].0, 0);
    assert!(spans.windows(2).all(|p| p[0].1 == p[1].0), "contiguous: {spans:?}");
    assert_eq!(data + spans.last().unwrap().1, bytes.len(), "nothing after the last tensor");

    let file = SafetensorsFile::open(&path).unwrap();
    for (name, _, _, values) in &tensors {
        let view = file.view(name).unwrap();
        assert_eq!(view.to_f32(), *values, "{name} reads back");
        assert!(view.is_zero_copy(), "{name} is read in place");
    }
}

#[test]
fn sharded_directory_with_index() {
    let dir = tempfile::tempdir().unwrap();
    write_model(&dir.path().join("model-00001-of-00002.safetensors"), &[("x", DType::F16, &[2, 2], ramp(4))]);
    write_model(&dir.path().join("model-00002-of-00002.safetensors"), &[("y", DType::F32, &[3], ramp(3)), ("z", DType::BF16, &[1], vec![2.0])]);
    let index = r#"{"metadata": {"total_size": 0}, "weight_map": {"x": "model-00001-of-00002.safetensors", "y": "model-00002-of-00002.safetensors", "z": "model-00002-of-00002.safetensors"}}"#;
    std::fs::write(dir.path().join("model.safetensors.index.json"), index).unwrap();
    let m = ModelWeights::open(dir.path()).unwrap();
    let mut names: Vec<_> = m.names().collect();
    names.sort();
    assert_eq!(names, ["x", "y", "z"]);
    assert_eq!(m.get("x").unwrap().to_f32(), ramp(4));
    assert_eq!(m.get("y").unwrap().to_f32(), ramp(3));
    assert_eq!(m.shape("z"), Some(vec![1usize]));
}

#[test]
fn unaligned_data_offsets_are_copied_not_misread() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("odd.safetensors");
    // A 1-byte u8-free prefix tensor is impossible, so shift the data start instead:
    // an unpadded header of odd length puts every tensor at an odd address.
    let values = ramp(6);
    let mut data = f32_to_bytes(&[7.0], DType::F32)[..2].to_vec(); // 2 bytes of a bf16
    data.extend(f32_to_bytes(&values, DType::F32));
    let header = r#"{"pad":{"dtype":"BF16","shape":[1],"data_offsets":[0,2]},"w":{"dtype":"F32","shape":[2,3],"data_offsets":[2,26]}}"#;
    let header = if (8 + header.len()).is_multiple_of(2) { format!("{header} ") } else { header.to_string() };
    raw_file(&path, &header, &data);
    let file = SafetensorsFile::open(&path).unwrap();
    let w = file.view("w").unwrap();
    assert!(!w.is_zero_copy(), "a misaligned f32 tensor must be copied");
    assert_eq!(w.to_f32(), values);
    assert_eq!(bytes_to_f32(w.bytes(), DType::F32), values);
}

fn open_err(header: &str, data: &[u8]) -> String {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.safetensors");
    raw_file(&path, header, data);
    match SafetensorsFile::open(&path) {
        Ok(f) => match f.view("t") {
            Ok(_) => panic!("bad file accepted: {header}"),
            Err(e) => e.to_string(),
        },
        Err(e) => {
            let msg = e.to_string();
            assert!(msg.contains("bad.safetensors"), "error does not name the file: {msg}");
            msg
        }
    }
}

#[test]
fn truncated_files_are_rejected() {
    let header = r#"{"t":{"dtype":"F32","shape":[4],"data_offsets":[0,16]}}"#;
    open_err(header, &[0u8; 12]);
    // Header length larger than the file.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("short.safetensors");
    std::fs::write(&path, 1000u64.to_le_bytes()).unwrap();
    assert!(SafetensorsFile::open(&path).is_err());
    std::fs::write(&path, [1u8, 2, 3]).unwrap();
    assert!(SafetensorsFile::open(&path).is_err());
    std::fs::write(&path, []).unwrap();
    assert!(SafetensorsFile::open(&path).is_err());
}

#[test]
fn lying_headers_are_rejected() {
    // Shape says 5 elements, offsets cover 4.
    open_err(r#"{"t":{"dtype":"F32","shape":[5],"data_offsets":[0,16]}}"#, &[0u8; 16]);
    // Overlapping ranges.
    open_err(r#"{"t":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"u":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}}"#, &[0u8; 12]);
    // A gap, and an end before the start.
    open_err(r#"{"t":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}}"#, &[0u8; 8]);
    open_err(r#"{"t":{"dtype":"F32","shape":[0],"data_offsets":[8,0]}}"#, &[0u8; 8]);
    // Shapes whose element count overflows.
    open_err(r#"{"t":{"dtype":"F32","shape":[4294967296,4294967296,16],"data_offsets":[0,16]}}"#, &[0u8; 16]);
    // Not JSON, not UTF-8.
    open_err("{not json", &[]);
    open_err("\u{0}\u{0}", &[]);
}

#[test]
fn unknown_and_unsupported_dtypes_are_named() {
    let msg = open_err(r#"{"t":{"dtype":"Q7","shape":[1],"data_offsets":[0,1]}}"#, &[0u8; 1]);
    assert!(msg.contains("safetensors"), "{msg}");
    // A dtype safetensors knows but the runtime does not compute with.
    let msg = open_err(r#"{"t":{"dtype":"F64","shape":[1],"data_offsets":[0,8]}}"#, &[0u8; 8]);
    assert!(msg.contains("`t`") && msg.contains("F64"), "{msg}");
}

#[test]
fn missing_tensor_and_wrong_shape_name_the_tensor() {
    let dir = tempfile::tempdir().unwrap();
    write_model(&dir.path().join("model.safetensors"), &[("w", DType::F32, &[2, 3], ramp(6))]);
    let m = ModelWeights::open(dir.path()).unwrap();
    let err = m.get("nope").unwrap_err();
    assert!(matches!(err, Error::MissingTensor { .. }) && err.to_string().contains("`nope`"), "{err}");
    let err = m.get_checked("w", &[3, 2]).unwrap_err().to_string();
    assert!(err.contains("`w`") && err.contains("[3, 2]") && err.contains("[2, 3]"), "{err}");
}

#[test]
fn bad_directories_and_indexes() {
    let dir = tempfile::tempdir().unwrap();
    assert!(ModelWeights::open(dir.path()).unwrap_err().to_string().contains("neither"));
    assert!(ModelWeights::open(dir.path().join("absent")).is_err());
    let index = dir.path().join("model.safetensors.index.json");
    std::fs::write(&index, r#"{"weight_map": {"a": "../escape.safetensors"}}"#).unwrap();
    assert!(ModelWeights::open(dir.path()).unwrap_err().to_string().contains("not a file name"));
    std::fs::write(&index, r#"{"weight_map": {"a": "missing.safetensors"}}"#).unwrap();
    assert!(ModelWeights::open(dir.path()).unwrap_err().to_string().contains("missing.safetensors"));
    write_model(&dir.path().join("s.safetensors"), &[("b", DType::F32, &[1], vec![1.0])]);
    std::fs::write(&index, r#"{"weight_map": {"a": "s.safetensors"}}"#).unwrap();
    assert!(ModelWeights::open(dir.path()).unwrap_err().to_string().contains("does not contain"));
    std::fs::write(&index, "[1, 2]").unwrap();
    assert!(ModelWeights::open(dir.path()).unwrap_err().to_string().contains("invalid index"));
}

#[test]
fn writer_refuses_out_of_order_or_incomplete_output() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("w.safetensors");
    let specs = vec![TensorSpec::new("a", DType::F32, &[2]), TensorSpec::new("b", DType::F32, &[1])];
    let mut w = SafetensorsWriter::create(&path, specs.clone(), &BTreeMap::new()).unwrap();
    assert!(w.write_tensor("b", &[0u8; 4]).is_err());
    assert!(w.write_tensor("a", &[0u8; 4]).is_err(), "wrong size");
    w.write_tensor("a", &[0u8; 8]).unwrap();
    assert!(w.finish().is_err());
    assert!(!path.exists() && !dir.path().join("w.safetensors.tmp").exists(), "nothing half-written is left");
}
