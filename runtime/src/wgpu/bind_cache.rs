//! Bind groups made once and reused. A decode step records the same dispatches over the
//! same buffers at the same parameter-arena offsets every step, so after the first step
//! every bind group comes from here. Entries hold weak references to their buffers
//! (which also keeps the identities in the keys unique) and leave once one is freed.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, Weak};

use super::buffer::Inner;
use super::WgpuBuffer;

/// Entries kept at most; past this the cache starts over.
const CAPACITY: usize = 4096;

/// A byte range of a buffer (offset, size); `None` for the whole buffer.
pub(crate) type ByteRange = Option<(u64, u64)>;

#[derive(Hash, PartialEq, Eq)]
struct Key {
    pipeline: usize,
    arena: (u64, u64),
    /// (binding, buffer identity, range).
    bindings: Vec<(u32, usize, ByteRange)>,
}

struct Entry {
    group: wgpu::BindGroup,
    buffers: Vec<Weak<Inner>>,
}

#[derive(Default)]
pub(crate) struct BindCache {
    entries: Mutex<HashMap<Key, Entry>>,
}

/// One storage binding of a dispatch: (binding, buffer, byte range or whole).
pub(crate) type Binding<'a> = (u32, &'a WgpuBuffer, ByteRange);

impl BindCache {
    /// The bind group of `pipeline` over `bindings` and the arena range, made by `make` on
    /// the first request.
    pub fn get(&self, pipeline: &Arc<wgpu::ComputePipeline>, bindings: &[Binding<'_>], arena: (u64, u64), make: impl FnOnce() -> wgpu::BindGroup) -> wgpu::BindGroup {
        let key = Key {
            pipeline: Arc::as_ptr(pipeline) as usize,
            arena,
            bindings: bindings.iter().map(|&(b, buf, range)| (b, Arc::as_ptr(&buf.0) as usize, range)).collect(),
        };
        let mut entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(e) = entries.get(&key) {
            return e.group.clone();
        }
        // A miss: drop the groups of freed buffers (so their memory can go) first.
        entries.retain(|_, e| e.buffers.iter().all(|w| w.strong_count() > 0));
        if entries.len() >= CAPACITY {
            entries.clear();
        }
        let group = make();
        let buffers = bindings.iter().map(|(_, buf, _)| Arc::downgrade(&buf.0)).collect();
        entries.insert(key, Entry { group: group.clone(), buffers });
        group
    }

    pub fn len(&self) -> usize {
        self.entries.lock().unwrap_or_else(|p| p.into_inner()).len()
    }
}
