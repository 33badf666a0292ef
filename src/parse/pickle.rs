//! A safe subset of Python's pickle: enough to read what carbon's senders emit (carbon-relay,
//! graphite-web's carbonlink, python clients of protocols 0–5 from Python 2 and 3), and a small
//! pickler for answers.
//!
//! The unpickler is a stack machine over the opcodes of CPython's `Lib/pickle.py` that build
//! plain data only: None, bools, ints (any size), floats, str, bytes, lists, tuples and dicts,
//! plus the memo (`PUT`/`GET`/`MEMOIZE`) and framing opcodes. Everything that names or builds
//! an object (`GLOBAL`, `STACK_GLOBAL`, `REDUCE`, `BUILD`, `INST`, `OBJ`, `NEWOBJ`, `PERSID`,
//! extension codes, out-of-band buffers) is refused with an error naming the opcode, as
//! carbon's `SafeUnpickler` refuses unknown globals. The one exception is how Python 3 writes
//! `bytes` for protocols 0–2 (`_codecs.encode(text, "latin1")` and `bytes()` through
//! `GLOBAL`/`REDUCE`): those two callables, with exactly those arguments, yield bytes.
//!
//! Memory is bounded by construction: values live in an arena of 16-byte nodes indexed by
//! `u32`; the stack, the memo and containers hold indices, so `GET` and `DUP` share instead of
//! copying, and no opcode allocates more than one node. [`Limits`] caps nodes, container
//! elements and `MARK` depth; strings borrow from the input when they are stored raw. Nothing
//! recurses, so hostile nesting cannot overflow the Rust stack.
//!
//! [`for_each_point`] reads carbon's payload, a list of `(name, (timestamp, value))`; like
//! go-carbon it takes several `(t, v)` pairs per entry, but unlike go-carbon (which discards the
//! whole frame) a bad entry or pair is skipped and counted and the rest of the frame kept.

use std::collections::HashMap;

use crate::error::{Error, Result};
use crate::points::Point;

/// Caps that keep a hostile pickle from taking unbounded memory or time.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Values created (each opcode makes at most one), and separately container elements.
    pub max_objects: usize,
    /// Nested `MARK`s open at once (carbon's payloads use 1 to 3).
    pub max_marks: usize,
}

impl Default for Limits {
    /// 8 Mi values (≈ 200 MiB worst case, about what a full 64 MiB go-carbon frame of real
    /// points needs) and 64 marks.
    fn default() -> Self {
        Limits {
            max_objects: 1 << 23,
            max_marks: 64,
        }
    }
}

/// Highest pickle protocol understood (Python 3.8+ writes 5).
pub const HIGHEST_PROTOCOL: u8 = 5;

/// Index of a value in a [`Pickle`]'s arena.
type Id = u32;

/// One value; containers point at side tables so every node stays 16 bytes.
#[derive(Debug, Clone, Copy)]
enum Node {
    None,
    Bool(bool),
    Int(i64),
    /// An int beyond i64, kept as Python's `float(n)` would see it.
    BigInt(f64),
    Float(f64),
    /// UTF-8 text at `start..start+len` of the input (`scratch = false`) or the scratch buffer.
    Str {
        scratch: bool,
        start: u32,
        len: u32,
    },
    Bytes {
        scratch: bool,
        start: u32,
        len: u32,
    },
    /// Items at `start..start+len` of the tuple pool (tuples never change after creation).
    Tuple {
        start: u32,
        len: u32,
    },
    /// Index into the list table.
    List(u32),
    /// Index into the dict table.
    Dict(u32),
    /// One of the two callables Python 3 itself uses to pickle `bytes` for protocols 0–2
    /// (`_codecs.encode(text, "latin1")`, `builtins.bytes()`); only usable by `REDUCE`.
    BytesMaker(BytesMaker),
}

/// The whitelisted callables (carbon's SafeUnpickler whitelists a few globals too).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum BytesMaker {
    CodecsEncode,
    Bytes,
}

/// A decoded pickle: the arena plus its root value. Borrow values with [`Pickle::root`].
#[derive(Debug)]
pub struct Pickle<'a> {
    input: &'a [u8],
    scratch: Vec<u8>,
    nodes: Vec<Node>,
    tuple_items: Vec<Id>,
    lists: Vec<Vec<Id>>,
    dicts: Vec<Vec<(Id, Id)>>,
    root: Id,
}

/// A borrowed view of one value of a [`Pickle`].
#[derive(Debug, Clone, Copy)]
pub enum Value<'p> {
    /// Python `None`.
    None,
    /// Python `bool`.
    Bool(bool),
    /// Python `int` that fits in i64.
    Int(i64),
    /// Python `int` too large for i64, as `float(n)`.
    BigInt(f64),
    /// Python `float`.
    Float(f64),
    /// Python 3 `str` / Python 2 `unicode`.
    Str(&'p str),
    /// Python 3 `bytes` / `bytearray`, Python 2 `str`.
    Bytes(&'p [u8]),
    /// Python `tuple`.
    Tuple(Seq<'p>),
    /// Python `list`.
    List(Seq<'p>),
    /// Python `dict`, items in insertion order (a repeated key appears twice; use the last).
    Dict(Items<'p>),
}

/// The elements of a tuple or list.
#[derive(Debug, Clone, Copy)]
pub struct Seq<'p> {
    pickle: &'p Pickle<'p>,
    ids: &'p [Id],
}

/// The items of a dict.
#[derive(Debug, Clone, Copy)]
pub struct Items<'p> {
    pickle: &'p Pickle<'p>,
    ids: &'p [(Id, Id)],
}

impl<'p> Seq<'p> {
    /// Number of elements.
    pub fn len(&self) -> usize {
        self.ids.len()
    }
    /// Whether there are no elements.
    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }
    /// Element `i`, if any.
    pub fn get(&self, i: usize) -> Option<Value<'p>> {
        self.ids.get(i).map(|&id| self.pickle.value(id))
    }
    /// The elements in order.
    pub fn iter(&self) -> impl Iterator<Item = Value<'p>> + 'p {
        let p = self.pickle;
        self.ids.iter().map(move |&id| p.value(id))
    }
}

impl<'p> Items<'p> {
    /// Number of items (repeated keys counted each time).
    pub fn len(&self) -> usize {
        self.ids.len()
    }
    /// Whether there are no items.
    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }
    /// The `(key, value)` items in insertion order.
    pub fn iter(&self) -> impl Iterator<Item = (Value<'p>, Value<'p>)> + 'p {
        let p = self.pickle;
        self.ids.iter().map(move |&(k, v)| (p.value(k), p.value(v)))
    }
    /// The value of the last item whose key is the string `key` (Python's dict semantics).
    pub fn get_str(&self, key: &str) -> Option<Value<'p>> {
        self.iter()
            .filter(|(k, _)| k.as_text() == Some(key))
            .last()
            .map(|(_, v)| v)
    }
}

impl<'p> Value<'p> {
    /// Python's `float(x)` for the types carbon coerces: numbers, bools and numeric text.
    pub fn as_f64(&self) -> Option<f64> {
        match *self {
            Value::Bool(b) => Some(if b { 1.0 } else { 0.0 }),
            Value::Int(i) => Some(i as f64),
            Value::BigInt(f) | Value::Float(f) => Some(f),
            Value::Str(s) => parse_py_float(s.as_bytes()),
            Value::Bytes(b) => parse_py_float(b),
            _ => None,
        }
    }
    /// Text of a str, or of UTF-8 bytes (a Python 2 `str`).
    pub fn as_text(&self) -> Option<&'p str> {
        match *self {
            Value::Str(s) => Some(s),
            Value::Bytes(b) => std::str::from_utf8(b).ok(),
            _ => None,
        }
    }
    /// Elements of a tuple or list.
    pub fn as_seq(&self) -> Option<Seq<'p>> {
        match *self {
            Value::Tuple(s) | Value::List(s) => Some(s),
            _ => None,
        }
    }
    /// Python's type name, for error messages.
    pub fn type_name(&self) -> &'static str {
        match self {
            Value::None => "NoneType",
            Value::Bool(_) => "bool",
            Value::Int(_) | Value::BigInt(_) => "int",
            Value::Float(_) => "float",
            Value::Str(_) => "str",
            Value::Bytes(_) => "bytes",
            Value::Tuple(_) => "tuple",
            Value::List(_) => "list",
            Value::Dict(_) => "dict",
        }
    }
}

/// Python `float()` of text: surrounding whitespace allowed, Rust's spellings otherwise.
fn parse_py_float(b: &[u8]) -> Option<f64> {
    std::str::from_utf8(b).ok()?.trim().parse().ok()
}

impl<'a> Pickle<'a> {
    /// Runs the pickle in `input` (one `pickle.dumps` result; bytes after `STOP` are ignored,
    /// as `pickle.loads` does).
    pub fn load(input: &'a [u8], limits: &Limits) -> Result<Pickle<'a>> {
        if input.len() > u32::MAX as usize {
            return Err(bad("pickle larger than 4 GiB"));
        }
        Machine {
            p: Pickle {
                input,
                scratch: Vec::new(),
                nodes: Vec::new(),
                tuple_items: Vec::new(),
                lists: Vec::new(),
                dicts: Vec::new(),
                root: 0,
            },
            pos: 0,
            stack: Vec::new(),
            marks: Vec::new(),
            memo: Vec::new(),
            sparse_memo: HashMap::new(),
            elements: 0,
            limits: *limits,
        }
        .run()
    }

    /// The unpickled object.
    pub fn root(&self) -> Value<'_> {
        self.value(self.root)
    }

    fn value(&self, id: Id) -> Value<'_> {
        match self.nodes[id as usize] {
            Node::None => Value::None,
            Node::Bool(b) => Value::Bool(b),
            Node::Int(i) => Value::Int(i),
            Node::BigInt(f) => Value::BigInt(f),
            Node::Float(f) => Value::Float(f),
            Node::Str {
                scratch,
                start,
                len,
            } => {
                let b = self.bytes_at(scratch, start, len);
                // Validated when the node was made; an empty fallback never happens.
                Value::Str(std::str::from_utf8(b).unwrap_or_default())
            }
            Node::Bytes {
                scratch,
                start,
                len,
            } => Value::Bytes(self.bytes_at(scratch, start, len)),
            Node::Tuple { start, len } => Value::Tuple(Seq {
                pickle: self,
                ids: &self.tuple_items[start as usize..(start + len) as usize],
            }),
            Node::List(i) => Value::List(Seq {
                pickle: self,
                ids: &self.lists[i as usize],
            }),
            Node::Dict(i) => Value::Dict(Items {
                pickle: self,
                ids: &self.dicts[i as usize],
            }),
            // A callable left unapplied: not data.
            Node::BytesMaker(_) => Value::None,
        }
    }

    fn bytes_at(&self, scratch: bool, start: u32, len: u32) -> &[u8] {
        let src: &[u8] = if scratch { &self.scratch } else { self.input };
        &src[start as usize..(start + len) as usize]
    }
}

fn bad(reason: impl Into<String>) -> Error {
    Error::Parse {
        line: "<pickle>".into(),
        reason: reason.into(),
    }
}

/// Unpickler state; consumed by `run`.
struct Machine<'a> {
    p: Pickle<'a>,
    pos: usize,
    stack: Vec<Id>,
    /// Stack lengths at each open MARK.
    marks: Vec<usize>,
    /// Memo slots in the order Python's pickler fills them (dense).
    memo: Vec<Option<Id>>,
    /// Slots written out of order by a hand-made pickle.
    sparse_memo: HashMap<u32, Id>,
    /// Container elements stored so far (tuple items, list items, dict items).
    elements: usize,
    limits: Limits,
}

impl<'a> Machine<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8]> {
        let input = self.p.input;
        let end = self
            .pos
            .checked_add(n)
            .filter(|&e| e <= input.len())
            .ok_or_else(|| bad("pickle data was truncated"))?;
        let s = &input[self.pos..end];
        self.pos = end;
        Ok(s)
    }
    fn u8(&mut self) -> Result<u8> {
        Ok(self.take(1)?[0])
    }
    fn u16le(&mut self) -> Result<u16> {
        let b = self.take(2)?;
        Ok(u16::from_le_bytes([b[0], b[1]]))
    }
    fn u32le(&mut self) -> Result<u32> {
        let b = self.take(4)?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }
    fn i32le(&mut self) -> Result<i32> {
        Ok(self.u32le()? as i32)
    }
    fn u64le(&mut self) -> Result<u64> {
        let b = self.take(8)?;
        let mut a = [0u8; 8];
        a.copy_from_slice(b);
        Ok(u64::from_le_bytes(a))
    }
    /// A length for a following blob: must fit in what is left of the input.
    fn len_of(&mut self, n: u64) -> Result<usize> {
        usize::try_from(n)
            .ok()
            .filter(|&n| n <= self.p.input.len() - self.pos)
            .ok_or_else(|| bad("pickle data was truncated"))
    }
    /// A text-mode argument: the bytes up to (not including) the next `\n`.
    fn line(&mut self) -> Result<&'a [u8]> {
        let input = self.p.input;
        let rest = &input[self.pos..];
        let n = rest
            .iter()
            .position(|&b| b == b'\n')
            .ok_or_else(|| bad("pickle data was truncated (no end of line)"))?;
        self.pos += n + 1;
        Ok(&rest[..n])
    }

    fn node(&mut self, n: Node) -> Result<Id> {
        if self.p.nodes.len() >= self.limits.max_objects {
            return Err(bad(format!(
                "pickle has more than {} values",
                self.limits.max_objects
            )));
        }
        self.p.nodes.push(n);
        Ok((self.p.nodes.len() - 1) as Id)
    }
    fn push(&mut self, n: Node) -> Result<()> {
        let id = self.node(n)?;
        self.stack.push(id);
        Ok(())
    }
    fn count_elements(&mut self, n: usize) -> Result<()> {
        self.elements += n;
        if self.elements > self.limits.max_objects {
            return Err(bad(format!(
                "pickle containers hold more than {} elements",
                self.limits.max_objects
            )));
        }
        Ok(())
    }
    /// Bottom of the current MARK frame: nothing below it may be popped.
    fn base(&self) -> usize {
        self.marks.last().copied().unwrap_or(0)
    }
    fn pop(&mut self) -> Result<Id> {
        if self.stack.len() <= self.base() {
            return Err(bad("unpickling stack underflow"));
        }
        Ok(self.stack.pop().unwrap_or_default())
    }
    fn top(&self) -> Result<Id> {
        if self.stack.len() <= self.base() {
            return Err(bad("unpickling stack underflow"));
        }
        Ok(self.stack[self.stack.len() - 1])
    }
    /// Closes the innermost MARK and returns the items pushed since.
    fn pop_mark(&mut self) -> Result<Vec<Id>> {
        let m = self.marks.pop().ok_or_else(|| bad("could not find MARK"))?;
        Ok(self.stack.split_off(m))
    }
    fn tuple(&mut self, items: &[Id]) -> Result<()> {
        self.count_elements(items.len())?;
        let start = self.p.tuple_items.len() as u32;
        self.p.tuple_items.extend_from_slice(items);
        self.push(Node::Tuple {
            start,
            len: items.len() as u32,
        })
    }
    fn tuple_n(&mut self, n: usize) -> Result<()> {
        if self.stack.len() < self.base() + n {
            return Err(bad("unpickling stack underflow"));
        }
        let items = self.stack.split_off(self.stack.len() - n);
        self.tuple(&items)
    }
    fn new_list(&mut self, items: Vec<Id>) -> Result<()> {
        self.count_elements(items.len())?;
        self.p.lists.push(items);
        self.push(Node::List((self.p.lists.len() - 1) as u32))
    }
    fn new_dict(&mut self, items: Vec<Id>) -> Result<()> {
        if !items.len().is_multiple_of(2) {
            return Err(bad("odd number of items for DICT"));
        }
        self.count_elements(items.len() / 2)?;
        let pairs = items.chunks_exact(2).map(|c| (c[0], c[1])).collect();
        self.p.dicts.push(pairs);
        self.push(Node::Dict((self.p.dicts.len() - 1) as u32))
    }
    fn extend_list(&mut self, list: Id, items: &[Id]) -> Result<()> {
        let Node::List(i) = self.p.nodes[list as usize] else {
            return Err(bad("APPEND(S) to something that is not a list"));
        };
        self.count_elements(items.len())?;
        self.p.lists[i as usize].extend_from_slice(items);
        Ok(())
    }
    fn set_items(&mut self, dict: Id, items: &[Id]) -> Result<()> {
        let Node::Dict(i) = self.p.nodes[dict as usize] else {
            return Err(bad("SETITEM(S) on something that is not a dict"));
        };
        if !items.len().is_multiple_of(2) {
            return Err(bad("odd number of items for SETITEMS"));
        }
        for kv in items.chunks_exact(2) {
            self.check_hashable(kv[0])?;
        }
        self.count_elements(items.len() / 2)?;
        self.p.dicts[i as usize].extend(items.chunks_exact(2).map(|c| (c[0], c[1])));
        Ok(())
    }
    /// Python refuses list and dict keys; so does this, so answers match `pickle.loads`.
    fn check_hashable(&self, key: Id) -> Result<()> {
        match self.p.nodes[key as usize] {
            Node::List(_) | Node::Dict(_) => Err(bad("unhashable dict key")),
            _ => Ok(()),
        }
    }

    fn memo_put(&mut self, idx: u64) -> Result<()> {
        let top = self.top()?;
        let idx = u32::try_from(idx).map_err(|_| bad("memo index out of range"))?;
        if (idx as usize) < self.memo.len() {
            self.memo[idx as usize] = Some(top);
        } else if idx as usize == self.memo.len() && self.memo.len() < self.limits.max_objects {
            self.memo.push(Some(top));
        } else {
            if self.sparse_memo.len() >= self.limits.max_objects {
                return Err(bad("memo is full"));
            }
            self.sparse_memo.insert(idx, top);
        }
        Ok(())
    }
    fn memo_get(&mut self, idx: u64) -> Result<()> {
        let id = u32::try_from(idx)
            .ok()
            .and_then(|i| {
                self.memo
                    .get(i as usize)
                    .copied()
                    .flatten()
                    .or_else(|| self.sparse_memo.get(&i).copied())
            })
            .ok_or_else(|| bad(format!("memo key {idx} not found")))?;
        self.stack.push(id);
        if self.stack.len() > self.limits.max_objects {
            return Err(bad("unpickling stack too deep"));
        }
        Ok(())
    }

    fn str_from_input(&mut self, b: &'a [u8]) -> Result<()> {
        std::str::from_utf8(b).map_err(|_| bad("str is not valid UTF-8"))?;
        let start = (b.as_ptr() as usize - self.p.input.as_ptr() as usize) as u32;
        self.push(Node::Str {
            scratch: false,
            start,
            len: b.len() as u32,
        })
    }
    fn bytes_from_input(&mut self, b: &'a [u8]) -> Result<()> {
        let start = (b.as_ptr() as usize - self.p.input.as_ptr() as usize) as u32;
        self.push(Node::Bytes {
            scratch: false,
            start,
            len: b.len() as u32,
        })
    }
    /// Stores decoded text-mode data in the scratch buffer (never longer than its source, so
    /// the scratch stays within the input's size).
    fn push_scratch(&mut self, data: &[u8], text: bool) -> Result<()> {
        let start = self.p.scratch.len() as u32;
        self.p.scratch.extend_from_slice(data);
        let len = data.len() as u32;
        self.push(if text {
            Node::Str {
                scratch: true,
                start,
                len,
            }
        } else {
            Node::Bytes {
                scratch: true,
                start,
                len,
            }
        })
    }

    fn int_text(&mut self, line: &[u8], long: bool) -> Result<()> {
        let mut t = std::str::from_utf8(line)
            .map_err(|_| bad("bad INT/LONG text"))?
            .trim();
        if long {
            t = t.strip_suffix('L').unwrap_or(t);
        } else if t == "00" {
            return self.push(Node::Bool(false));
        } else if t == "01" {
            return self.push(Node::Bool(true));
        }
        if let Ok(i) = t.parse::<i64>() {
            return self.push(Node::Int(i));
        }
        let digits = t.strip_prefix(['-', '+']).unwrap_or(t);
        if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
            return Err(bad(format!("bad INT/LONG text {t:?}")));
        }
        let f: f64 = t.parse().map_err(|_| bad("bad INT/LONG text"))?;
        self.push(Node::BigInt(f))
    }

    /// LONG1/LONG4 payload: little-endian two's complement.
    fn int_bytes(&mut self, b: &[u8]) -> Result<()> {
        if b.is_empty() {
            return self.push(Node::Int(0));
        }
        let negative = b[b.len() - 1] & 0x80 != 0;
        if b.len() <= 8 {
            let mut a = if negative { [0xffu8; 8] } else { [0u8; 8] };
            a[..b.len()].copy_from_slice(b);
            return self.push(Node::Int(i64::from_le_bytes(a)));
        }
        // Beyond i64: only its float value matters to carbon.
        let mut f = 0f64;
        for &byte in b.iter().rev() {
            let byte = if negative { !byte } else { byte };
            f = f * 256.0 + f64::from(byte);
        }
        self.push(Node::BigInt(if negative { -(f + 1.0) } else { f }))
    }

    fn run(mut self) -> Result<Pickle<'a>> {
        loop {
            let op = self.u8()?;
            match op {
                // PROTO
                0x80 => {
                    let v = self.u8()?;
                    if v > HIGHEST_PROTOCOL {
                        return Err(bad(format!("unsupported pickle protocol: {v}")));
                    }
                }
                // FRAME: a hint for buffered readers; the whole pickle is in memory already.
                0x95 => {
                    let n = self.u64le()?;
                    self.len_of(n)?;
                }
                b'.' => {
                    let root = self.pop()?;
                    self.p.root = root;
                    return Ok(self.p);
                }
                b'(' => {
                    if self.marks.len() >= self.limits.max_marks {
                        return Err(bad(format!(
                            "more than {} nested MARKs",
                            self.limits.max_marks
                        )));
                    }
                    self.marks.push(self.stack.len());
                }
                // POP: the top item, or an empty MARK frame (as CPython).
                b'0' => {
                    if self.stack.len() > self.base() {
                        self.stack.pop();
                    } else {
                        self.pop_mark()?;
                    }
                }
                // POP_MARK
                b'1' => {
                    self.pop_mark()?;
                }
                // DUP
                b'2' => {
                    let t = self.top()?;
                    self.stack.push(t);
                }
                b'N' => self.push(Node::None)?,
                0x88 => self.push(Node::Bool(true))?,
                0x89 => self.push(Node::Bool(false))?,
                // INT / LONG (text)
                b'I' => {
                    let l = self.line()?;
                    self.int_text(l, false)?
                }
                b'L' => {
                    let l = self.line()?;
                    self.int_text(l, true)?
                }
                // BININT, BININT1, BININT2
                b'J' => {
                    let v = self.i32le()?;
                    self.push(Node::Int(v.into()))?
                }
                b'K' => {
                    let v = self.u8()?;
                    self.push(Node::Int(v.into()))?
                }
                b'M' => {
                    let v = self.u16le()?;
                    self.push(Node::Int(v.into()))?
                }
                // LONG1, LONG4
                0x8a => {
                    let n = self.u8()?;
                    let b = self.take(n.into())?;
                    self.int_bytes(b)?
                }
                0x8b => {
                    let n = self.i32le()?;
                    if n < 0 {
                        return Err(bad("LONG pickle has negative byte count"));
                    }
                    let n = self.len_of(n as u64)?;
                    let b = self.take(n)?;
                    self.int_bytes(b)?
                }
                // FLOAT (text), BINFLOAT (big-endian)
                b'F' => {
                    let l = self.line()?;
                    let f = parse_py_float(l).ok_or_else(|| bad("bad FLOAT text"))?;
                    self.push(Node::Float(f))?
                }
                b'G' => {
                    let b = self.take(8)?;
                    let mut a = [0u8; 8];
                    a.copy_from_slice(b);
                    self.push(Node::Float(f64::from_be_bytes(a)))?
                }
                // STRING (Python 2 str, repr-quoted), BINSTRING, SHORT_BINSTRING
                b'S' => {
                    let l = self.line()?;
                    let decoded = decode_string_repr(l)?;
                    self.push_scratch(&decoded, false)?
                }
                b'T' => {
                    let n = self.i32le()?;
                    if n < 0 {
                        return Err(bad("BINSTRING pickle has negative byte count"));
                    }
                    let n = self.len_of(n as u64)?;
                    let b = self.take(n)?;
                    self.bytes_from_input(b)?
                }
                b'U' => {
                    let n = self.u8()?;
                    let b = self.take(n.into())?;
                    self.bytes_from_input(b)?
                }
                // UNICODE (raw-unicode-escape text), BINUNICODE, SHORT_BINUNICODE, BINUNICODE8
                b'V' => {
                    let l = self.line()?;
                    let s = decode_raw_unicode_escape(l)?;
                    self.push_scratch(s.as_bytes(), true)?
                }
                b'X' => {
                    let n = self.u32le()?;
                    let n = self.len_of(n.into())?;
                    let b = self.take(n)?;
                    self.str_from_input(b)?
                }
                0x8c => {
                    let n = self.u8()?;
                    let b = self.take(n.into())?;
                    self.str_from_input(b)?
                }
                0x8d => {
                    let n = self.u64le()?;
                    let n = self.len_of(n)?;
                    let b = self.take(n)?;
                    self.str_from_input(b)?
                }
                // BINBYTES, SHORT_BINBYTES, BINBYTES8, BYTEARRAY8 (read as bytes)
                b'B' => {
                    let n = self.u32le()?;
                    let n = self.len_of(n.into())?;
                    let b = self.take(n)?;
                    self.bytes_from_input(b)?
                }
                b'C' => {
                    let n = self.u8()?;
                    let b = self.take(n.into())?;
                    self.bytes_from_input(b)?
                }
                0x8e | 0x96 => {
                    let n = self.u64le()?;
                    let n = self.len_of(n)?;
                    let b = self.take(n)?;
                    self.bytes_from_input(b)?
                }
                // Containers
                b')' => self.tuple(&[])?,
                b't' => {
                    let items = self.pop_mark()?;
                    self.tuple(&items)?
                }
                0x85 => self.tuple_n(1)?,
                0x86 => self.tuple_n(2)?,
                0x87 => self.tuple_n(3)?,
                b']' => self.new_list(Vec::new())?,
                b'l' => {
                    let items = self.pop_mark()?;
                    self.new_list(items)?
                }
                b'}' => self.new_dict(Vec::new())?,
                b'd' => {
                    let items = self.pop_mark()?;
                    for kv in items.chunks_exact(2) {
                        self.check_hashable(kv[0])?;
                    }
                    self.new_dict(items)?
                }
                b'a' => {
                    let v = self.pop()?;
                    let list = self.top()?;
                    self.extend_list(list, &[v])?
                }
                b'e' => {
                    let items = self.pop_mark()?;
                    let list = self.top()?;
                    self.extend_list(list, &items)?
                }
                b's' => {
                    let v = self.pop()?;
                    let k = self.pop()?;
                    let dict = self.top()?;
                    self.set_items(dict, &[k, v])?
                }
                b'u' => {
                    let items = self.pop_mark()?;
                    let dict = self.top()?;
                    self.set_items(dict, &items)?
                }
                // Memo: PUT, BINPUT, LONG_BINPUT, MEMOIZE, GET, BINGET, LONG_BINGET
                b'p' => {
                    let l = self.line()?;
                    let i = parse_memo_key(l)?;
                    self.memo_put(i)?
                }
                b'q' => {
                    let i = self.u8()?;
                    self.memo_put(i.into())?
                }
                b'r' => {
                    let i = self.u32le()?;
                    self.memo_put(i.into())?
                }
                0x94 => {
                    let i = (self.memo.len() + self.sparse_memo.len()) as u64;
                    self.memo_put(i)?
                }
                b'g' => {
                    let l = self.line()?;
                    let i = parse_memo_key(l)?;
                    self.memo_get(i)?
                }
                b'h' => {
                    let i = self.u8()?;
                    self.memo_get(i.into())?
                }
                b'j' => {
                    let i = self.u32le()?;
                    self.memo_get(i.into())?
                }
                // GLOBAL / STACK_GLOBAL: only the callables that rebuild bytes.
                b'c' => {
                    let module = self.line()?;
                    let name = self.line()?;
                    self.global("GLOBAL", module, name)?
                }
                0x93 => {
                    let name = self.pop()?;
                    let module = self.pop()?;
                    let (Some(m), Some(n)) = (self.text_of(module), self.text_of(name)) else {
                        return Err(refused(op));
                    };
                    let (m, n) = (m.to_vec(), n.to_vec());
                    self.global("STACK_GLOBAL", &m, &n)?
                }
                b'R' => {
                    let args = self.pop()?;
                    let callable = self.pop()?;
                    self.reduce(callable, args)?
                }
                other => return Err(refused(other)),
            }
        }
    }
}

impl Machine<'_> {
    fn text_of(&self, id: Id) -> Option<&[u8]> {
        match self.p.nodes[id as usize] {
            Node::Str {
                scratch,
                start,
                len,
            } => Some(self.p.bytes_at(scratch, start, len)),
            _ => None,
        }
    }

    fn global(&mut self, op: &str, module: &[u8], name: &[u8]) -> Result<()> {
        let maker = match (module, name) {
            (b"_codecs", b"encode") => BytesMaker::CodecsEncode,
            (b"__builtin__" | b"builtins", b"bytes") => BytesMaker::Bytes,
            _ => {
                return Err(bad(format!(
                    "pickle opcode {op} refused for {}.{}: only plain data (numbers, strings, lists, tuples, dicts) is accepted",
                    String::from_utf8_lossy(module),
                    String::from_utf8_lossy(name)
                )));
            }
        };
        self.push(Node::BytesMaker(maker))
    }

    /// `REDUCE` of a whitelisted bytes maker; anything else is refused.
    fn reduce(&mut self, callable: Id, args: Id) -> Result<()> {
        let Node::BytesMaker(maker) = self.p.nodes[callable as usize] else {
            return Err(refused(b'R'));
        };
        let Node::Tuple { start, len } = self.p.nodes[args as usize] else {
            return Err(bad("REDUCE arguments are not a tuple"));
        };
        let items: Vec<Id> = self.p.tuple_items[start as usize..(start + len) as usize].to_vec();
        match (maker, items.as_slice()) {
            (BytesMaker::Bytes, []) => self.push_scratch(&[], false),
            (BytesMaker::CodecsEncode, [text, encoding]) => {
                let enc = self.text_of(*encoding).unwrap_or_default();
                if !matches!(enc, b"latin1" | b"latin-1" | b"iso-8859-1") {
                    return Err(bad("_codecs.encode is only accepted with latin1"));
                }
                let text = self
                    .text_of(*text)
                    .ok_or_else(|| bad("_codecs.encode of something that is not a str"))?;
                let text = std::str::from_utf8(text).unwrap_or_default();
                let latin1: Option<Vec<u8>> = text.chars().map(|c| u8::try_from(c).ok()).collect();
                let latin1 = latin1.ok_or_else(|| bad("_codecs.encode: text is not latin1"))?;
                self.push_scratch(&latin1, false)
            }
            _ => Err(bad("REDUCE with unexpected arguments")),
        }
    }
}

fn parse_memo_key(l: &[u8]) -> Result<u64> {
    std::str::from_utf8(l)
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .ok_or_else(|| bad("bad memo key"))
}

/// The error for an opcode outside the safe subset, naming it as pickletools does.
fn refused(op: u8) -> Error {
    let name = match op {
        b'c' => "GLOBAL",
        0x93 => "STACK_GLOBAL",
        b'R' => "REDUCE",
        b'b' => "BUILD",
        b'i' => "INST",
        b'o' => "OBJ",
        0x81 => "NEWOBJ",
        0x92 => "NEWOBJ_EX",
        b'P' => "PERSID",
        b'Q' => "BINPERSID",
        0x82..=0x84 => "EXT",
        0x8f => "EMPTY_SET",
        0x90 => "ADDITEMS",
        0x91 => "FROZENSET",
        0x97 => "NEXT_BUFFER",
        0x98 => "READONLY_BUFFER",
        _ => {
            return bad(format!("invalid pickle opcode 0x{op:02x}"));
        }
    };
    bad(format!(
        "pickle opcode {name} refused: only plain data (numbers, strings, lists, tuples, dicts) is accepted"
    ))
}

/// Python 2's `repr(str)` as pickle protocol 0 writes it (`'a.b'`, `"it's"`), back to bytes
/// (CPython's `codecs.escape_decode`).
fn decode_string_repr(l: &[u8]) -> Result<Vec<u8>> {
    let l = l.strip_suffix(b"\r").unwrap_or(l);
    let inner = match l {
        [q, inner @ .., q2] if (*q == b'\'' || *q == b'"') && q == q2 => inner,
        _ => return Err(bad("the STRING opcode argument must be quoted")),
    };
    let mut out = Vec::with_capacity(inner.len());
    let mut i = 0;
    while i < inner.len() {
        let c = inner[i];
        i += 1;
        if c != b'\\' {
            out.push(c);
            continue;
        }
        let Some(&e) = inner.get(i) else {
            return Err(bad("trailing \\ in STRING"));
        };
        i += 1;
        match e {
            b'\n' => {}
            b'\\' | b'\'' | b'"' => out.push(e),
            b'a' => out.push(7),
            b'b' => out.push(8),
            b'f' => out.push(12),
            b'n' => out.push(b'\n'),
            b'r' => out.push(b'\r'),
            b't' => out.push(b'\t'),
            b'v' => out.push(11),
            b'x' => {
                let h = inner
                    .get(i..i + 2)
                    .and_then(|h| std::str::from_utf8(h).ok())
                    .and_then(|h| u8::from_str_radix(h, 16).ok())
                    .ok_or_else(|| bad("invalid \\x escape in STRING"))?;
                out.push(h);
                i += 2;
            }
            b'0'..=b'7' => {
                let mut v = u32::from(e - b'0');
                for _ in 0..2 {
                    match inner.get(i) {
                        Some(&d @ b'0'..=b'7') => {
                            v = v * 8 + u32::from(d - b'0');
                            i += 1;
                        }
                        _ => break,
                    }
                }
                out.push(v as u8);
            }
            // Unknown escapes stay as written, as Python does.
            _ => out.extend_from_slice(&[b'\\', e]),
        }
    }
    Ok(out)
}

/// Python's `raw-unicode-escape` codec as protocol 0 writes `str`: bytes are Latin-1 except
/// `\uXXXX` and `\UXXXXXXXX`.
fn decode_raw_unicode_escape(l: &[u8]) -> Result<String> {
    let mut out = String::with_capacity(l.len());
    let mut i = 0;
    while i < l.len() {
        let c = l[i];
        if c == b'\\' && matches!(l.get(i + 1), Some(b'u' | b'U')) {
            let n = if l[i + 1] == b'u' { 4 } else { 8 };
            let ch = l
                .get(i + 2..i + 2 + n)
                .and_then(|h| std::str::from_utf8(h).ok())
                .and_then(|h| u32::from_str_radix(h, 16).ok())
                .and_then(char::from_u32)
                .ok_or_else(|| bad("invalid \\u escape in UNICODE"))?;
            out.push(ch);
            i += 2 + n;
        } else {
            out.push(char::from(c));
            i += 1;
        }
    }
    Ok(out)
}

/// Python-compatible `(t, v)` → point, with the plaintext rules of [`crate::parse::plain`]:
/// NaN values refused, timestamps truncated, `-1` meaning now, others within whisper's u32.
fn to_point(t: Value<'_>, v: Value<'_>, now: i64) -> std::result::Result<Point, String> {
    let ts = t
        .as_f64()
        .ok_or_else(|| format!("timestamp is a {}, not a number", t.type_name()))?;
    let value = v
        .as_f64()
        .ok_or_else(|| format!("value is a {}, not a number", v.type_name()))?;
    if value.is_nan() {
        return Err("value is NaN".into());
    }
    if !ts.is_finite() {
        return Err("timestamp is not finite".into());
    }
    let ts = ts.trunc();
    let timestamp = if ts == -1.0 {
        now
    } else if ts < 0.0 {
        return Err("negative timestamp (only -1, meaning now, is allowed)".into());
    } else if ts > f64::from(u32::MAX) {
        return Err("timestamp is beyond 2106 (whisper stores u32)".into());
    } else {
        ts as i64
    };
    Ok(Point { timestamp, value })
}

fn entry_error(name: &str, reason: impl Into<String>) -> Error {
    let mut line = name.to_string();
    if line.len() > crate::parse::plain::MAX_QUOTED_LINE {
        let mut cut = crate::parse::plain::MAX_QUOTED_LINE;
        while !line.is_char_boundary(cut) {
            cut -= 1;
        }
        line.truncate(cut);
    }
    Error::Parse {
        line,
        reason: reason.into(),
    }
}

/// Reads one carbon pickle payload — a list (or tuple) of `(name, (t, v), …)` — calling
/// `on_point` per good point and `on_error` per bad entry or pair. `Err` means the whole
/// payload is not a readable pickle (nothing was delivered). Returns (accepted, rejected).
pub fn for_each_point(
    payload: &[u8],
    now: i64,
    limits: &Limits,
    on_point: impl FnMut(&str, Point),
    on_error: impl FnMut(Error),
) -> Result<(u64, u64)> {
    let pickle = Pickle::load(payload, limits)?;
    walk(&pickle, now, on_point, on_error)
}

/// `for_each_point` handing the good points to `on_points` in one slice, in payload order,
/// once the payload is decoded: for callers that add them as one batch. `on_error` sees each
/// bad entry or pair first. Returns what `on_points` returned and the rejected count.
pub fn with_points<R>(
    payload: &[u8],
    now: i64,
    limits: &Limits,
    on_points: impl FnOnce(&[(&str, Point)]) -> R,
    on_error: impl FnMut(Error),
) -> Result<(R, u64)> {
    let pickle = Pickle::load(payload, limits)?;
    let mut points = Vec::new();
    let (_, rejected) = walk(&pickle, now, |name, p| points.push((name, p)), on_error)?;
    Ok((on_points(&points), rejected))
}

/// The entries of a loaded pickle, as `for_each_point` describes; names borrow the pickle.
fn walk<'p>(
    pickle: &'p Pickle<'_>,
    now: i64,
    mut on_point: impl FnMut(&'p str, Point),
    mut on_error: impl FnMut(Error),
) -> Result<(u64, u64)> {
    let Some(entries) = pickle.root().as_seq() else {
        return Err(bad(format!(
            "pickle is a {}, expected a list of (metric, (timestamp, value))",
            pickle.root().type_name()
        )));
    };
    let (mut accepted, mut rejected) = (0u64, 0u64);
    for entry in entries.iter() {
        let Some(items) = entry.as_seq().filter(|s| s.len() >= 2) else {
            rejected += 1;
            on_error(entry_error(
                "<pickle>",
                format!(
                    "entry is a {}, expected (metric, (timestamp, value))",
                    entry.type_name()
                ),
            ));
            continue;
        };
        let first = items.get(0).unwrap_or(Value::None);
        let Some(name) = first.as_text() else {
            rejected += 1;
            on_error(entry_error(
                "<pickle>",
                format!("metric name is a {}, not UTF-8 text", first.type_name()),
            ));
            continue;
        };
        for pair in items.iter().skip(1) {
            let point = match pair.as_seq() {
                Some(tv) if tv.len() == 2 => to_point(
                    tv.get(0).unwrap_or(Value::None),
                    tv.get(1).unwrap_or(Value::None),
                    now,
                ),
                _ => Err(format!(
                    "datapoint is a {}, expected (timestamp, value)",
                    pair.type_name()
                )),
            };
            match point {
                Ok(p) => {
                    accepted += 1;
                    on_point(name, p);
                }
                Err(reason) => {
                    rejected += 1;
                    on_error(entry_error(name, reason));
                }
            }
        }
    }
    Ok((accepted, rejected))
}

/// A value to pickle: what carbon's answers need (carbonlink replies, test payloads).
#[derive(Debug, Clone, PartialEq)]
pub enum PyObject {
    /// `None`.
    None,
    /// `bool`.
    Bool(bool),
    /// `int`.
    Int(i64),
    /// `float`.
    Float(f64),
    /// `str`.
    Str(String),
    /// `bytes`.
    Bytes(Vec<u8>),
    /// `tuple`.
    Tuple(Vec<PyObject>),
    /// `list`.
    List(Vec<PyObject>),
    /// `dict`, items in order.
    Dict(Vec<(PyObject, PyObject)>),
}

/// Pickles `obj` with protocol 2 (what carbon answers with; every Python from 2.3 reads it)
/// or, with `protocol >= 3`, protocol 3 (so `bytes` stay bytes for Python 3 readers).
/// Iterative, so deep values cannot overflow the stack.
pub fn dumps(obj: &PyObject, protocol: u8) -> Vec<u8> {
    enum Step<'o> {
        Obj(&'o PyObject),
        Raw(u8),
    }
    let proto = protocol.clamp(2, 3);
    let mut out = vec![0x80, proto];
    let mut todo = vec![Step::Obj(obj)];
    while let Some(step) = todo.pop() {
        let o = match step {
            Step::Raw(b) => {
                out.push(b);
                continue;
            }
            Step::Obj(o) => o,
        };
        match o {
            PyObject::None => out.push(b'N'),
            PyObject::Bool(b) => out.push(if *b { 0x88 } else { 0x89 }),
            PyObject::Int(i) => {
                if (0..=0xff).contains(i) {
                    out.extend_from_slice(&[b'K', *i as u8]);
                } else if (0..=0xffff).contains(i) {
                    out.push(b'M');
                    out.extend_from_slice(&(*i as u16).to_le_bytes());
                } else if let Ok(v) = i32::try_from(*i) {
                    out.push(b'J');
                    out.extend_from_slice(&v.to_le_bytes());
                } else {
                    let b = i.to_le_bytes();
                    // Shortest two's complement form, as pickle's encode_long.
                    let mut n = 8;
                    while n > 1 {
                        let (last, prev) = (b[n - 1], b[n - 2]);
                        if (last == 0 && prev & 0x80 == 0) || (last == 0xff && prev & 0x80 != 0) {
                            n -= 1;
                        } else {
                            break;
                        }
                    }
                    out.extend_from_slice(&[0x8a, n as u8]);
                    out.extend_from_slice(&b[..n]);
                }
            }
            PyObject::Float(f) => {
                out.push(b'G');
                out.extend_from_slice(&f.to_be_bytes());
            }
            PyObject::Str(s) => {
                out.push(b'X');
                out.extend_from_slice(&(s.len() as u32).to_le_bytes());
                out.extend_from_slice(s.as_bytes());
            }
            PyObject::Bytes(b) if proto >= 3 => {
                out.push(b'B');
                out.extend_from_slice(&(b.len() as u32).to_le_bytes());
                out.extend_from_slice(b);
            }
            PyObject::Bytes(b) => {
                // Protocol 2 has no bytes type: Python 2 reads a str, Python 3 a str via
                // latin-1 only with encoding='bytes'; carbon's names are text anyway.
                out.push(b'T');
                out.extend_from_slice(&(b.len() as u32).to_le_bytes());
                out.extend_from_slice(b);
            }
            PyObject::Tuple(items) => {
                match items.len() {
                    0 => {
                        out.push(b')');
                        continue;
                    }
                    1..=3 => todo.push(Step::Raw([0x85, 0x86, 0x87][items.len() - 1])),
                    _ => {
                        out.push(b'(');
                        todo.push(Step::Raw(b't'));
                    }
                }
                todo.extend(items.iter().rev().map(Step::Obj));
            }
            PyObject::List(items) => {
                out.push(b']');
                if !items.is_empty() {
                    out.push(b'(');
                    todo.push(Step::Raw(b'e'));
                    todo.extend(items.iter().rev().map(Step::Obj));
                }
            }
            PyObject::Dict(items) => {
                out.push(b'}');
                if !items.is_empty() {
                    out.push(b'(');
                    todo.push(Step::Raw(b'u'));
                    for (k, v) in items.iter().rev() {
                        todo.push(Step::Obj(v));
                        todo.push(Step::Obj(k));
                    }
                }
            }
        }
    }
    out.push(b'.');
    out
}

/// Prefixes `payload` with carbon's 4-byte big-endian length (Twisted `Int32StringReceiver`).
/// `None` when the payload does not fit the prefix.
pub fn frame(payload: &[u8]) -> Option<Vec<u8>> {
    let len = u32::try_from(payload.len()).ok()?;
    let mut out = Vec::with_capacity(payload.len() + 4);
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(payload);
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: i64 = 1_700_000_000;

    type Got = Vec<(String, i64, f64)>;

    fn points(payload: &[u8]) -> Result<(Got, u64)> {
        let mut got = Vec::new();
        let mut errors = 0;
        let (a, r) = for_each_point(
            payload,
            NOW,
            &Limits::default(),
            |n, p| got.push((n.to_string(), p.timestamp, p.value)),
            |_| errors += 1,
        )?;
        assert_eq!(a as usize, got.len());
        assert_eq!(r, errors);
        Ok((got, errors))
    }

    // Bytes produced by CPython 3.11 `pickle.dumps([("a.b", (1700000000, 1.5))], protocol=p)`
    // and by Python 2.7 (protocols 0 and 2, names as str, a long value).
    const PY3_P0: &[u8] = b"(lp0\n(Va.b\np1\n(I1700000000\nF1.5\ntp2\ntp3\na.";
    const PY3_P2: &[u8] =
        b"\x80\x02]q\x00X\x03\x00\x00\x00a.bq\x01J\x00\xf1SeG?\xf8\x00\x00\x00\x00\x00\x00\x86q\x02\x86q\x03a.";
    const PY3_P5: &[u8] = b"\x80\x05\x95\x1c\x00\x00\x00\x00\x00\x00\x00]\x94\x8c\x03a.b\x94J\x00\xf1SeG?\xf8\x00\x00\x00\x00\x00\x00\x86\x94\x86\x94a.";
    const PY2_P0: &[u8] = b"(lp0\n(S'a.b'\np1\n(I1700000000\nL2L\ntp2\ntp3\na.";
    // CPython 3.11 `pickle.dumps([(b"a.b", (1700000000, 1.5))], protocol=2)` and `=0`: bytes
    // go through `_codecs.encode(text, "latin1")`.
    const PY3_BYTES_P2: &[u8] = b"\x80\x02]q\x00c_codecs\nencode\nq\x01X\x03\x00\x00\x00a.bq\x02X\x06\x00\x00\x00latin1q\x03\x86q\x04Rq\x05J\x00\xf1SeG?\xf8\x00\x00\x00\x00\x00\x00\x86q\x06\x86q\x07a.";
    const PY3_BYTES_P0: &[u8] = b"(lp0\n(c_codecs\nencode\np1\n(Va.b\np2\nVlatin1\np3\ntp4\nRp5\n(I1700000000\nF1.5\ntp6\ntp7\na.";
    const PY2_P2: &[u8] = b"\x80\x02]q\x00U\x03a.bq\x01J\x00\xf1Se\x8a\x01\x02\x86q\x02\x86q\x03a.";

    #[test]
    fn python_senders_of_every_protocol() {
        for (name, bytes, value) in [
            ("py3 p0", PY3_P0, 1.5),
            ("py3 p2", PY3_P2, 1.5),
            ("py3 p5", PY3_P5, 1.5),
            ("py2 p0", PY2_P0, 2.0),
            ("py2 p2", PY2_P2, 2.0),
            ("py3 bytes p2", PY3_BYTES_P2, 1.5),
            ("py3 bytes p0", PY3_BYTES_P0, 1.5),
        ] {
            let (got, errors) = points(bytes).unwrap_or_else(|e| panic!("{name}: {e}"));
            assert_eq!(got, vec![("a.b".to_string(), NOW, value)], "{name}");
            assert_eq!(errors, 0, "{name}");
        }
    }

    #[test]
    fn bad_entries_are_skipped_and_counted() {
        let obj = PyObject::List(vec![
            PyObject::Tuple(vec![
                PyObject::Str("ok.one".into()),
                PyObject::Tuple(vec![PyObject::Int(NOW), PyObject::Float(1.0)]),
                PyObject::Tuple(vec![PyObject::Int(NOW + 60), PyObject::Int(2)]),
                PyObject::Tuple(vec![PyObject::Str("x".into()), PyObject::Int(2)]),
            ]),
            PyObject::Int(7),
            PyObject::Tuple(vec![PyObject::Int(1), PyObject::Tuple(vec![])]),
            PyObject::Tuple(vec![
                PyObject::Bytes(b"ok.two".to_vec()),
                PyObject::List(vec![PyObject::Float(-1.0), PyObject::Str(" 3.5".into())]),
            ]),
            PyObject::Tuple(vec![
                PyObject::Str("nan".into()),
                PyObject::Tuple(vec![PyObject::Int(NOW), PyObject::Float(f64::NAN)]),
            ]),
        ]);
        let (got, errors) = points(&dumps(&obj, 2)).unwrap();
        assert_eq!(
            got,
            vec![
                ("ok.one".into(), NOW, 1.0),
                ("ok.one".into(), NOW + 60, 2.0),
                ("ok.two".into(), NOW, 3.5),
            ]
        );
        assert_eq!(errors, 4);
    }

    #[test]
    fn refuses_code_execution_opcodes() {
        for (what, bytes) in [
            ("GLOBAL", &b"cos\nsystem\n(S'id'\ntR."[..]),
            ("REDUCE", b"\x80\x02N)R."),
            ("STACK_GLOBAL", b"\x80\x04\x8c\x02os\x8c\x06system\x93."),
            ("BUILD", b"\x80\x02}}b."),
            ("INST", b"(ios\nsystem\n."),
            ("PERSID", b"P1\n."),
            ("NEWOBJ", b"\x80\x02N)\x81."),
        ] {
            let e = Pickle::load(bytes, &Limits::default()).unwrap_err();
            assert!(e.to_string().contains(what), "{what}: {e}");
        }
    }

    #[test]
    fn hostile_shapes_are_bounded() {
        let marks = vec![b'('; 1_000_000];
        assert!(
            Pickle::load(&marks, &Limits::default())
                .unwrap_err()
                .to_string()
                .contains("MARK")
        );
        // A million nested lists: no recursion, so it loads; it is just not carbon's shape.
        let mut nested = vec![0x80, 2];
        nested.extend(std::iter::repeat_n(b']', 1_000_000));
        nested.extend(std::iter::repeat_n(b'a', 999_999));
        nested.push(b'.');
        let (got, errors) = points(&nested).unwrap();
        assert!(got.is_empty());
        assert_eq!(errors, 1);
        // Too many values for the limits.
        let small = Limits {
            max_objects: 1000,
            max_marks: 4,
        };
        let mut many = vec![b']'];
        many.extend(std::iter::repeat_n(b"Na".as_slice(), 2000).flatten());
        many.push(b'.');
        assert!(Pickle::load(&many, &small).is_err());
        // GET of a shared list appended a million times shares, never copies.
        let mut shared = b"]q\x00]".to_vec();
        shared.extend(std::iter::repeat_n(b"h\x00a".as_slice(), 100_000).flatten());
        shared.push(b'.');
        let p = Pickle::load(&shared, &Limits::default()).unwrap();
        assert_eq!(p.nodes.len(), 2);
        // Truncations at every length fail cleanly.
        for n in 0..PY3_P5.len() - 1 {
            assert!(
                Pickle::load(&PY3_P5[..n], &Limits::default()).is_err(),
                "{n}"
            );
        }
        // Huge lengths in headers are checked against what is left.
        assert!(
            Pickle::load(
                b"\x80\x04\x8d\xff\xff\xff\xff\xff\xff\xff\x7f",
                &Limits::default()
            )
            .is_err()
        );
        assert!(Pickle::load(b"\x80\x02\x8b\xff\xff\xff\x7f", &Limits::default()).is_err());
        assert!(Pickle::load(b"a.", &Limits::default()).is_err());
        assert!(Pickle::load(b"\x80\x02]e.", &Limits::default()).is_err());
        assert!(Pickle::load(b"\x80\x06N.", &Limits::default()).is_err());
    }

    #[test]
    fn text_forms_and_ints() {
        let p = Pickle::load(b"S'a\\'b\\\\c\\x41\\n'\n.", &Limits::default()).unwrap();
        assert!(matches!(p.root(), Value::Bytes(b) if b == b"a'b\\cA\n"));
        let p = Pickle::load(b"V\\u00e9t\\u005c\xe9\n.", &Limits::default()).unwrap();
        assert!(matches!(p.root(), Value::Str(s) if s == "ét\\é"));
        for (bytes, want) in [
            (&b"I01\n."[..], 1.0),
            (b"I-5\n.", -5.0),
            (
                b"L123456789012345678901234567890L\n.",
                1.2345678901234568e29,
            ),
            (b"\x8a\x02\x00\xff.", -256.0),
            (b"\x8a\x01\xff.", -1.0),
            (
                b"\x8a\x09\x00\x00\x00\x00\x00\x00\x00\x00\x01.",
                18446744073709551616.0,
            ),
            (
                b"\x8a\x09\xff\xff\xff\xff\xff\xff\xff\xff\xfe.",
                -18446744073709551617.0,
            ),
            (b"Finf\n.", f64::INFINITY),
            (b"M\x01\x02.", 513.0),
        ] {
            let p = Pickle::load(bytes, &Limits::default()).unwrap();
            assert_eq!(p.root().as_f64(), Some(want), "{bytes:?}");
        }
    }

    #[test]
    fn dumps_round_trips_and_dicts_read() {
        let obj = PyObject::Dict(vec![
            (
                PyObject::Str("datapoints".into()),
                PyObject::List(vec![
                    PyObject::Tuple(vec![PyObject::Int(NOW), PyObject::Float(1.0)]),
                    PyObject::Tuple(vec![PyObject::Int(-70000), PyObject::Int(1 << 40)]),
                ]),
            ),
            (PyObject::Str("n".into()), PyObject::None),
            (PyObject::Str("b".into()), PyObject::Bytes(b"x".to_vec())),
            (
                PyObject::Str("t".into()),
                PyObject::Tuple(vec![PyObject::Bool(true); 5]),
            ),
        ]);
        for proto in [2, 3] {
            let bytes = dumps(&obj, proto);
            let p = Pickle::load(&bytes, &Limits::default()).unwrap();
            let Value::Dict(d) = p.root() else {
                panic!("not a dict")
            };
            assert_eq!(d.len(), 4);
            let dp = d.get_str("datapoints").unwrap().as_seq().unwrap();
            let second = dp.get(1).unwrap().as_seq().unwrap();
            assert_eq!(second.get(0).unwrap().as_f64(), Some(-70000.0));
            assert_eq!(second.get(1).unwrap().as_f64(), Some((1u64 << 40) as f64));
            assert!(matches!(d.get_str("n"), Some(Value::None)));
            assert_eq!(d.get_str("b").unwrap().as_text(), Some("x"));
            assert_eq!(d.get_str("t").unwrap().as_seq().unwrap().len(), 5);
        }
        assert_eq!(frame(b"ab").unwrap(), b"\x00\x00\x00\x02ab");
    }
}
