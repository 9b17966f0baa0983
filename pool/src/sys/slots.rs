//! A call's result vector written in place by its tasks, each task into its
//! own range, from whichever threads run them: no copy of the results
//! after they are computed (a `map` of small items is bound by memory
//! traffic, and assembling parts copied its output once more).

use std::mem::ManuallyDrop;
use std::ops::Range;
use std::ptr::NonNull;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

/// Room for `len` values, in ranges that one [`Writer`] each fills from
/// its start.
pub(crate) struct Slots<R> {
    ptr: NonNull<R>,
    cap: usize,
    len: usize,
    ranges: Vec<Range<usize>>,
    /// Whether a writer of each range was handed out.
    claimed: Vec<AtomicBool>,
    /// How many values each range holds (set when its writer is done).
    written: Vec<AtomicUsize>,
}

// SAFETY: a `Slots` owns the values written into it (as a `Vec<R>` does);
// through a shared `Slots` each range is written by one `Writer` only (see
// `claim`), so sending values of `R` between threads is all it allows.
unsafe impl<R: Send> Send for Slots<R> {}
// SAFETY: as above: `&Slots` hands out disjoint writers, each used by one
// thread at a time, and reads nothing until `into_vec`, which owns it.
unsafe impl<R: Send> Sync for Slots<R> {}

impl<R> Slots<R> {
    /// Room for the values of `ranges`, which cover `0..len` in order
    /// without overlap (else `None`).
    pub(crate) fn new(ranges: Vec<Range<usize>>) -> Option<Slots<R>> {
        let mut next = 0;
        for r in &ranges {
            if r.start != next || r.end < r.start {
                return None;
            }
            next = r.end;
        }
        let mut buf = ManuallyDrop::new(Vec::<R>::with_capacity(next));
        let ptr = NonNull::new(buf.as_mut_ptr())?;
        let n = ranges.len();
        Some(Slots {
            ptr,
            cap: buf.capacity(),
            len: next,
            ranges,
            claimed: (0..n).map(|_| AtomicBool::new(false)).collect(),
            written: (0..n).map(|_| AtomicUsize::new(0)).collect(),
        })
    }

    /// The writer of range `i`, once (`None` after, or if there is no such range).
    pub(crate) fn claim(&self, i: usize) -> Option<Writer<'_, R>> {
        let range = self.ranges.get(i)?.clone();
        if self.claimed[i].swap(true, Ordering::AcqRel) {
            return None;
        }
        Some(Writer {
            slots: self,
            i,
            next: range.start,
            end: range.end,
        })
    }

    /// The values in order, if every range was filled.
    pub(crate) fn into_vec(self) -> Option<Vec<R>> {
        let full = (self.ranges.iter().zip(&self.written))
            .all(|(r, w)| w.load(Ordering::Acquire) == r.len());
        if !full {
            return None; // dropped: what was written is dropped with it
        }
        let this = ManuallyDrop::new(self);
        // SAFETY: the buffer came from a `Vec<R>` of capacity `cap`, and every
        // value of `0..len` was written once (each range in full, by its one
        // writer); `this` is not dropped, so the values are owned once.
        Some(unsafe { Vec::from_raw_parts(this.ptr.as_ptr(), this.len, this.cap) })
    }
}

impl<R> Slots<R> {
    /// Drops the values written in range `i`.
    ///
    /// # Safety
    ///
    /// Called at most once for each range, from `drop`: nothing reads them after.
    unsafe fn drop_range(&self, i: usize) {
        let n = self.written[i].load(Ordering::Acquire);
        // SAFETY: the first `n` values of range `i` were written (and not
        // moved out): the caller drops them once, here.
        unsafe {
            let first = self.ptr.as_ptr().add(self.ranges[i].start);
            std::ptr::drop_in_place(std::ptr::slice_from_raw_parts_mut(first, n));
        }
    }
}

impl<R> Drop for Slots<R> {
    fn drop(&mut self) {
        /// Drops the ranges from `next` on and frees the buffer, also when a
        /// value's `Drop` panics (the values after it are dropped, as a
        /// `Vec`'s are, and nothing leaks).
        struct Rest<'a, R> {
            slots: &'a Slots<R>,
            next: usize,
        }
        impl<R> Drop for Rest<'_, R> {
            fn drop(&mut self) {
                while self.next < self.slots.ranges.len() {
                    self.next += 1;
                    // SAFETY: each range once: `next` moved past it first.
                    unsafe { self.slots.drop_range(self.next - 1) };
                }
                // SAFETY: the buffer came from a `Vec<R>` of capacity `cap`;
                // with a length of 0 it frees the memory and drops nothing.
                drop(unsafe { Vec::from_raw_parts(self.slots.ptr.as_ptr(), 0, self.slots.cap) });
            }
        }
        let mut rest = Rest {
            slots: self,
            next: 0,
        };
        while rest.next < rest.slots.ranges.len() {
            rest.next += 1;
            // SAFETY: each range once: `next` moved past it first; a panic
            // here leaves the ranges after it to `rest`'s drop.
            unsafe { rest.slots.drop_range(rest.next - 1) };
        }
    }
}

/// Fills one range of [`Slots`] from its start.
pub(crate) struct Writer<'a, R> {
    slots: &'a Slots<R>,
    i: usize,
    next: usize,
    end: usize,
}

impl<R> Writer<'_, R> {
    /// Appends `value`; false (and `value` dropped) if the range is full.
    pub(crate) fn push(&mut self, value: R) -> bool {
        if self.next >= self.end {
            return false;
        }
        // SAFETY: `next` is inside this writer's range (checked above), which
        // no other writer has, and was not written yet.
        unsafe { self.slots.ptr.as_ptr().add(self.next).write(value) };
        self.next += 1;
        true
    }
}

impl<R> Drop for Writer<'_, R> {
    fn drop(&mut self) {
        let start = self.slots.ranges[self.i].start;
        self.slots.written[self.i].store(self.next - start, Ordering::Release);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn ranges_written_from_threads_make_the_vector_in_order() {
        let slots = Arc::new(Slots::<String>::new(vec![0..3, 3..5, 5..5, 5..9]).unwrap());
        std::thread::scope(|s| {
            for i in (0..4).rev() {
                let slots = slots.clone();
                s.spawn(move || {
                    let mut w = slots.claim(i).unwrap();
                    let r = slots.ranges[i].clone();
                    for k in r {
                        assert!(w.push(k.to_string()));
                    }
                    assert!(!w.push("too many".into()));
                });
            }
        });
        assert!(slots.claim(0).is_none(), "a range is claimed once");
        let v = Arc::try_unwrap(slots).ok().unwrap().into_vec().unwrap();
        assert_eq!(v, (0..9).map(|k| k.to_string()).collect::<Vec<_>>());
    }

    #[test]
    fn a_partly_written_vector_is_dropped_with_what_it_holds() {
        let token = Arc::new(());
        let slots = Slots::<Arc<()>>::new(vec![0..2, 2..4]).unwrap();
        let mut w = slots.claim(1).unwrap();
        w.push(token.clone());
        drop(w);
        assert_eq!(Arc::strong_count(&token), 2);
        assert!(slots.into_vec().is_none());
        assert_eq!(
            Arc::strong_count(&token),
            1,
            "the written value was dropped"
        );
        assert!(Slots::<u8>::new(vec![0..2, 3..4]).is_none(), "a gap");
        assert!(
            Slots::<u8>::new(vec![])
                .unwrap()
                .into_vec()
                .unwrap()
                .is_empty()
        );
    }
}
