//! A restricted pickle reader: it understands the opcodes `torch.save` emits (protocol 2+)
//! and builds plain values. Globals are never imported or called. The few that torch
//! needs (`_rebuild_tensor_v2`, storage types, `OrderedDict`) are interpreted; any other
//! becomes an opaque `Refused` value that is an error wherever the caller needs it.

use std::collections::HashMap;
use std::hash::{BuildHasher, Hash, Hasher, RandomState};

/// Caps that keep a hostile pickle from exhausting memory.
const MAX_STACK: usize = 1 << 20;
const MAX_MEMO: usize = 1 << 22;
const MAX_STRING: usize = 1 << 28;
/// Copies (DUP, memo put and get) are the only way a value can grow faster than the input
/// that describes it: a few bytes that duplicate a list and append the copy to it double it.
/// All copies of one pickle together may cost this much (see `cost`). `torch.save` copies
/// some 30 per tensor (each object once, when it is memoized), so this allows ~100k tensors.
const MAX_COPIED: u64 = 1 << 22;
/// Containers nested deeper than this are refused while they are built, before dropping,
/// comparing or copying them would recurse far enough to overflow the stack.
/// `torch.save` output nests a handful of levels.
const MAX_DEPTH: u32 = 1000;

#[derive(Clone, Debug, PartialEq)]
pub enum Value {
    None,
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(String),
    Bytes(Vec<u8>),
    Tuple(Vec<Value>),
    List(Vec<Value>),
    /// Insertion-ordered key/value pairs (dict and OrderedDict).
    Dict(Vec<(Value, Value)>),
    /// A persistent storage reference: (`torch.FloatStorage`-style type, key, element count).
    Storage { kind: StorageKind, key: String, numel: u64 },
    /// `torch._utils._rebuild_tensor_v2(storage, offset, size, stride, ...)`.
    Tensor(TensorRef),
    /// An allowed global, not yet called.
    Global(Known),
    /// Something built from a global outside the allow-list, named `module.name`.
    Refused(String),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum StorageKind {
    F32,
    F16,
    BF16,
    I64,
}

impl StorageKind {
    pub fn elem_size(self) -> usize {
        match self {
            StorageKind::F32 => 4,
            StorageKind::F16 | StorageKind::BF16 => 2,
            StorageKind::I64 => 8,
        }
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct TensorRef {
    pub kind: StorageKind,
    pub storage_key: String,
    pub storage_numel: u64,
    /// In elements.
    pub offset: u64,
    pub shape: Vec<u64>,
    pub stride: Vec<u64>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Known {
    OrderedDict,
    RebuildTensorV2,
    RebuildParameter,
    Storage(StorageKind),
}

fn known_global(module: &str, name: &str) -> Option<Known> {
    Some(match (module, name) {
        ("collections", "OrderedDict") => Known::OrderedDict,
        ("torch._utils", "_rebuild_tensor_v2") => Known::RebuildTensorV2,
        ("torch._utils", "_rebuild_parameter") => Known::RebuildParameter,
        ("torch", "FloatStorage") => Known::Storage(StorageKind::F32),
        ("torch", "HalfStorage") => Known::Storage(StorageKind::F16),
        ("torch", "BFloat16Storage") => Known::Storage(StorageKind::BF16),
        ("torch", "LongStorage") => Known::Storage(StorageKind::I64),
        _ => return None,
    })
}

enum Item {
    Mark,
    Value(Slot),
}

/// A value on the stack, with how deeply containers nest in it (0 for a scalar) and, for a
/// dict that items were set on, where its keys are.
struct Slot {
    v: Value,
    depth: u32,
    keys: Option<Box<KeyIndex>>,
}

struct Machine<'a> {
    data: &'a [u8],
    pos: usize,
    stack: Vec<Item>,
    /// Values with their nesting depth.
    memo: HashMap<u64, (Value, u32)>,
    /// The cost of all copies so far (at most MAX_COPIED).
    copied: u64,
}

type R<T> = Result<T, String>;

/// Reads one pickle (up to STOP) and returns its value.
pub fn load(data: &[u8]) -> R<Value> {
    let mut m = Machine { data, pos: 0, stack: Vec::new(), memo: HashMap::new(), copied: 0 };
    m.run()
}

/// What copying `v` costs: one per value, and one per 64 bytes of text, bytes or tensor
/// dims it holds; None as soon as that exceeds `limit` (so a huge value is not walked).
fn cost(v: &Value, limit: u64) -> Option<u64> {
    let heap = match v {
        Value::Str(s) | Value::Refused(s) => s.len(),
        Value::Bytes(b) => b.len(),
        Value::Storage { key, .. } => key.len(),
        Value::Tensor(t) => t.storage_key.len() + 16 * t.shape.len(),
        _ => 0,
    };
    let mut total = 1 + heap as u64 / 64;
    let mut add = |child: &Value| -> Option<()> {
        total += cost(child, limit.checked_sub(total)?)?;
        Some(())
    };
    match v {
        Value::Tuple(items) | Value::List(items) => items.iter().try_for_each(&mut add)?,
        Value::Dict(d) => d.iter().try_for_each(|(k, x)| add(k).and_then(|()| add(x)))?,
        _ => {}
    }
    (total <= limit).then_some(total)
}

/// The depth of a container holding values nested `inner` deep; an error beyond MAX_DEPTH.
fn nest(inner: u32) -> R<u32> {
    if inner >= MAX_DEPTH {
        return Err(format!("pickle nests containers more than {MAX_DEPTH} deep"));
    }
    Ok(inner + 1)
}

impl Machine<'_> {
    fn take(&mut self, n: usize) -> R<&[u8]> {
        let end = self.pos.checked_add(n).filter(|&e| e <= self.data.len()).ok_or_else(|| format!("truncated pickle at byte {}", self.pos))?;
        let s = &self.data[self.pos..end];
        self.pos = end;
        Ok(s)
    }
    fn u8(&mut self) -> R<u8> {
        Ok(self.take(1)?[0])
    }
    fn u16(&mut self) -> R<u16> {
        Ok(u16::from_le_bytes(self.take(2)?.try_into().expect("2 bytes")))
    }
    fn u32(&mut self) -> R<u32> {
        Ok(u32::from_le_bytes(self.take(4)?.try_into().expect("4 bytes")))
    }
    fn u64(&mut self) -> R<u64> {
        Ok(u64::from_le_bytes(self.take(8)?.try_into().expect("8 bytes")))
    }
    fn line(&mut self) -> R<String> {
        let rest = &self.data[self.pos..];
        let n = rest.iter().position(|&b| b == b'\n').ok_or("unterminated text line in pickle")?;
        let s = std::str::from_utf8(&rest[..n]).map_err(|_| "non-UTF-8 text line in pickle")?.to_string();
        self.pos += n + 1;
        Ok(s)
    }
    fn string(&mut self, n: usize) -> R<String> {
        if n > MAX_STRING {
            return Err(format!("string of {n} bytes is too large"));
        }
        String::from_utf8(self.take(n)?.to_vec()).map_err(|_| "invalid UTF-8 string in pickle".to_string())
    }
    fn bytes(&mut self, n: usize) -> R<Vec<u8>> {
        if n > MAX_STRING {
            return Err(format!("bytes of {n} bytes are too large"));
        }
        Ok(self.take(n)?.to_vec())
    }

    /// Pushes `v`, in which containers nest `depth` deep.
    fn push(&mut self, v: Value, depth: u32) -> R<()> {
        if self.stack.len() >= MAX_STACK {
            return Err("pickle stack too deep".into());
        }
        self.stack.push(Item::Value(Slot { v, depth, keys: None }));
        Ok(())
    }
    /// Pushes a value that is not a container.
    fn push_scalar(&mut self, v: Value) -> R<()> {
        self.push(v, 0)
    }
    fn pop_slot(&mut self) -> R<Slot> {
        match self.stack.pop() {
            Some(Item::Value(s)) => Ok(s),
            Some(Item::Mark) => Err("unexpected mark on the pickle stack".into()),
            None => Err("pickle stack underflow".into()),
        }
    }
    fn pop(&mut self) -> R<Value> {
        Ok(self.pop_slot()?.v)
    }
    fn top(&mut self) -> R<&mut Slot> {
        match self.stack.last_mut() {
            Some(Item::Value(s)) => Ok(s),
            _ => Err("pickle stack underflow".into()),
        }
    }
    /// Pops everything above the topmost mark, and the mark; with the deepest nesting in them.
    fn pop_mark(&mut self) -> R<(Vec<Value>, u32)> {
        let at = self.stack.iter().rposition(|i| matches!(i, Item::Mark)).ok_or("missing mark in pickle")?;
        let items = self.stack.split_off(at + 1);
        self.stack.pop();
        let depth = items.iter().map(|i| if let Item::Value(s) = i { s.depth } else { 0 }).max().unwrap_or(0);
        Ok((items.into_iter().map(|i| if let Item::Value(s) = i { s.v } else { unreachable!("marks were split off") }).collect(), depth))
    }
    /// A copy of `v`, charged to the pickle's copy budget.
    fn copy(copied: &mut u64, v: &Value) -> R<Value> {
        let c = cost(v, MAX_COPIED - *copied)
            .ok_or_else(|| format!("pickle too large: its copies (DUP, memo) exceed {MAX_COPIED} values, which no torch checkpoint needs"))?;
        *copied += c;
        Ok(v.clone())
    }
    fn memoize(&mut self, key: u64) -> R<()> {
        if self.memo.len() >= MAX_MEMO {
            return Err("pickle memo too large".into());
        }
        let Some(Item::Value(top)) = self.stack.last() else { return Err("pickle stack underflow".into()) };
        let v = Self::copy(&mut self.copied, &top.v)?;
        self.memo.insert(key, (v, top.depth));
        Ok(())
    }
    fn get(&mut self, key: u64) -> R<()> {
        let (v, depth) = self.memo.get(&key).ok_or_else(|| format!("pickle memo key {key} missing"))?;
        let (v, depth) = (Self::copy(&mut self.copied, v)?, *depth);
        self.push(v, depth)
    }
    fn dup(&mut self) -> R<()> {
        let Some(Item::Value(top)) = self.stack.last() else { return Err("pickle stack underflow".into()) };
        let (v, depth) = (Self::copy(&mut self.copied, &top.v)?, top.depth);
        self.push(v, depth)
    }
    /// APPEND(S), ADDITEMS: `items`, nested `depth` deep, go into the list on top.
    fn append(&mut self, items: Vec<Value>, depth: u32) -> R<()> {
        let depth = nest(depth)?;
        let top = self.top()?;
        extend_list(&mut top.v, items)?;
        top.depth = top.depth.max(depth);
        Ok(())
    }
    /// SETITEM(S): `items`, nested `depth` deep, are set on the dict on top.
    fn set_items(&mut self, items: Vec<(Value, Value)>, depth: u32) -> R<()> {
        let depth = nest(depth)?;
        let top = self.top()?;
        extend_dict(&mut top.v, &mut top.keys, items)?;
        top.depth = top.depth.max(depth);
        Ok(())
    }

    fn run(&mut self) -> R<Value> {
        loop {
            let op = self.u8()?;
            match op {
                0x80 => {
                    self.u8()?; // PROTO n
                }
                0x95 => {
                    self.u64()?; // FRAME length: framing is transparent here
                }
                b'.' => return self.pop(),
                b'(' => self.stack.push(Item::Mark),
                b'N' => self.push_scalar(Value::None)?,
                0x88 => self.push_scalar(Value::Bool(true))?,
                0x89 => self.push_scalar(Value::Bool(false))?,
                b'J' => {
                    let v = self.u32()? as i32 as i64;
                    self.push_scalar(Value::Int(v))?
                }
                b'K' => {
                    let v = self.u8()? as i64;
                    self.push_scalar(Value::Int(v))?
                }
                b'M' => {
                    let v = self.u16()? as i64;
                    self.push_scalar(Value::Int(v))?
                }
                0x8a => {
                    let n = self.u8()? as usize;
                    let b = self.take(n)?;
                    if n > 8 {
                        return Err(format!("integer of {n} bytes is too large"));
                    }
                    // Little-endian two's complement of n bytes.
                    let mut buf = [if b.last().is_some_and(|&x| x & 0x80 != 0) { 0xff } else { 0 }; 8];
                    buf[..n].copy_from_slice(b);
                    self.push_scalar(Value::Int(i64::from_le_bytes(buf)))?
                }
                b'G' => {
                    let v = f64::from_be_bytes(self.take(8)?.try_into().expect("8 bytes"));
                    self.push_scalar(Value::Float(v))?
                }
                b'X' => {
                    let n = self.u32()? as usize;
                    let s = self.string(n)?;
                    self.push_scalar(Value::Str(s))?
                }
                0x8c => {
                    let n = self.u8()? as usize;
                    let s = self.string(n)?;
                    self.push_scalar(Value::Str(s))?
                }
                0x8d => {
                    let n = self.u64()? as usize;
                    let s = self.string(n)?;
                    self.push_scalar(Value::Str(s))?
                }
                b'U' => {
                    let n = self.u8()? as usize;
                    let b = self.bytes(n)?;
                    self.push_scalar(Value::Bytes(b))?
                }
                b'T' | b'B' => {
                    let n = self.u32()? as usize;
                    let b = self.bytes(n)?;
                    self.push_scalar(Value::Bytes(b))?
                }
                b'C' => {
                    let n = self.u8()? as usize;
                    let b = self.bytes(n)?;
                    self.push_scalar(Value::Bytes(b))?
                }
                b')' => self.push(Value::Tuple(Vec::new()), 1)?,
                b't' => {
                    let (items, depth) = self.pop_mark()?;
                    self.push(Value::Tuple(items), nest(depth)?)?
                }
                0x85..=0x87 => {
                    let n = (op - 0x84) as usize;
                    let mut items = (0..n).map(|_| self.pop_slot()).collect::<R<Vec<_>>>()?;
                    items.reverse();
                    let depth = nest(items.iter().map(|s| s.depth).max().unwrap_or(0))?;
                    self.push(Value::Tuple(items.into_iter().map(|s| s.v).collect()), depth)?
                }
                b']' => self.push(Value::List(Vec::new()), 1)?,
                b'l' => {
                    let (items, depth) = self.pop_mark()?;
                    self.push(Value::List(items), nest(depth)?)?
                }
                b'}' => self.push(Value::Dict(Vec::new()), 1)?,
                b'd' => {
                    let (items, depth) = self.pop_mark()?;
                    self.push(Value::Dict(Vec::new()), 1)?;
                    self.set_items(pairs(items)?, depth)?
                }
                0x8f => self.push(Value::List(Vec::new()), 1)?, // EMPTY_SET (kept as a list)
                0x90 | b'e' => {
                    let (items, depth) = self.pop_mark()?; // ADDITEMS, APPENDS
                    self.append(items, depth)?
                }
                b'a' => {
                    let s = self.pop_slot()?;
                    self.append(vec![s.v], s.depth)?
                }
                b's' => {
                    let v = self.pop_slot()?;
                    let k = self.pop_slot()?;
                    self.set_items(vec![(k.v, v.v)], k.depth.max(v.depth))?
                }
                b'u' => {
                    let (items, depth) = self.pop_mark()?;
                    self.set_items(pairs(items)?, depth)?
                }
                b'q' => {
                    let k = self.u8()? as u64;
                    self.memoize(k)?
                }
                b'r' => {
                    let k = self.u32()? as u64;
                    self.memoize(k)?
                }
                0x94 => {
                    let k = self.memo.len() as u64;
                    self.memoize(k)?
                }
                b'h' => {
                    let k = self.u8()? as u64;
                    self.get(k)?
                }
                b'j' => {
                    let k = self.u32()? as u64;
                    self.get(k)?
                }
                b'c' => {
                    let module = self.line()?;
                    let name = self.line()?;
                    self.push_scalar(global(&module, &name))?
                }
                0x93 => {
                    let name = self.pop()?;
                    let module = self.pop()?;
                    match (module, name) {
                        (Value::Str(m), Value::Str(n)) => self.push_scalar(global(&m, &n))?,
                        _ => return Err("STACK_GLOBAL needs two strings".into()),
                    }
                }
                // REDUCE, NEWOBJ (cls.__new__(cls, *args)): the result is made of parts of
                // `args`, so it nests no deeper than they do.
                b'R' | 0x81 => {
                    let args = self.pop_slot()?;
                    let callable = self.pop()?;
                    self.push(call(callable, args.v)?, args.depth)?
                }
                b'b' => {
                    let state = self.pop()?; // BUILD: only plain containers accept state
                    build(&mut self.top()?.v, state)
                }
                b'Q' => {
                    let pid = self.pop()?;
                    self.push_scalar(persistent(pid)?)?
                }
                b'0' => {
                    self.pop()?;
                }
                b'2' => self.dup()?,
                other => return Err(format!("unsupported pickle opcode 0x{other:02x} at byte {}", self.pos - 1)),
            }
        }
    }
}

fn global(module: &str, name: &str) -> Value {
    match known_global(module, name) {
        Some(k) => Value::Global(k),
        None => Value::Refused(format!("{module}.{name}")),
    }
}

fn pairs(items: Vec<Value>) -> R<Vec<(Value, Value)>> {
    if !items.len().is_multiple_of(2) {
        return Err("odd number of items for a dict".into());
    }
    let mut it = items.into_iter();
    let mut out = Vec::new();
    while let (Some(k), Some(v)) = (it.next(), it.next()) {
        out.push((k, v));
    }
    Ok(out)
}

fn extend_list(target: &mut Value, items: Vec<Value>) -> R<()> {
    match target {
        Value::List(l) => {
            l.extend(items);
            Ok(())
        }
        Value::Refused(_) => Ok(()),
        other => Err(format!("cannot append to {}", kind(other))),
    }
}

/// Sets `items` on the dict `target` in order: a key equal to an earlier one replaces that
/// entry's value in place, a new key is appended. `keys` is the dict's index, built on first
/// use, so that each item costs a hash rather than a scan of the dict.
fn extend_dict(target: &mut Value, keys: &mut Option<Box<KeyIndex>>, items: Vec<(Value, Value)>) -> R<()> {
    match target {
        Value::Dict(d) => {
            let keys = keys.get_or_insert_with(|| Box::new(KeyIndex::of(d)));
            for (k, v) in items {
                keys.set(d, k, v);
            }
            Ok(())
        }
        Value::Refused(_) => Ok(()),
        other => Err(format!("cannot set items on {}", kind(other))),
    }
}

/// Where each key of a dict is, by a hash consistent with `Value`'s equality.
#[derive(Default)]
struct KeyIndex {
    hasher: RandomState,
    at: HashMap<u64, Vec<usize>>,
}

impl KeyIndex {
    fn of(d: &[(Value, Value)]) -> Self {
        let mut index = KeyIndex::default();
        for (i, (k, _)) in d.iter().enumerate() {
            if let Some(h) = index.hash(k) {
                index.at.entry(h).or_default().push(i);
            }
        }
        index
    }

    /// None for a key that holds a NaN: it equals nothing, itself included.
    fn hash(&self, k: &Value) -> Option<u64> {
        let mut h = self.hasher.build_hasher();
        hash_key(k, &mut h).then(|| h.finish())
    }

    fn set(&mut self, d: &mut Vec<(Value, Value)>, k: Value, v: Value) {
        let Some(h) = self.hash(&k) else {
            d.push((k, v));
            return;
        };
        let at = self.at.entry(h).or_default();
        match at.iter().find(|&&i| d[i].0 == k) {
            Some(&i) => d[i].1 = v,
            None => {
                at.push(d.len());
                d.push((k, v));
            }
        }
    }
}

/// Feeds `v` to `h` so that equal values hash alike (0.0 and -0.0 too); false if `v` holds
/// a NaN.
fn hash_key(v: &Value, h: &mut impl Hasher) -> bool {
    std::mem::discriminant(v).hash(h);
    match v {
        Value::Tuple(items) | Value::List(items) => {
            items.len().hash(h);
            return items.iter().all(|i| hash_key(i, h));
        }
        Value::Dict(d) => {
            d.len().hash(h);
            return d.iter().all(|(k, x)| hash_key(k, h) && hash_key(x, h));
        }
        Value::Float(f) => {
            (if *f == 0.0 { 0 } else { f.to_bits() }).hash(h);
            return !f.is_nan();
        }
        Value::None => {}
        Value::Bool(b) => b.hash(h),
        Value::Int(i) => i.hash(h),
        Value::Str(s) | Value::Refused(s) => s.hash(h),
        Value::Bytes(b) => b.hash(h),
        Value::Storage { kind, key, numel } => (kind, key, numel).hash(h),
        Value::Tensor(t) => (t.kind, &t.storage_key, t.storage_numel, t.offset, &t.shape, &t.stride).hash(h),
        Value::Global(k) => k.hash(h),
    }
    true
}

fn build(target: &mut Value, state: Value) {
    // Objects of allowed types carry no state torch relies on; refused ones stay refused.
    let _ = (target, state);
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::None => "None",
        Value::Bool(_) => "a bool",
        Value::Int(_) => "an int",
        Value::Float(_) => "a float",
        Value::Str(_) => "a string",
        Value::Bytes(_) => "bytes",
        Value::Tuple(_) => "a tuple",
        Value::List(_) => "a list",
        Value::Dict(_) => "a dict",
        Value::Storage { .. } => "a storage",
        Value::Tensor(_) => "a tensor",
        Value::Global(_) => "a global",
        Value::Refused(_) => "a refused object",
    }
}

fn as_u64(v: &Value, what: &str) -> R<u64> {
    match v {
        Value::Int(i) if *i >= 0 => Ok(*i as u64),
        other => Err(format!("{what}: expected a non-negative int, got {}", kind(other))),
    }
}

fn as_dims(v: &Value, what: &str) -> R<Vec<u64>> {
    match v {
        Value::Tuple(items) | Value::List(items) => items.iter().map(|i| as_u64(i, what)).collect(),
        other => Err(format!("{what}: expected a tuple, got {}", kind(other))),
    }
}

/// REDUCE/NEWOBJ: interprets the allowed callables; never calls anything else.
fn call(callable: Value, args: Value) -> R<Value> {
    let args = match args {
        Value::Tuple(a) => a,
        other => return Err(format!("call arguments must be a tuple, got {}", kind(&other))),
    };
    match callable {
        Value::Refused(name) => Ok(Value::Refused(name)),
        Value::Global(Known::OrderedDict) => match args.as_slice() {
            [] => Ok(Value::Dict(Vec::new())),
            [Value::List(items)] => {
                let (mut d, mut keys) = (Value::Dict(Vec::new()), None);
                for item in items {
                    match item {
                        Value::Tuple(kv) | Value::List(kv) if kv.len() == 2 => extend_dict(&mut d, &mut keys, vec![(kv[0].clone(), kv[1].clone())])?,
                        _ => return Err("OrderedDict items must be pairs".into()),
                    }
                }
                Ok(d)
            }
            _ => Err("unexpected OrderedDict arguments".into()),
        },
        Value::Global(Known::RebuildTensorV2) => {
            if args.len() < 4 {
                return Err("_rebuild_tensor_v2 needs (storage, offset, size, stride, ...)".into());
            }
            let Value::Storage { kind, key, numel } = &args[0] else {
                if let Value::Refused(n) = &args[0] {
                    return Ok(Value::Refused(n.clone()));
                }
                return Err(format!("_rebuild_tensor_v2: expected a storage, got {}", self::kind(&args[0])));
            };
            let shape = as_dims(&args[2], "tensor size")?;
            let stride = as_dims(&args[3], "tensor stride")?;
            if shape.len() != stride.len() {
                return Err("tensor size and stride differ in length".into());
            }
            Ok(Value::Tensor(TensorRef {
                kind: *kind,
                storage_key: key.clone(),
                storage_numel: *numel,
                offset: as_u64(&args[1], "storage offset")?,
                shape,
                stride,
            }))
        }
        Value::Global(Known::RebuildParameter) => args.into_iter().next().ok_or_else(|| "_rebuild_parameter needs data".to_string()),
        Value::Global(Known::Storage(_)) => Err("storage types are not callable".into()),
        other => Err(format!("{} is not callable", kind(&other))),
    }
}

/// BINPERSID: torch's ('storage', storage_type, key, location, numel).
fn persistent(pid: Value) -> R<Value> {
    let Value::Tuple(t) = pid else { return Err("persistent id must be a tuple".into()) };
    match t.as_slice() {
        [Value::Str(tag), ty, Value::Str(key), _location, numel] if tag == "storage" => match ty {
            Value::Global(Known::Storage(kind)) => Ok(Value::Storage { kind: *kind, key: key.clone(), numel: as_u64(numel, "storage size")? }),
            Value::Refused(name) => Ok(Value::Refused(name.clone())),
            other => Err(format!("unsupported storage type {}", kind(other))),
        },
        _ => Err("unsupported persistent id".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builds_containers_and_refuses_unknown_globals() {
        // {'a': [1, 2.5, 'x'], 'b': os.system('echo')}  (protocol 2, hand-assembled)
        let mut p = vec![0x80, 2, b'}', b'(', b'X', 1, 0, 0, 0, b'a', b']', b'(', b'K', 1, b'G'];
        p.extend(2.5f64.to_be_bytes());
        p.extend([b'X', 1, 0, 0, 0, b'x', b'e', b'X', 1, 0, 0, 0, b'b']);
        p.extend(b"cposix\nsystem\n");
        p.extend([b'X', 4, 0, 0, 0]);
        p.extend(b"echo");
        p.extend([0x85, b'R', b'u', b'.']);
        let v = load(&p).unwrap();
        let Value::Dict(d) = v else { panic!("not a dict") };
        assert_eq!(d[0].1, Value::List(vec![Value::Int(1), Value::Float(2.5), Value::Str("x".into())]));
        assert_eq!(d[1].1, Value::Refused("posix.system".into()));
    }

    #[test]
    fn malformed_input_is_an_error_not_a_panic() {
        for bad in [&b""[..], b"\x80", b"\x80\x02X\xff\xff\xff\xff", b"t.", b"a.", b"\x80\x02h\x05.", b"\x80\x02\xff", b"(K\x01d."] {
            assert!(load(bad).is_err(), "{bad:?}");
        }
    }

    fn pickle(parts: &[&[u8]]) -> Vec<u8> {
        let mut p = vec![0x80, 2];
        p.extend(parts.concat());
        p.push(b'.');
        p
    }

    fn expect_err(p: &[u8], what: &str) {
        match load(p) {
            Err(e) => assert!(e.contains(what), "error `{e}` should mention `{what}`"),
            Ok(v) => panic!("expected an error mentioning `{what}`, got a value of {}", kind(&v)),
        }
    }

    #[test]
    fn copies_that_double_a_value_are_refused() {
        // [0], then 40 x (DUP, APPEND): 2^40 values from 87 bytes.
        expect_err(&pickle(&[b"]K\x00a", &b"2a".repeat(40)]), "pickle too large");
        // The same through the memo: m = [m, m] 40 times.
        expect_err(&pickle(&[b"]q\x00", &b"(h\x00h\x00lq\x000".repeat(40)]), "pickle too large");
        // Copies within the budget are exact.
        assert_eq!(load(&pickle(&[b"]K\x05a2\x86"])).unwrap(), Value::Tuple(vec![Value::List(vec![Value::Int(5)]); 2]));
    }

    #[test]
    fn nesting_beyond_the_limit_is_refused_while_it_is_built() {
        let deep = MAX_DEPTH as usize;
        // TUPLE1 around None, the nesting limit itself is fine.
        let v = load(&pickle(&[b"N", &[0x85].repeat(deep)])).unwrap();
        assert_eq!(v, v.clone());
        for p in [
            pickle(&[b"N", &[0x85].repeat(deep + 1)]),
            pickle(&[b"N", &[0x85].repeat(100_000)]),
            // 100k lists, each appended to the one below it.
            pickle(&[&b"]".repeat(100_000), &b"a".repeat(99_999)]),
            // 100k dicts, each set as a value of the one below it.
            pickle(&[&b"}K\x00".repeat(100_000), b"}", &b"s".repeat(100_000)]),
            // Through the memo: m = (m,) over and over.
            pickle(&[b"Nq\x00", &b"h\x00\x85q\x000".repeat(100_000), b"h\x00"]),
            // Through REDUCE: _rebuild_parameter returns its argument, still nested.
            pickle(&[b"ctorch._utils\n_rebuild_parameter\nN", &[0x85].repeat(deep), b"R\x85\x85"]),
        ] {
            expect_err(&p, "deep");
        }
    }

    #[test]
    fn dicts_keep_order_and_later_keys_replace_earlier_ones() {
        let int = Value::Int;
        let want = Value::Dict(vec![(int(1), int(11)), (int(2), int(20))]);
        // SETITEMS, DICT, and SETITEM after SETITEMS with another dict built in between.
        assert_eq!(load(&pickle(&[b"}(K\x01K\x0aK\x02K\x14K\x01K\x0bu"])).unwrap(), want);
        assert_eq!(load(&pickle(&[b"(K\x01K\x0aK\x02K\x14K\x01K\x0bd"])).unwrap(), want);
        assert_eq!(load(&pickle(&[b"}(K\x01K\x0aK\x02K\x14u}K\x01K\x01s0K\x01K\x0bs"])).unwrap(), want);
        // 0.0 and -0.0 are one key; NaN keys never match, not even each other.
        let mut p = vec![b'}'];
        for (f, v) in [(0.0f64, 1u8), (-0.0, 2), (f64::NAN, 3), (f64::NAN, 4)] {
            p.push(b'G');
            p.extend(f.to_be_bytes());
            p.extend([b'K', v, b's']);
        }
        let Value::Dict(d) = load(&pickle(&[&p])).unwrap() else { panic!("not a dict") };
        assert_eq!(d.iter().map(|(_, v)| v.clone()).collect::<Vec<_>>(), [2, 3, 4].map(Value::Int));
    }

    #[test]
    fn large_dicts_are_built_without_scanning_them() {
        // 200k distinct keys, one SETITEM each: a scan of the dict per item took over a minute.
        let n = 200_000u32;
        let mut p = vec![b'}'];
        for i in 0..n {
            p.push(b'J');
            p.extend(i.to_le_bytes());
            p.extend([b'K', 0, b's']);
        }
        let Value::Dict(d) = load(&pickle(&[&p])).unwrap() else { panic!("not a dict") };
        assert_eq!(d.len(), n as usize);
        assert_eq!(d[n as usize - 1].0, Value::Int(n as i64 - 1));
    }
}
