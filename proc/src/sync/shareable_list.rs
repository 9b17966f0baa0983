//! `ShareableList`: a fixed-length list in a named block of shared memory,
//! with CPython's `multiprocessing.shared_memory.ShareableList` layout, so
//! that `python3` attaches to ours by name and we attach to its.
//!
//! The block, as CPython lays it out (native byte order):
//! - 8 bytes: the number of items `N` (`q`);
//! - `(N + 1) * 8` bytes: each item's offset into the data area, and the
//!   data area's end (`q` each; the first is 0);
//! - the data area: each item in its slot (8 bytes for a number, a bool or
//!   `None`; a multiple of 8 for a `str` or `bytes`, fixed at creation);
//! - `N * 8` bytes: each item's `struct` format, NUL-padded (`q`, `d`,
//!   `xxxxxxx?`, `xxxxxx?x`, `<slot>s`);
//! - `N` bytes: each item's kind (0 a number or bool, 1 `str`, 2 `bytes`,
//!   3 `None`).
//!
//! The block may be written by another process, or by `python3`, at any
//! time: every read is bounds-checked against the block, and a block that
//! does not follow the layout is [`Error::Decode`], never a panic.

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::error::{Error, Result};
use crate::sync::SharedMemory;

/// One item of a [`ShareableList`]: the types CPython's `ShareableList`
/// holds.
///
/// Equality is Rust's: `Int(1)`, `Float(1.0)` and `Bool(true)` differ
/// (Python's `1 == 1.0 == True` does not carry over to
/// [`count`](ShareableList::count) and [`index`](ShareableList::index)).
///
/// ```
/// use mp_proc::ShareableItem;
/// let item: ShareableItem = "howdy".into();
/// assert_eq!(item, ShareableItem::Str("howdy".into()));
/// assert_ne!(ShareableItem::Int(1), ShareableItem::Bool(true));
/// ```
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum ShareableItem {
    /// Python's `int` (format `q`: a signed 64-bit integer).
    Int(i64),
    /// Python's `float` (format `d`).
    Float(f64),
    /// Python's `bool` (format `xxxxxxx?`).
    Bool(bool),
    /// Python's `str`, UTF-8. Trailing NUL characters are not kept, as in
    /// CPython.
    Str(String),
    /// Python's `bytes`. Trailing NUL bytes are not kept, as in CPython.
    Bytes(Vec<u8>),
    /// Python's `None` (format `xxxxxx?x`).
    None,
}

impl From<i64> for ShareableItem {
    fn from(v: i64) -> Self {
        ShareableItem::Int(v)
    }
}
impl From<f64> for ShareableItem {
    fn from(v: f64) -> Self {
        ShareableItem::Float(v)
    }
}
impl From<bool> for ShareableItem {
    fn from(v: bool) -> Self {
        ShareableItem::Bool(v)
    }
}
impl From<&str> for ShareableItem {
    fn from(v: &str) -> Self {
        ShareableItem::Str(v.to_owned())
    }
}
impl From<String> for ShareableItem {
    fn from(v: String) -> Self {
        ShareableItem::Str(v)
    }
}
impl From<&[u8]> for ShareableItem {
    fn from(v: &[u8]) -> Self {
        ShareableItem::Bytes(v.to_vec())
    }
}
impl From<Vec<u8>> for ShareableItem {
    fn from(v: Vec<u8>) -> Self {
        ShareableItem::Bytes(v)
    }
}
impl From<()> for ShareableItem {
    fn from(_: ()) -> Self {
        ShareableItem::None
    }
}

const ALIGN: usize = 8;
const BOOL: &[u8] = b"xxxxxxx?";
const NONE: &[u8] = b"xxxxxx?x";
/// The longest slot a format of 8 characters can name (`9999999s`).
const MAX_SLOT: usize = 9_999_992;

/// How an item is stored: its format and its kind byte.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Format {
    Int,
    Float,
    Bool,
    None,
    /// `<n>s`: `n` bytes.
    Chars(usize),
}

impl Format {
    /// The format's `struct` text (at most 8 bytes).
    fn text(self) -> String {
        match self {
            Format::Int => "q".into(),
            Format::Float => "d".into(),
            Format::Bool => String::from_utf8_lossy(BOOL).into_owned(),
            Format::None => String::from_utf8_lossy(NONE).into_owned(),
            Format::Chars(n) => format!("{n}s"),
        }
    }

    /// How many bytes of the slot it covers.
    fn size(self) -> usize {
        match self {
            Format::Chars(n) => n,
            _ => ALIGN,
        }
    }

    /// Parses the 8 format bytes of a block (trailing NULs stripped, as
    /// CPython does).
    fn parse(raw: &[u8; 8]) -> Option<Format> {
        let end = raw.iter().rposition(|&b| b != 0).map_or(0, |i| i + 1);
        let text = &raw[..end];
        match text {
            b"q" => Some(Format::Int),
            b"d" => Some(Format::Float),
            BOOL => Some(Format::Bool),
            NONE => Some(Format::None),
            [digits @ .., b's'] if digits.iter().all(u8::is_ascii_digit) => {
                if digits.is_empty() {
                    return Some(Format::Chars(1));
                }
                // At most 7 digits: no overflow.
                let n = digits
                    .iter()
                    .fold(0usize, |n, d| n * 10 + usize::from(d - b'0'));
                Some(Format::Chars(n))
            }
            _ => Option::None,
        }
    }
}

/// An item encoded for its slot: format, kind byte, bytes.
fn encode(item: &ShareableItem, slot: usize) -> Result<(Format, u8, Vec<u8>)> {
    let chars = |bytes: &[u8], kind: u8| -> Result<(Format, u8, Vec<u8>)> {
        if bytes.len() > slot {
            return Err(Error::Invalid {
                what: "ShareableList",
                reason: format!(
                    "bytes/str item exceeds available storage ({} bytes, the slot holds {slot})",
                    bytes.len()
                ),
            });
        }
        let mut out = vec![0u8; slot];
        out[..bytes.len()].copy_from_slice(bytes);
        Ok((Format::Chars(slot), kind, out))
    };
    match item {
        ShareableItem::Int(v) => Ok((Format::Int, 0, v.to_ne_bytes().to_vec())),
        ShareableItem::Float(v) => Ok((Format::Float, 0, v.to_ne_bytes().to_vec())),
        ShareableItem::Bool(v) => {
            let mut out = vec![0u8; ALIGN];
            out[7] = u8::from(*v);
            Ok((Format::Bool, 0, out))
        }
        ShareableItem::None => Ok((Format::None, 3, vec![0u8; ALIGN])),
        ShareableItem::Str(s) => chars(s.as_bytes(), 1),
        ShareableItem::Bytes(b) => chars(b, 2),
    }
}

/// The slot CPython gives an item at creation: 8 bytes, or for `str` and
/// `bytes` the next multiple of 8 strictly above its length. CPython counts
/// a `str`'s characters, and cuts its UTF-8 short when that is too few
/// bytes (python/cpython#145261); there the slot is counted in bytes.
fn slot_for(item: &ShareableItem) -> Result<usize> {
    let (chars, len) = match item {
        ShareableItem::Str(s) => (s.chars().count(), s.len()),
        ShareableItem::Bytes(b) => (b.len(), b.len()),
        _ => return Ok(ALIGN),
    };
    let round = |n: usize| (n / ALIGN + 1) * ALIGN;
    let slot = if len <= round(chars) {
        round(chars)
    } else {
        round(len)
    };
    if slot > MAX_SLOT {
        return Err(Error::Invalid {
            what: "ShareableList::create",
            reason: format!(
                "an item of {len} bytes is too long (its format must fit 8 characters: at most {} bytes)",
                MAX_SLOT - 1
            ),
        });
    }
    Ok(slot)
}

fn corrupt(name: &str, what: impl fmt::Display) -> Error {
    Error::Decode(
        format!("shared memory block {name:?} is not a valid ShareableList: {what}").into(),
    )
}

/// The layout read from a block's header: its length and slots.
#[derive(Clone, Debug)]
struct Layout {
    /// `N + 1` offsets into the data area.
    offsets: Vec<usize>,
}

impl Layout {
    fn len(&self) -> usize {
        self.offsets.len() - 1
    }
    fn data_start(&self) -> usize {
        // Checked against the block size when read.
        (self.len() + 2) * ALIGN
    }
    fn formats_start(&self) -> usize {
        self.data_start() + self.offsets[self.len()]
    }
    fn kinds_start(&self) -> usize {
        self.formats_start() + self.len() * ALIGN
    }
    /// Item `i`'s offset in the block and slot size (`i < len`).
    fn slot(&self, i: usize) -> (usize, usize) {
        let start = self.offsets[i];
        (self.data_start() + start, self.offsets[i + 1] - start)
    }

    /// The bytes a list of these slots takes (`None` on overflow).
    fn size_for(slots: &[usize]) -> Option<usize> {
        let n = slots.len();
        let data = slots.iter().try_fold(0usize, |a, &s| a.checked_add(s))?;
        n.checked_add(2)?
            .checked_mul(ALIGN)?
            .checked_add(data)?
            .checked_add(n.checked_mul(ALIGN + 1)?)
    }

    /// Reads and checks the header of `shm`: every offset inside the block.
    fn read(shm: &SharedMemory) -> Result<Layout> {
        let name = shm.name();
        let size = shm.size();
        let mut word = [0u8; 8];
        shm.read_at(0, &mut word)
            .map_err(|_| corrupt(name, format!("{size} bytes is too short for a header")))?;
        let n = i64::from_ne_bytes(word);
        // Each item takes at least 8 + 8 + 8 + 1 bytes: the length is capped
        // by the block before anything is allocated.
        let n = usize::try_from(n)
            .ok()
            .filter(|&n| n <= size / 25)
            .ok_or_else(|| corrupt(name, format!("its length {n} does not fit {size} bytes")))?;
        let mut raw = vec![0u8; (n + 1) * ALIGN];
        shm.read_at(ALIGN, &mut raw)
            .map_err(|_| corrupt(name, format!("{n} offsets do not fit {size} bytes")))?;
        let offsets: Vec<usize> = raw
            .chunks_exact(ALIGN)
            .map(|c| {
                let mut w = [0u8; 8];
                w.copy_from_slice(c);
                usize::try_from(i64::from_ne_bytes(w)).unwrap_or(usize::MAX)
            })
            .collect();
        if offsets[0] != 0 {
            return Err(corrupt(name, "its first offset is not 0"));
        }
        if let Some(i) = offsets.windows(2).position(|w| w[1] < w[0]) {
            return Err(corrupt(
                name,
                format!("its offsets are not in order (item {i} ends before it starts)"),
            ));
        }
        let slots: Vec<usize> = offsets.windows(2).map(|w| w[1] - w[0]).collect();
        if Layout::size_for(&slots).is_none_or(|need| need > size) {
            return Err(corrupt(
                name,
                format!("its items end past the block of {size} bytes"),
            ));
        }
        Ok(Layout { offsets })
    }
}

/// A fixed-length list of [`ShareableItem`]s in a named block of shared
/// memory, Python's `multiprocessing.shared_memory.ShareableList`, with its
/// memory layout: `python3` attaches to a list made here by its name, and
/// [`attach`](ShareableList::attach) opens one `python3` made.
///
/// The length is fixed at creation, and so is each item's slot: 8 bytes for
/// a number, a bool or `None`; for `str` and `bytes` the next multiple of 8
/// above its length (CPython counts a `str` in characters; where its UTF-8
/// would not fit that, in bytes). An item may change type; a `str` or `bytes` longer
/// than its slot is [`Error::Invalid`] and changes nothing. There is no lock
/// (as in CPython): processes that write the same item at once need one of
/// their own.
///
/// The list lives in its [`shm`](ShareableList::shm), which follows
/// [`SharedMemory`]'s rules: the creator's resource tracker unlinks it when
/// the creator ends, or [`shm().unlink()`](SharedMemory::unlink) does.
/// A clone, or a list passed in a child's `args`, is the same memory.
///
/// ```
/// use mp_proc::{ShareableItem, ShareableList};
/// let items = ["howdy".into(), ShareableItem::Bytes(b"HoWdY".to_vec()), (-273.154).into(),
///              100.into(), ShareableItem::None, true.into(), 42.into()];
/// let list = ShareableList::create(None, &items)?;
/// assert_eq!(list.format()?, "8s8sdqxxxxxx?xxxxxxxx?q");
/// let other = ShareableList::attach(list.name())?;
/// other.set(4, "some".into())?;
/// assert_eq!(list.get(4)?, ShareableItem::Str("some".into()));
/// assert!(list.set(4, "far too many".into()).is_err());
/// assert_eq!(list.index(&42.into())?, 6);
/// list.shm().unlink()?;
/// # Ok::<(), mp_proc::Error>(())
/// ```
#[derive(Clone)]
pub struct ShareableList {
    shm: SharedMemory,
    layout: Layout,
}

impl ShareableList {
    /// Creates a block named `name` (or a made-up name) holding `items`.
    /// An existing name is an error.
    ///
    /// ```
    /// use mp_proc::{ShareableItem, ShareableList};
    /// let list = ShareableList::create(None, &[1.into(), "two".into(), ShareableItem::None])?;
    /// assert_eq!(list.len(), 3);
    /// assert_eq!(list.get(1)?, ShareableItem::Str("two".into()));
    /// list.shm().unlink()?;
    /// # Ok::<(), mp_proc::Error>(())
    /// ```
    pub fn create(name: Option<&str>, items: &[ShareableItem]) -> Result<ShareableList> {
        let slots = items.iter().map(slot_for).collect::<Result<Vec<_>>>()?;
        let size = Layout::size_for(&slots).ok_or_else(|| Error::Invalid {
            what: "ShareableList::create",
            reason: "the items do not fit in memory".into(),
        })?;
        let mut offsets = Vec::with_capacity(slots.len() + 1);
        offsets.push(0usize);
        for s in &slots {
            // size_for has checked the sum.
            offsets.push(offsets[offsets.len() - 1] + s);
        }
        let layout = Layout { offsets };
        let mut image = vec![0u8; size];
        image[..ALIGN].copy_from_slice(&(items.len() as i64).to_ne_bytes());
        for (i, off) in layout.offsets.iter().enumerate() {
            let at = ALIGN * (i + 1);
            image[at..at + ALIGN].copy_from_slice(&(*off as i64).to_ne_bytes());
        }
        for (i, item) in items.iter().enumerate() {
            let (at, slot) = layout.slot(i);
            let (format, kind, bytes) = encode(item, slot)?;
            image[at..at + bytes.len()].copy_from_slice(&bytes);
            let text = format.text();
            let f = layout.formats_start() + i * ALIGN;
            image[f..f + text.len()].copy_from_slice(text.as_bytes());
            image[layout.kinds_start() + i] = kind;
        }
        let shm = SharedMemory::create(name, size)?;
        if let Err(e) = shm.write_at(0, &image) {
            let _ = shm.unlink();
            return Err(e);
        }
        Ok(ShareableList { shm, layout })
    }

    /// Opens the list in the existing block `name` (made here or by
    /// `python3`). A block that is not a `ShareableList` is
    /// [`Error::Decode`].
    ///
    /// ```
    /// use mp_proc::{Error, ShareableList, SharedMemory};
    /// let list = ShareableList::create(None, &[7.into()])?;
    /// assert_eq!(ShareableList::attach(list.name())?.get(0)?, 7.into());
    /// let zeros = SharedMemory::create(None, 4)?; // not a list
    /// assert!(matches!(ShareableList::attach(zeros.name()), Err(Error::Decode(_))));
    /// # zeros.unlink()?;
    /// list.shm().unlink()?;
    /// # Ok::<(), mp_proc::Error>(())
    /// ```
    pub fn attach(name: &str) -> Result<ShareableList> {
        ShareableList::from_shm(SharedMemory::attach(name)?)
    }

    /// The list in an open block (checks its header).
    ///
    /// ```
    /// use mp_proc::{ShareableList, SharedMemory};
    /// let list = ShareableList::create(None, &[true.into()])?;
    /// let again = ShareableList::from_shm(SharedMemory::attach(list.name())?)?;
    /// assert_eq!(again.get(0)?, true.into());
    /// again.into_shm().unlink()?;
    /// # Ok::<(), mp_proc::Error>(())
    /// ```
    pub fn from_shm(shm: SharedMemory) -> Result<ShareableList> {
        let layout = Layout::read(&shm)?;
        Ok(ShareableList { shm, layout })
    }

    /// The number of items (fixed at creation).
    pub fn len(&self) -> usize {
        self.layout.len()
    }

    /// Whether the list has no items.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The block's name (without a leading `/`).
    pub fn name(&self) -> &str {
        self.shm.name()
    }

    /// The block (Python's `.shm`): to unlink it, or read its bytes.
    pub fn shm(&self) -> &SharedMemory {
        &self.shm
    }

    /// The block, giving up the list.
    pub fn into_shm(self) -> SharedMemory {
        self.shm
    }

    fn check(&self, i: usize) -> Result<()> {
        if i >= self.len() {
            return Err(Error::Index {
                what: "ShareableList",
                index: i,
                len: self.len(),
            });
        }
        Ok(())
    }

    fn format_at(&self, i: usize) -> Result<Format> {
        let mut raw = [0u8; 8];
        self.shm
            .read_at(self.layout.formats_start() + i * ALIGN, &mut raw)?;
        Format::parse(&raw).ok_or_else(|| {
            corrupt(
                self.name(),
                format!(
                    "item {i}'s format {:?} is unknown",
                    String::from_utf8_lossy(&raw)
                ),
            )
        })
    }

    /// Item `i` ([`Error::Index`] past the end; [`Error::Decode`] if the
    /// block holds no valid item there, e.g. a `str` that is not UTF-8).
    ///
    /// ```
    /// use mp_proc::{Error, ShareableList};
    /// let list = ShareableList::create(None, &[2.5.into()])?;
    /// assert_eq!(list.get(0)?, 2.5.into());
    /// assert!(matches!(list.get(1), Err(Error::Index { index: 1, len: 1, .. })));
    /// # list.shm().unlink()?;
    /// # Ok::<(), mp_proc::Error>(())
    /// ```
    pub fn get(&self, i: usize) -> Result<ShareableItem> {
        self.check(i)?;
        let format = self.format_at(i)?;
        let mut kind = [0u8];
        self.shm.read_at(self.layout.kinds_start() + i, &mut kind)?;
        let (at, slot) = self.layout.slot(i);
        if format.size() > slot {
            return Err(corrupt(
                self.name(),
                format!(
                    "item {i}'s format {:?} is larger than its slot of {slot} bytes",
                    format.text()
                ),
            ));
        }
        let mut bytes = vec![0u8; format.size()];
        self.shm.read_at(at, &mut bytes)?;
        let word = || {
            let mut w = [0u8; 8];
            w.copy_from_slice(&bytes[..ALIGN]);
            w
        };
        let stripped =
            |b: &[u8]| b[..b.iter().rposition(|&c| c != 0).map_or(0, |p| p + 1)].to_vec();
        match (kind[0], format) {
            (0, Format::Int) => Ok(ShareableItem::Int(i64::from_ne_bytes(word()))),
            (0, Format::Float) => Ok(ShareableItem::Float(f64::from_ne_bytes(word()))),
            (0, Format::Bool) => Ok(ShareableItem::Bool(bytes[7] != 0)),
            (3, _) => Ok(ShareableItem::None),
            (1, Format::Chars(_)) => String::from_utf8(stripped(&bytes))
                .map(ShareableItem::Str)
                .map_err(|e| corrupt(self.name(), format!("item {i} is not UTF-8: {e}"))),
            (2, Format::Chars(_)) => Ok(ShareableItem::Bytes(stripped(&bytes))),
            (kind, format) => Err(corrupt(
                self.name(),
                format!("item {i} has kind {kind} with format {:?}", format.text()),
            )),
        }
    }

    /// Sets item `i` ([`Error::Index`] past the end). A `str` or `bytes`
    /// longer than the item's slot is [`Error::Invalid`] and changes
    /// nothing.
    ///
    /// ```
    /// use mp_proc::{Error, ShareableItem, ShareableList};
    /// let list = ShareableList::create(None, &[0.into()])?;
    /// list.set(0, "8 bytes!".into())?; // a number's slot holds 8 bytes
    /// assert!(matches!(list.set(0, "9 bytes!!".into()), Err(Error::Invalid { .. })));
    /// assert_eq!(list.get(0)?, ShareableItem::Str("8 bytes!".into()));
    /// # list.shm().unlink()?;
    /// # Ok::<(), mp_proc::Error>(())
    /// ```
    pub fn set(&self, i: usize, item: ShareableItem) -> Result<()> {
        self.check(i)?;
        let (at, slot) = self.layout.slot(i);
        let (format, kind, bytes) = encode(&item, slot)?;
        if format.size() > slot || format.text().len() > ALIGN {
            return Err(corrupt(
                self.name(),
                format!("item {i}'s slot of {slot} bytes cannot hold {item:?}"),
            ));
        }
        let mut text = [0u8; 8];
        let t = format.text();
        text[..t.len()].copy_from_slice(t.as_bytes());
        // CPython's order: format, kind, value.
        self.shm
            .write_at(self.layout.formats_start() + i * ALIGN, &text)?;
        self.shm.write_at(self.layout.kinds_start() + i, &[kind])?;
        self.shm.write_at(at, &bytes)
    }

    /// The items, read one by one.
    ///
    /// ```
    /// let list = mp_proc::ShareableList::create(None, &[1.into(), 2.into()])?;
    /// let sum: i64 = list.iter().map(|item| match item? {
    ///     mp_proc::ShareableItem::Int(n) => Ok(n),
    ///     _ => Ok(0),
    /// }).sum::<mp_proc::Result<i64>>()?;
    /// assert_eq!(sum, 3);
    /// assert_eq!(list.to_vec()?, vec![1.into(), 2.into()]);
    /// # list.shm().unlink()?;
    /// # Ok::<(), mp_proc::Error>(())
    /// ```
    pub fn iter(&self) -> impl Iterator<Item = Result<ShareableItem>> + '_ {
        (0..self.len()).map(|i| self.get(i))
    }

    /// All the items (Python's `list(sl)`).
    pub fn to_vec(&self) -> Result<Vec<ShareableItem>> {
        self.iter().collect()
    }

    /// The `struct` formats of all the items, joined (Python's `.format`).
    pub fn format(&self) -> Result<String> {
        (0..self.len())
            .map(|i| self.format_at(i).map(Format::text))
            .collect()
    }

    /// How many items equal `value`.
    ///
    /// ```
    /// let list = mp_proc::ShareableList::create(None, &[1.into(), 1.into(), true.into()])?;
    /// assert_eq!(list.count(&1.into())?, 2);
    /// assert_eq!(list.index(&true.into())?, 2);
    /// assert!(list.index(&"absent".into()).is_err());
    /// # list.shm().unlink()?;
    /// # Ok::<(), mp_proc::Error>(())
    /// ```
    pub fn count(&self, value: &ShareableItem) -> Result<usize> {
        let mut n = 0;
        for item in self.iter() {
            n += usize::from(item? == *value);
        }
        Ok(n)
    }

    /// The first index of `value`; [`Error::Invalid`] if it is not there.
    pub fn index(&self, value: &ShareableItem) -> Result<usize> {
        for (i, item) in self.iter().enumerate() {
            if item? == *value {
                return Ok(i);
            }
        }
        Err(Error::Invalid {
            what: "ShareableList::index",
            reason: format!("{value:?} not in this container"),
        })
    }
}

impl fmt::Debug for ShareableList {
    /// The name and the items as they are now (or why they cannot be read).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut d = f.debug_struct("ShareableList");
        d.field("name", &self.name());
        match self.to_vec() {
            Ok(items) => d.field("items", &items),
            Err(e) => d.field("items", &format_args!("<{e}>")),
        };
        d.finish()
    }
}

impl Serialize for ShareableList {
    /// As its [`SharedMemory`]: a handle, for a child's `args`.
    fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        self.shm.serialize(s)
    }
}

impl<'de> Deserialize<'de> for ShareableList {
    /// The block, whose header is checked again on arrival.
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        let shm = SharedMemory::deserialize(d)?;
        ShareableList::from_shm(shm).map_err(|e| {
            let message = match e {
                Error::Decode(inner) => inner.to_string(),
                other => other.to_string(),
            };
            crate::wire::payload::decode_failure(message)
        })
    }
}
