//! Writes `torch.save`-format archives (zip + protocol-2 pickle) of f32 state dicts, so
//! conversion tests need neither Python nor torch. Mirrors what torch writes: a dict of
//! state dicts whose values are `torch._utils._rebuild_tensor_v2(persistent storage, 0,
//! size, stride, False, OrderedDict())`, each storage stored uncompressed in `data/<key>`.

use std::io::Write;
use std::path::Path;

pub struct Tensor {
    pub name: String,
    pub shape: Vec<usize>,
    pub values: Vec<f32>,
}

fn unicode(out: &mut Vec<u8>, s: &str) {
    out.push(b'X');
    out.extend((s.len() as u32).to_le_bytes());
    out.extend(s.as_bytes());
}

fn int(out: &mut Vec<u8>, v: usize) {
    out.push(b'J');
    out.extend((v as i32).to_le_bytes());
}

fn tuple(out: &mut Vec<u8>, items: &[usize]) {
    out.push(b'(');
    for &i in items {
        int(out, i);
    }
    out.push(b't');
}

/// `dicts`: top-level key (e.g. "model") -> tensors. `payload` = (entry, module, global) adds
/// an entry to the first dict whose value is a call of that global (a hostile file).
pub fn write(path: &Path, archive: &str, dicts: &[(&str, Vec<Tensor>)], payload: Option<(&str, &str, &str)>) {
    let mut pkl = vec![0x80, 2, b'}'];
    let mut storages: Vec<Vec<u8>> = Vec::new();
    for (di, (key, tensors)) in dicts.iter().enumerate() {
        unicode(&mut pkl, key);
        pkl.extend([b'}', b'(']);
        for t in tensors {
            unicode(&mut pkl, &t.name);
            pkl.extend(b"ctorch._utils\n_rebuild_tensor_v2\n");
            pkl.push(b'(');
            // Persistent id: ('storage', FloatStorage, key, 'cpu', numel).
            pkl.push(b'(');
            unicode(&mut pkl, "storage");
            pkl.extend(b"ctorch\nFloatStorage\n");
            unicode(&mut pkl, &storages.len().to_string());
            unicode(&mut pkl, "cpu");
            int(&mut pkl, t.values.len());
            pkl.extend([b't', b'Q']);
            int(&mut pkl, 0);
            tuple(&mut pkl, &t.shape);
            let strides: Vec<usize> = (0..t.shape.len()).map(|i| t.shape[i + 1..].iter().product()).collect();
            tuple(&mut pkl, &strides);
            pkl.push(0x89);
            pkl.extend(b"ccollections\nOrderedDict\n");
            pkl.extend([b')', b'R', b't', b'R']);
            storages.push(t.values.iter().flat_map(|v| v.to_le_bytes()).collect());
        }
        if let (0, Some((entry, module, name))) = (di, payload) {
            unicode(&mut pkl, entry);
            pkl.extend(format!("c{module}\n{name}\n").as_bytes());
            pkl.push(b'(');
            unicode(&mut pkl, "touch /tmp/pwned");
            pkl.extend([b't', b'R']);
        }
        pkl.extend([b'u', b's']);
    }
    pkl.push(b'.');
    let file = std::fs::File::create(path).unwrap();
    let mut zip = zip::ZipWriter::new(file);
    let opts = zip::write::SimpleFileOptions::default().compression_method(zip::CompressionMethod::Stored).with_alignment(64);
    zip.start_file(format!("{archive}/data.pkl"), opts).unwrap();
    zip.write_all(&pkl).unwrap();
    zip.start_file(format!("{archive}/byteorder"), opts).unwrap();
    zip.write_all(b"little").unwrap();
    for (i, s) in storages.iter().enumerate() {
        zip.start_file(format!("{archive}/data/{i}"), opts).unwrap();
        zip.write_all(s).unwrap();
    }
    zip.start_file(format!("{archive}/version"), opts).unwrap();
    zip.write_all(b"3\n").unwrap();
    zip.finish().unwrap();
}
