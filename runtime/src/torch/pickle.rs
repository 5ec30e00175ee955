//! A restricted pickle reader: it understands the opcodes `torch.save` emits (protocol 2+)
//! and builds plain values. Globals are never imported or called. The few that torch
//! needs (`_rebuild_tensor_v2`, storage types, `OrderedDict`) are interpreted; any other
//! becomes an opaque `Refused` value that is an error wherever the caller needs it.

use std::collections::HashMap;

/// Caps that keep a hostile pickle from exhausting memory.
const MAX_STACK: usize = 1 << 20;
const MAX_MEMO: usize = 1 << 22;
const MAX_STRING: usize = 1 << 28;

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

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
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

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
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

#[derive(Debug)]
enum Item {
    Mark,
    Value(Value),
}

struct Machine<'a> {
    data: &'a [u8],
    pos: usize,
    stack: Vec<Item>,
    memo: HashMap<u64, Value>,
}

type R<T> = Result<T, String>;

/// Reads one pickle (up to STOP) and returns its value.
pub fn load(data: &[u8]) -> R<Value> {
    let mut m = Machine { data, pos: 0, stack: Vec::new(), memo: HashMap::new() };
    m.run()
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

    fn push(&mut self, v: Value) -> R<()> {
        if self.stack.len() >= MAX_STACK {
            return Err("pickle stack too deep".into());
        }
        self.stack.push(Item::Value(v));
        Ok(())
    }
    fn pop(&mut self) -> R<Value> {
        match self.stack.pop() {
            Some(Item::Value(v)) => Ok(v),
            Some(Item::Mark) => Err("unexpected mark on the pickle stack".into()),
            None => Err("pickle stack underflow".into()),
        }
    }
    fn top(&mut self) -> R<&mut Value> {
        match self.stack.last_mut() {
            Some(Item::Value(v)) => Ok(v),
            _ => Err("pickle stack underflow".into()),
        }
    }
    /// Pops everything above the topmost mark, and the mark.
    fn pop_mark(&mut self) -> R<Vec<Value>> {
        let at = self.stack.iter().rposition(|i| matches!(i, Item::Mark)).ok_or("missing mark in pickle")?;
        let items = self.stack.split_off(at + 1);
        self.stack.pop();
        Ok(items.into_iter().map(|i| if let Item::Value(v) = i { v } else { unreachable!("marks were split off") }).collect())
    }
    fn memoize(&mut self, key: u64) -> R<()> {
        if self.memo.len() >= MAX_MEMO {
            return Err("pickle memo too large".into());
        }
        let v = self.top()?.clone();
        self.memo.insert(key, v);
        Ok(())
    }
    fn get(&mut self, key: u64) -> R<()> {
        let v = self.memo.get(&key).cloned().ok_or_else(|| format!("pickle memo key {key} missing"))?;
        self.push(v)
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
                b'N' => self.push(Value::None)?,
                0x88 => self.push(Value::Bool(true))?,
                0x89 => self.push(Value::Bool(false))?,
                b'J' => {
                    let v = self.u32()? as i32 as i64;
                    self.push(Value::Int(v))?
                }
                b'K' => {
                    let v = self.u8()? as i64;
                    self.push(Value::Int(v))?
                }
                b'M' => {
                    let v = self.u16()? as i64;
                    self.push(Value::Int(v))?
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
                    self.push(Value::Int(i64::from_le_bytes(buf)))?
                }
                b'G' => {
                    let v = f64::from_be_bytes(self.take(8)?.try_into().expect("8 bytes"));
                    self.push(Value::Float(v))?
                }
                b'X' => {
                    let n = self.u32()? as usize;
                    let s = self.string(n)?;
                    self.push(Value::Str(s))?
                }
                0x8c => {
                    let n = self.u8()? as usize;
                    let s = self.string(n)?;
                    self.push(Value::Str(s))?
                }
                0x8d => {
                    let n = self.u64()? as usize;
                    let s = self.string(n)?;
                    self.push(Value::Str(s))?
                }
                b'U' => {
                    let n = self.u8()? as usize;
                    let b = self.bytes(n)?;
                    self.push(Value::Bytes(b))?
                }
                b'T' | b'B' => {
                    let n = self.u32()? as usize;
                    let b = self.bytes(n)?;
                    self.push(Value::Bytes(b))?
                }
                b'C' => {
                    let n = self.u8()? as usize;
                    let b = self.bytes(n)?;
                    self.push(Value::Bytes(b))?
                }
                b')' => self.push(Value::Tuple(Vec::new()))?,
                b't' => {
                    let items = self.pop_mark()?;
                    self.push(Value::Tuple(items))?
                }
                0x85..=0x87 => {
                    let n = (op - 0x84) as usize;
                    let mut items = (0..n).map(|_| self.pop()).collect::<R<Vec<_>>>()?;
                    items.reverse();
                    self.push(Value::Tuple(items))?
                }
                b']' => self.push(Value::List(Vec::new()))?,
                b'l' => {
                    let items = self.pop_mark()?;
                    self.push(Value::List(items))?
                }
                b'}' => self.push(Value::Dict(Vec::new()))?,
                b'd' => {
                    let items = self.pop_mark()?;
                    self.push(Value::Dict(pairs(items)?))?
                }
                0x8f => self.push(Value::List(Vec::new()))?, // EMPTY_SET (kept as a list)
                0x90 => {
                    let items = self.pop_mark()?; // ADDITEMS
                    extend_list(self.top()?, items)?
                }
                b'a' => {
                    let v = self.pop()?;
                    extend_list(self.top()?, vec![v])?
                }
                b'e' => {
                    let items = self.pop_mark()?;
                    extend_list(self.top()?, items)?
                }
                b's' => {
                    let v = self.pop()?;
                    let k = self.pop()?;
                    extend_dict(self.top()?, vec![(k, v)])?
                }
                b'u' => {
                    let items = self.pop_mark()?;
                    let p = pairs(items)?;
                    extend_dict(self.top()?, p)?
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
                    self.push(global(&module, &name))?
                }
                0x93 => {
                    let name = self.pop()?;
                    let module = self.pop()?;
                    match (module, name) {
                        (Value::Str(m), Value::Str(n)) => self.push(global(&m, &n))?,
                        _ => return Err("STACK_GLOBAL needs two strings".into()),
                    }
                }
                b'R' => {
                    let args = self.pop()?;
                    let callable = self.pop()?;
                    self.push(call(callable, args)?)?
                }
                0x81 => {
                    let args = self.pop()?; // NEWOBJ: cls.__new__(cls, *args)
                    let cls = self.pop()?;
                    self.push(call(cls, args)?)?
                }
                b'b' => {
                    let state = self.pop()?; // BUILD: only plain containers accept state
                    build(self.top()?, state)
                }
                b'Q' => {
                    let pid = self.pop()?;
                    self.push(persistent(pid)?)?
                }
                b'0' => {
                    self.pop()?;
                }
                b'2' => {
                    let v = self.top()?.clone();
                    self.push(v)?
                }
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

fn extend_dict(target: &mut Value, items: Vec<(Value, Value)>) -> R<()> {
    match target {
        Value::Dict(d) => {
            for (k, v) in items {
                match d.iter_mut().find(|(ek, _)| *ek == k) {
                    Some(slot) => slot.1 = v,
                    None => d.push((k, v)),
                }
            }
            Ok(())
        }
        Value::Refused(_) => Ok(()),
        other => Err(format!("cannot set items on {}", kind(other))),
    }
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
                let mut d = Value::Dict(Vec::new());
                for item in items {
                    match item {
                        Value::Tuple(kv) | Value::List(kv) if kv.len() == 2 => extend_dict(&mut d, vec![(kv[0].clone(), kv[1].clone())])?,
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
}
