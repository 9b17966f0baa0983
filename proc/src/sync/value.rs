//! `Value`, `RawValue`, `Array`, `RawArray`: plain data in shared memory.

use std::fmt;
use std::marker::PhantomData;
use std::ops::{Deref, DerefMut};
use std::sync::atomic::Ordering;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::lock::{AnyLock, Lock, RLock};
use super::shared::{RawLock, RegionRef, Shared};
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

/// Shared storage of `len` values of `T` behind a robust lock: its own
/// (an `RLock` at the head of its region), or another (CPython's `lock=`).
struct Cells<T> {
    /// The region of the items (and of their own lock).
    data: Shared,
    /// The lock that `get`, `set` and `lock` take.
    raw: RawLock,
    /// The lock it was made with, when not its own.
    external: Option<AnyLock>,
    /// Which memory it is, in every mapping and process (device, inode):
    /// what a guard claims.
    memory: (u64, u64),
    len: usize,
    _t: PhantomData<T>,
}

impl<T: Shareable> Clone for Cells<T> {
    fn clone(&self) -> Self {
        Cells {
            data: self.data.clone(),
            raw: self.raw.clone(),
            external: self.external.clone(),
            memory: self.memory,
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
        let memory = guarded::memory(&shared)?;
        let raw = RawLock::init(shared, 0, true, what)?;
        // The length as two words (u64 over 4-aligned atomics).
        word(&raw.shared.0, LEN).store(len as u32, Ordering::Release);
        word(&raw.shared.0, LEN + 4).store((len as u64 >> 32) as u32, Ordering::Release);
        word(&raw.shared.0, ELEM).store(std::mem::size_of::<T>() as u32, Ordering::Release);
        let ty = crate::wire::handle::type_tag::<T>();
        word(&raw.shared.0, TYPE).store(ty as u32, Ordering::Release);
        word(&raw.shared.0, TYPE + 4).store((ty >> 32) as u32, Ordering::Release);
        let cells = Cells {
            data: raw.shared.clone(),
            raw,
            external: None,
            memory,
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
        let memory = guarded::memory(&shared).map_err(|e| e.to_string())?;
        Ok(Cells {
            data: shared.clone(),
            raw: RawLock {
                shared,
                offset: 0,
                what,
            },
            external: None,
            memory,
            len,
            _t: PhantomData,
        })
    }

    /// The same cells behind `lock` instead of their own.
    fn behind(mut self, lock: AnyLock) -> Cells<T> {
        self.raw = RawLock {
            what: self.raw.what,
            ..lock.raw().clone()
        };
        self.external = Some(lock);
        self
    }

    /// The lock that guards them, as a handle: the one they were made
    /// with, or their own (an `RLock`, as CPython's default, on a mapping
    /// of its own: it may go in a child's args beside the value).
    fn get_lock(&self) -> Result<AnyLock> {
        match &self.external {
            Some(lock) => Ok(lock.clone()),
            None => Ok(AnyLock::RLock(RLock::from_region(
                self.data.another_mapping()?,
                0,
            ))),
        }
    }

    /// The same items without a lock (`what`: the raw kind's name), on a
    /// mapping of their own (it may go in a child's args beside the value).
    fn raw_view(&self, what: &'static str) -> Result<Cells<T>> {
        let data = self.data.another_mapping()?;
        Ok(Cells {
            data: data.clone(),
            raw: RawLock {
                shared: data,
                offset: 0,
                what,
            },
            external: None,
            memory: self.memory,
            len: self.len,
            _t: PhantomData,
        })
    }

    fn ptr(&self) -> *mut T {
        self.data
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

    /// Runs `f` without the lock (a raw kind's access).
    ///
    /// Panics if this thread holds a guard of this memory (a `get_obj`
    /// view beside its value's guard; see [`guarded::refuse_beside_guard`]).
    fn unlocked<R>(&self, f: impl FnOnce() -> R) -> R {
        guarded::refuse_beside_guard(self.memory, self.raw.what);
        f()
    }

    /// Runs `f` with the lock held. A dead last owner is not reported here
    /// (`get` and `set` cannot fail): the lock, freed, is taken again. A
    /// lock this thread holds already (a `Lock` given to `with_lock` and
    /// acquired) is not taken twice: `f` runs under it.
    ///
    /// Panics if this thread holds a guard of this memory (see
    /// [`guarded::refuse_beside_guard`]).
    fn locked<R>(&self, f: impl FnOnce() -> R) -> R {
        guarded::refuse_beside_guard(self.memory, self.raw.what);
        let mut held = false;
        for _ in 0..2 {
            match self.raw.lock(None) {
                Ok(taken) => {
                    held = taken;
                    break;
                }
                // Released again by `lock`: take it once more.
                Err(Error::OwnerDied { .. }) => continue,
                // This thread holds it (a plain `Lock`), or the lock is
                // broken: nothing to take.
                Err(_) => break,
            }
        }
        let r = f();
        if held {
            let _ = self.raw.unlock();
        }
        r
    }
}

/// A guard giving exclusive access to shared values while it holds their lock.
///
/// One thread holds at most one guard of a memory at a time: the lock may
/// be reentrant (a value's own lock is an `RLock`), and a second guard
/// would be a second `&mut` to the same memory, so it is
/// [`Error::Invalid`] (from any handle of that memory).
///
/// ```
/// let v = mp_proc::Value::new(1u8)?;
/// let g = v.lock()?;
/// assert!(matches!(v.clone().lock(), Err(mp_proc::Error::Invalid { .. })));
/// drop(g);
/// *v.lock()? += 1;
/// assert_eq!(v.get(), 2);
/// # Ok::<(), mp_proc::Error>(())
/// ```
pub struct SharedGuard<'a, T: ?Sized> {
    raw: &'a RawLock,
    data: &'a mut T,
    /// This thread's claim on the memory (given up after the unlock).
    _claim: guarded::Claim,
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
        let claim = guarded::Claim::take(self.cells.memory, "Value::lock")?;
        self.cells.raw.lock(None)?;
        if T::REPAIRS {
            // SAFETY: the value's aligned slot in a live mapping, under its lock.
            unsafe { crate::sys::shm::repair_in_place(self.cells.ptr(), 1, T::repair) };
        }
        // SAFETY: the pointer is the value's aligned slot in a live mapping,
        // repaired above (a valid T); every access to it from any process
        // takes this lock first (get/set do), and this thread, which may
        // hold it again, holds no other guard of this memory (the claim),
        // so the reference is exclusive while the guard lives.
        let data = unsafe { &mut *self.cells.ptr() };
        Ok(SharedGuard {
            raw: &self.cells.raw,
            data,
            _claim: claim,
            _not_send: PhantomData,
        })
    }
}

impl<T: Shareable> Value<T> {
    /// A shared value, initially `v`, guarded by `lock` (a [`Lock`] or an
    /// [`RLock`]) instead of a lock of its own: CPython's
    /// `Value(typecode, v, lock=lock)`. Values made with one lock exclude
    /// each other: a holder of that lock, or of a guard of either,
    /// excludes [`get`](Self::get), [`set`](Self::set) and
    /// [`lock`](Self::lock) of both. The pairing travels with the handle:
    /// signed, no relay can give the value another lock.
    ///
    /// `Value::new` is CPython's `lock=True` (its own lock, an `RLock`),
    /// [`RawValue`] is `lock=False`; anything else than a lock is not
    /// a lock (Python's `AttributeError`) at compile time.
    ///
    /// ```
    /// use mp_proc::{RLock, Value};
    ///
    /// let lock = RLock::new()?;
    /// let (a, b) = (Value::with_lock(1u32, lock.clone())?, Value::with_lock(2u32, lock.clone())?);
    /// {
    ///     // One lock for both: a transfer that no reader sees half done.
    ///     let _both = lock.acquire()?;
    ///     *a.lock()? -= 1;
    ///     *b.lock()? += 1;
    /// }
    /// assert_eq!((a.get(), b.get()), (0, 3));
    /// # Ok::<(), mp_proc::Error>(())
    /// ```
    pub fn with_lock(v: T, lock: impl Into<AnyLock>) -> Result<Value<T>> {
        Ok(Value {
            cells: Cells::new(1, Some(&|_| v), "Value")?.behind(lock.into()),
        })
    }

    /// The lock that guards it (CPython's `get_lock()`): the one it was
    /// made with, or its own, an [`RLock`] (then on a new mapping of the
    /// same memory: an error only if no descriptor is left). Holding it
    /// excludes [`lock`](Self::lock) guards, [`get`](Self::get) and
    /// [`set`](Self::set) in other threads and processes.
    ///
    /// ```
    /// let v = mp_proc::Value::new(5i32)?;
    /// let lock = v.get_lock()?;
    /// let held = lock.acquire()?;
    /// assert!(lock.is_reentrant() && lock.locked());
    /// *v.lock()? += 1; // an RLock: this thread may take it again
    /// drop(held);
    /// assert_eq!(v.get(), 6);
    /// # Ok::<(), mp_proc::Error>(())
    /// ```
    pub fn get_lock(&self) -> Result<AnyLock> {
        self.cells.get_lock()
    }

    /// The value without its lock (CPython's `get_obj()`): a [`RawValue`]
    /// of the same memory (a new mapping: an error only if no descriptor is
    /// left), whose reads and writes do not wait.
    ///
    /// # Safety
    /// A guard from [`lock`](Self::lock) is a `&mut` to the memory, which
    /// the view bypasses: while such a guard of this memory lives, in any
    /// thread or process, the view (and every copy of it) must not be read
    /// or written. (In the guard's own thread the view panics instead; a
    /// guard elsewhere cannot be seen.) Hold [`get_lock`](Self::get_lock)
    /// around the view's accesses, or use it only where no guard is taken.
    ///
    /// ```
    /// let v = mp_proc::Value::new(5i32)?;
    /// let lock = v.get_lock()?;
    /// // SAFETY: every access to `raw` below holds the value's lock, so no
    /// // `lock()` guard of it lives meanwhile.
    /// let raw = unsafe { v.get_obj()? };
    /// let held = lock.acquire()?;
    /// raw.set(raw.get() + 2);
    /// drop(held);
    /// assert_eq!(v.get(), 7);
    /// # Ok::<(), mp_proc::Error>(())
    /// ```
    #[allow(unsafe_code)] // its contract, not its body: see `# Safety`
    pub unsafe fn get_obj(&self) -> Result<RawValue<T>> {
        Ok(RawValue {
            cells: self.cells.raw_view("RawValue")?,
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
    ///
    /// # Panics
    /// If this thread holds a guard of the same memory (a view from
    /// [`Value::get_obj`] while its value's `lock()` guard lives).
    pub fn get(&self) -> T {
        self.cells.unlocked(|| self.cells.read(0))
    }

    /// Replaces the value.
    ///
    /// # Panics
    /// As [`get`](Self::get).
    pub fn set(&self, v: T) {
        self.cells.unlocked(|| self.cells.write(0, v))
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
                    self.cells.unlocked(|| self.cells.write(i, v));
                }
                Ok(())
            }

            /// A copy of every item.
            pub fn to_vec(&self) -> Vec<T> {
                let copy = || (0..self.cells.len).map(|i| self.cells.read(i)).collect();
                if $locked {
                    self.cells.locked(copy)
                } else {
                    self.cells.unlocked(copy)
                }
            }

            fn read_one(&self, i: usize) -> T {
                if $locked {
                    self.cells.locked(|| self.cells.read(i))
                } else {
                    self.cells.unlocked(|| self.cells.read(i))
                }
            }
        }
    };
}

array_methods!(Array, "Array", true);
array_methods!(RawArray, "RawArray", false);

impl<T: Shareable> Array<T> {
    /// An array holding a copy of `values`, guarded by `lock` instead of a
    /// lock of its own: CPython's `Array(typecode, values, lock=lock)`. As
    /// [`Value::with_lock`].
    ///
    /// ```
    /// use mp_proc::{AnyLock, Array, Lock};
    ///
    /// let lock = Lock::new()?;
    /// let a = Array::with_lock(&[1u8, 2, 3], lock.clone())?;
    /// assert_eq!(a.get_lock()?, AnyLock::Lock(lock.clone()));
    /// let held = lock.acquire()?;
    /// // SAFETY: the view is used while the lock is held: no guard lives.
    /// unsafe { a.get_obj()? }.set(0, 10)?;
    /// drop(held);
    /// assert_eq!(a.to_vec(), [10, 2, 3]);
    /// # Ok::<(), mp_proc::Error>(())
    /// ```
    pub fn with_lock(values: &[T], lock: impl Into<AnyLock>) -> Result<Array<T>> {
        Ok(Array {
            cells: Cells::new(values.len(), Some(&|i| values[i]), "Array")?.behind(lock.into()),
        })
    }

    /// The lock that guards it (CPython's `get_lock()`), as
    /// [`Value::get_lock`].
    pub fn get_lock(&self) -> Result<AnyLock> {
        self.cells.get_lock()
    }

    /// The items without their lock (CPython's `get_obj()`): a
    /// [`RawArray`] of the same memory.
    ///
    /// # Safety
    /// As [`Value::get_obj`]: while a guard from [`lock`](Self::lock) of
    /// this memory lives, in any thread or process, the view must not be
    /// read or written.
    #[allow(unsafe_code)] // its contract, not its body: see `# Safety`
    pub unsafe fn get_obj(&self) -> Result<RawArray<T>> {
        Ok(RawArray {
            cells: self.cells.raw_view("RawArray")?,
        })
    }

    /// Takes the lock and gives access to the items until the guard drops.
    #[allow(unsafe_code)] // a reference into shared memory, exclusive by the lock
    pub fn lock(&self) -> Result<SharedGuard<'_, [T]>> {
        let claim = guarded::Claim::take(self.cells.memory, "Array::lock")?;
        self.cells.raw.lock(None)?;
        if T::REPAIRS {
            // SAFETY: `len` aligned slots in a live mapping, under their lock.
            unsafe {
                crate::sys::shm::repair_in_place(self.cells.ptr(), self.cells.len, T::repair)
            };
        }
        // SAFETY: the items are `len` aligned slots in a live mapping,
        // repaired above (valid Ts); every access from any process takes this
        // lock first, and this thread holds no other guard of this memory
        // (the claim), so the slice is exclusive while the guard lives.
        let data = unsafe { std::slice::from_raw_parts_mut(self.cells.ptr(), self.cells.len) };
        Ok(SharedGuard {
            raw: &self.cells.raw,
            data,
            _claim: claim,
            _not_send: PhantomData,
        })
    }
}

/// The lock a `Value` or an `Array` was made with, as a field of its
/// handle (covered by the handle's tag).
#[derive(Serialize, Deserialize)]
struct LockRef {
    reentrant: bool,
    region: RegionRef,
}

const fn lock_kind(reentrant: bool) -> &'static str {
    if reentrant { "RLock" } else { "Lock" }
}

impl LockRef {
    fn push<E: serde::ser::Error>(lock: &AnyLock) -> std::result::Result<LockRef, E> {
        let reentrant = lock.is_reentrant();
        Ok(LockRef {
            reentrant,
            region: lock.raw().shared.push_ref(lock_kind(reentrant), 0)?,
        })
    }

    fn take<E: serde::de::Error>(self) -> std::result::Result<AnyLock, E> {
        let shared = Shared::take_ref(self.region, lock_kind(self.reentrant), 0)?;
        Ok(match self.reentrant {
            true => AnyLock::RLock(RLock::from_region(shared, 0)),
            false => AnyLock::Lock(Lock::from_region(shared, 0)),
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
                // Its lock, when not its own: a field its tag covers.
                let lock = match &self.cells.external {
                    Some(l) => Some(LockRef::push(l)?),
                    None => None,
                };
                let ty = crate::wire::handle::type_tag::<T>();
                self.cells.data.serialize_with($what, ty, &lock, s)
            }
        }

        impl<'de, T: Shareable> Deserialize<'de> for $ty<T> {
            fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
                let ty = crate::wire::handle::type_tag::<T>();
                let (shared, lock) = Shared::deserialize_with::<D, Option<LockRef>>($what, ty, d)?;
                let cells = Cells::from_shared(shared, $what).map_err(serde::de::Error::custom)?;
                let cells = match lock {
                    Some(l) => cells.behind(l.take()?),
                    None => cells,
                };
                Ok($ty { cells })
            }
        }
    };
}

handle_impls!(Value, "Value");
handle_impls!(RawValue, "RawValue");
handle_impls!(Array, "Array");
handle_impls!(RawArray, "RawArray");

mod guarded;

#[cfg(test)]
mod tests;
