//! `Value`, `RawValue`, `Array`, `RawArray`: plain data in shared memory.

use std::fmt;
use std::marker::PhantomData;
use std::ops::{Deref, DerefMut};
use std::sync::atomic::Ordering;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::shared::{RawLock, Shared};
use crate::error::{Error, Result};
use crate::sys::sync::{OBJECT, word};

/// Plain old data that may live in shared memory: Python's ctypes types.
///
/// Implemented for the integer and float primitives and `bool`. Another
/// process may write any bytes into shared memory, so a `bool` is checked on
/// every read: a byte that is neither 0 nor 1 reads as `true` (as C's and
/// ctypes' `c_bool` do). `char` is not `Shareable` (not every `u32` is a
/// `char`): share its `u32`.
///
/// # Safety
/// Implementors must be `#[repr(C)]` (or primitive) plain data with no
/// pointers, references or destructors, for which **every bit pattern** is a
/// valid value (no `bool`, `char`, enum or reference inside: other processes
/// may write any bytes), with an alignment of at most 64.
///
/// ```
/// #[derive(Copy, Clone, Debug, PartialEq)]
/// #[repr(C)]
/// struct Point { x: f64, y: f64 }
/// // SAFETY: two f64s, no pointers, any bytes our API writes are a Point.
/// unsafe impl mp_proc::Shareable for Point {}
///
/// let p = mp_proc::Value::new(Point { x: 1.0, y: 2.0 })?;
/// p.lock()?.x += 1.0;
/// assert_eq!(p.get(), Point { x: 2.0, y: 2.0 });
/// # Ok::<(), mp_proc::Error>(())
/// ```
#[allow(unsafe_code)] // the contract of this trait is the user's promise
pub unsafe trait Shareable: Copy + Send + Sync + 'static {
    /// Makes the bytes of a value read from shared memory the bytes of a
    /// valid value (only types with invalid bit patterns, `bool`, do
    /// anything).
    #[doc(hidden)]
    fn repair(_bytes: &mut [u8]) {}
    /// Whether [`repair`](Self::repair) does anything.
    #[doc(hidden)]
    const REPAIRS: bool = false;
}

macro_rules! shareable {
    ($($t:ty),*) => { $(
        // SAFETY: a primitive whose every bit pattern is valid: plain bytes,
        // no pointers, align <= 16.
        #[allow(unsafe_code)]
        unsafe impl Shareable for $t {}
    )* };
}
shareable!(
    i8, i16, i32, i64, i128, isize, u8, u16, u32, u64, u128, usize, f32, f64
);

// SAFETY: one byte; `repair` makes every byte 0 or 1 before it is read as a
// bool, so every bit pattern in shared memory reads as a valid bool.
#[allow(unsafe_code)]
unsafe impl Shareable for bool {
    const REPAIRS: bool = true;
    fn repair(bytes: &mut [u8]) {
        bytes[0] = u8::from(bytes[0] != 0);
    }
}

// Layout: [mutex: 64][len: u64 @64][elem size: u32 @72][type: u64 @80] ... data @128.
const LEN: usize = OBJECT;
const ELEM: usize = OBJECT + 8;
const TYPE: usize = OBJECT + 16;
const DATA: usize = 2 * OBJECT;

/// Shared storage of `len` values of `T` behind a robust lock.
struct Cells<T> {
    raw: RawLock,
    len: usize,
    _t: PhantomData<T>,
}

impl<T: Shareable> Clone for Cells<T> {
    fn clone(&self) -> Self {
        Cells {
            raw: self.raw.clone(),
            len: self.len,
            _t: PhantomData,
        }
    }
}

impl<T: Shareable> Cells<T> {
    fn new(len: usize, init: Option<&dyn Fn(usize) -> T>, what: &'static str) -> Result<Cells<T>> {
        assert!(
            std::mem::align_of::<T>() <= OBJECT,
            "Shareable types are at most 64-aligned"
        );
        let bytes = len
            .checked_mul(std::mem::size_of::<T>())
            .and_then(|b| b.checked_add(DATA))
            .ok_or_else(|| Error::Overflow {
                what,
                reason: format!("{len} items do not fit in memory"),
            })?;
        let shared = Shared::new(bytes)?;
        let raw = RawLock::init(shared, 0, true, what)?;
        // The length as two words (u64 over 4-aligned atomics).
        word(&raw.shared.0, LEN).store(len as u32, Ordering::Release);
        word(&raw.shared.0, LEN + 4).store((len as u64 >> 32) as u32, Ordering::Release);
        word(&raw.shared.0, ELEM).store(std::mem::size_of::<T>() as u32, Ordering::Release);
        let ty = crate::wire::handle::type_tag::<T>();
        word(&raw.shared.0, TYPE).store(ty as u32, Ordering::Release);
        word(&raw.shared.0, TYPE + 4).store((ty >> 32) as u32, Ordering::Release);
        let cells = Cells {
            raw,
            len,
            _t: PhantomData,
        };
        // A new memory file is zero-filled: zeros need no writing.
        if let Some(init) = init {
            for i in 0..len {
                cells.write(i, init(i));
            }
        }
        Ok(cells)
    }

    fn from_shared(shared: Shared, what: &'static str) -> std::result::Result<Cells<T>, String> {
        let r = &shared.0;
        if r.len() < DATA {
            return Err(format!("a {what} region is too small"));
        }
        let len = word(r, LEN).load(Ordering::Acquire) as usize
            | (word(r, LEN + 4).load(Ordering::Acquire) as usize) << 32;
        let elem = word(r, ELEM).load(Ordering::Acquire) as usize;
        let ty = word(r, TYPE).load(Ordering::Acquire) as u64
            | (word(r, TYPE + 4).load(Ordering::Acquire) as u64) << 32;
        if elem != std::mem::size_of::<T>() || ty != crate::wire::handle::type_tag::<T>() {
            return Err(format!(
                "a {what} of another item type ({elem}-byte items) arrived as one of {}",
                std::any::type_name::<T>()
            ));
        }
        // Checked: the length is in shared memory, which any holder writes.
        if len
            .checked_mul(elem)
            .and_then(|b| b.checked_add(DATA))
            .is_none_or(|end| end > r.len())
        {
            return Err(format!(
                "a {what} claims {len} items, more than its {}-byte region holds",
                r.len()
            ));
        }
        Ok(Cells {
            raw: RawLock {
                shared,
                offset: 0,
                what,
            },
            len,
            _t: PhantomData,
        })
    }

    fn ptr(&self) -> *mut T {
        self.raw
            .shared
            .0
            .at(DATA, self.len * std::mem::size_of::<T>())
            .cast()
    }

    #[allow(unsafe_code)]
    fn read(&self, i: usize) -> T {
        assert!(i < self.len);
        // SAFETY: `ptr` is the aligned start of `len` items inside the
        // mapping (checked when the handle was made), `i < len`, and
        // `T::repair` makes any bytes a valid T (the Shareable contract).
        unsafe { crate::sys::shm::read_volatile(self.ptr(), i, T::repair) }
    }

    #[allow(unsafe_code)]
    fn write(&self, i: usize, v: T) {
        assert!(i < self.len);
        // SAFETY: as in `read`.
        unsafe { crate::sys::shm::write_volatile(self.ptr(), i, v) }
    }

    /// Runs `f` with the lock held (or, if its last owner died, after
    /// reporting nothing: plain reads and writes stay possible).
    fn locked<R>(&self, f: impl FnOnce() -> R) -> R {
        let held = matches!(self.raw.lock(None), Ok(true));
        let r = f();
        if held {
            let _ = self.raw.unlock();
        }
        r
    }
}

/// A guard giving exclusive access to shared values while it holds their lock.
pub struct SharedGuard<'a, T: ?Sized> {
    raw: &'a RawLock,
    data: &'a mut T,
    _not_send: PhantomData<*const ()>,
}

impl<T: ?Sized> Deref for SharedGuard<'_, T> {
    type Target = T;
    fn deref(&self) -> &T {
        self.data
    }
}

impl<T: ?Sized> DerefMut for SharedGuard<'_, T> {
    fn deref_mut(&mut self) -> &mut T {
        self.data
    }
}

impl<T: ?Sized> Drop for SharedGuard<'_, T> {
    fn drop(&mut self) {
        let _ = self.raw.unlock();
    }
}

impl<T: ?Sized + fmt::Debug> fmt::Debug for SharedGuard<'_, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&*self.data, f)
    }
}

/// A value shared by processes behind a lock, Python's `multiprocessing.Value`.
///
/// [`get`](Value::get) and [`set`](Value::set) take the lock for one copy;
/// [`lock`](Value::lock) holds it for a read-modify-write (`+= 1` is not
/// atomic otherwise, in Python as here).
///
/// ```
/// use mp_proc::{Process, Value};
///
/// fn add(counter: Value<u64>) {
///     for _ in 0..100 {
///         *counter.lock().unwrap() += 1;
///     }
/// }
///
/// let counter = Value::new(0u64)?;
/// let mut p = Process::new(add, counter.clone());
/// p.start()?;
/// add(counter.clone());
/// p.join()?;
/// assert_eq!(counter.get(), 200);
/// # Ok::<(), mp_proc::Error>(())
/// ```
pub struct Value<T: Shareable> {
    cells: Cells<T>,
}

/// A value in shared memory without a lock, Python's `RawValue`: each
/// [`get`](RawValue::get) and [`set`](RawValue::set) copies the whole value.
pub struct RawValue<T: Shareable> {
    cells: Cells<T>,
}

/// An array shared by processes behind a lock, Python's `multiprocessing.Array`.
///
/// ```
/// let a = mp_proc::Array::from_slice(&[1i32, 2, 3])?;
/// a.set(1, 20)?;
/// a.lock()?.iter_mut().for_each(|x| *x *= 10);
/// assert_eq!(a.to_vec(), [10, 200, 30]);
/// assert!(a.set(3, 0).is_err());
/// # Ok::<(), mp_proc::Error>(())
/// ```
pub struct Array<T: Shareable> {
    cells: Cells<T>,
}

/// An array in shared memory without a lock, Python's `RawArray`.
pub struct RawArray<T: Shareable> {
    cells: Cells<T>,
}

impl<T: Shareable> Value<T> {
    /// A shared value, initially `v`.
    pub fn new(v: T) -> Result<Value<T>> {
        Ok(Value {
            cells: Cells::new(1, Some(&|_| v), "Value")?,
        })
    }

    /// A copy of the value.
    pub fn get(&self) -> T {
        self.cells.locked(|| self.cells.read(0))
    }

    /// Replaces the value.
    pub fn set(&self, v: T) {
        self.cells.locked(|| self.cells.write(0, v))
    }

    /// Takes the lock and gives access to the value until the guard drops.
    #[allow(unsafe_code)] // a reference into shared memory, exclusive by the lock
    pub fn lock(&self) -> Result<SharedGuard<'_, T>> {
        self.cells.raw.lock(None)?;
        if T::REPAIRS {
            // SAFETY: the value's aligned slot in a live mapping, under its lock.
            unsafe { crate::sys::shm::repair_in_place(self.cells.ptr(), 1, T::repair) };
        }
        // SAFETY: the pointer is the value's aligned slot in a live mapping,
        // repaired above (a valid T); every access to it from any process
        // takes this lock first (get/set do), so the reference is exclusive
        // while the guard lives.
        let data = unsafe { &mut *self.cells.ptr() };
        Ok(SharedGuard {
            raw: &self.cells.raw,
            data,
            _not_send: PhantomData,
        })
    }
}

impl<T: Shareable> RawValue<T> {
    /// A shared value, initially `v`.
    pub fn new(v: T) -> Result<RawValue<T>> {
        Ok(RawValue {
            cells: Cells::new(1, Some(&|_| v), "RawValue")?,
        })
    }

    /// A copy of the value (another process may be writing it meanwhile).
    pub fn get(&self) -> T {
        self.cells.read(0)
    }

    /// Replaces the value.
    pub fn set(&self, v: T) {
        self.cells.write(0, v)
    }
}

impl<T: Shareable> Array<T> {
    /// An array of `len` zero-filled items.
    pub fn new(len: usize) -> Result<Array<T>> {
        Ok(Array {
            cells: Cells::new(len, None, "Array")?,
        })
    }
}

impl<T: Shareable> RawArray<T> {
    /// An array of `len` zero-filled items.
    pub fn new(len: usize) -> Result<RawArray<T>> {
        Ok(RawArray {
            cells: Cells::new(len, None, "RawArray")?,
        })
    }
}

macro_rules! array_methods {
    ($ty:ident, $what:literal, $locked:literal) => {
        impl<T: Shareable> $ty<T> {
            /// An array holding a copy of `values`.
            pub fn from_slice(values: &[T]) -> Result<$ty<T>> {
                Ok($ty {
                    cells: Cells::new(values.len(), Some(&|i| values[i]), $what)?,
                })
            }

            /// The number of items.
            pub fn len(&self) -> usize {
                self.cells.len
            }

            /// Whether it has no items.
            pub fn is_empty(&self) -> bool {
                self.cells.len == 0
            }

            /// A copy of item `i`, `None` past the end.
            pub fn get(&self, i: usize) -> Option<T> {
                (i < self.cells.len).then(|| self.read_one(i))
            }

            /// Replaces item `i`; past the end is an error (`IndexError`).
            pub fn set(&self, i: usize, v: T) -> Result<()> {
                if i >= self.cells.len {
                    return Err(Error::Index {
                        what: "Array",
                        index: i,
                        len: self.cells.len,
                    });
                }
                if $locked {
                    self.cells.locked(|| self.cells.write(i, v));
                } else {
                    self.cells.write(i, v);
                }
                Ok(())
            }

            /// A copy of every item.
            pub fn to_vec(&self) -> Vec<T> {
                let copy = || (0..self.cells.len).map(|i| self.cells.read(i)).collect();
                if $locked {
                    self.cells.locked(copy)
                } else {
                    copy()
                }
            }

            fn read_one(&self, i: usize) -> T {
                if $locked {
                    self.cells.locked(|| self.cells.read(i))
                } else {
                    self.cells.read(i)
                }
            }
        }
    };
}

array_methods!(Array, "Array", true);
array_methods!(RawArray, "RawArray", false);

impl<T: Shareable> Array<T> {
    /// Takes the lock and gives access to the items until the guard drops.
    #[allow(unsafe_code)] // a reference into shared memory, exclusive by the lock
    pub fn lock(&self) -> Result<SharedGuard<'_, [T]>> {
        self.cells.raw.lock(None)?;
        if T::REPAIRS {
            // SAFETY: `len` aligned slots in a live mapping, under their lock.
            unsafe {
                crate::sys::shm::repair_in_place(self.cells.ptr(), self.cells.len, T::repair)
            };
        }
        // SAFETY: the items are `len` aligned slots in a live mapping,
        // repaired above (valid Ts); every access from any process takes this
        // lock first, so the slice is exclusive while the guard lives.
        let data = unsafe { std::slice::from_raw_parts_mut(self.cells.ptr(), self.cells.len) };
        Ok(SharedGuard {
            raw: &self.cells.raw,
            data,
            _not_send: PhantomData,
        })
    }
}

macro_rules! handle_impls {
    ($ty:ident, $what:literal) => {
        impl<T: Shareable> Clone for $ty<T> {
            fn clone(&self) -> Self {
                $ty {
                    cells: self.cells.clone(),
                }
            }
        }

        impl<T: Shareable + fmt::Debug> fmt::Debug for $ty<T> {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                let items: Vec<T> = (0..self.cells.len).map(|i| self.cells.read(i)).collect();
                f.debug_tuple($what).field(&items).finish()
            }
        }

        impl<T: Shareable> Serialize for $ty<T> {
            fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
                self.cells
                    .raw
                    .shared
                    .serialize($what, crate::wire::handle::type_tag::<T>(), s)
            }
        }

        impl<'de, T: Shareable> Deserialize<'de> for $ty<T> {
            fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
                let shared = Shared::deserialize($what, crate::wire::handle::type_tag::<T>(), d)?;
                let cells = Cells::from_shared(shared, $what).map_err(serde::de::Error::custom)?;
                Ok($ty { cells })
            }
        }
    };
}

handle_impls!(Value, "Value");
handle_impls!(RawValue, "RawValue");
handle_impls!(Array, "Array");
handle_impls!(RawArray, "RawArray");

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_length_that_overflows_is_refused() {
        let cells = Cells::<u16>::new(4, None, "RawArray").unwrap();
        let r = &cells.raw.shared.0;
        // What a region whose header was overwritten would claim: 2^63 items
        // (times 2 bytes wraps to 0 without checked arithmetic).
        word(r, LEN).store(0, Ordering::Release);
        word(r, LEN + 4).store(1 << 31, Ordering::Release);
        let e = Cells::<u16>::from_shared(cells.raw.shared.clone(), "RawArray").err();
        assert!(e.is_some_and(|e| e.contains("more than its")));
    }

    #[test]
    fn a_region_of_another_item_type_is_refused() {
        let cells = Cells::<u8>::new(1, None, "Value").unwrap();
        assert!(Cells::<bool>::from_shared(cells.raw.shared.clone(), "Value").is_err());
        assert!(Cells::<i8>::from_shared(cells.raw.shared.clone(), "Value").is_err());
        assert!(Cells::<u8>::from_shared(cells.raw.shared.clone(), "Value").is_ok());
    }

    #[test]
    fn a_bool_reads_as_a_bool_whatever_the_byte() {
        let a = Array::<bool>::new(4).unwrap();
        // Another process may write any byte: here a 2, through the region.
        let r = &a.cells.raw.shared.0;
        word(r, DATA).store(2, Ordering::Release);
        assert_eq!(a.get(0), Some(true));
        let guard = a.lock().unwrap();
        assert!(guard[0]);
        drop(guard);
        assert_eq!(word(r, DATA).load(Ordering::Acquire) & 0xff, 1, "repaired");
    }
}
