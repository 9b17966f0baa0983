//! Buffers of a call's items, kept by a pool for its next calls.

use std::any::{Any, TypeId};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard};

use mp_proc::plumbing::lock;

/// Emptied input buffers of chunks, kept by a pool for the chunks of its
/// next calls: a `map` then does not allocate (and fault in) its input anew
/// every call, and a call's memory is about its output's. (Without it, a
/// call's input and output together sat right at glibc's trim threshold,
/// which then gave the heap back and faulted it in again in every call, ten
/// times slower.) Only buffers of at least [`SPARE_MIN`] bytes are kept,
/// [`SPARE_COUNT`] of them at most, and [`SPARE_BYTES`] in all.
///
/// A buffer is kept with the thread that touched it last (the one that
/// gives it back), and a thread takes its own first: memory another CPU
/// touched last is in that CPU's cache, and writing it again costs a
/// transfer or an invalidation per cache line. (A caller that read its
/// input into buffers a worker had filled with results took ten times as
/// long to read it.)
#[derive(Debug, Default)]
pub(crate) struct Spare {
    kept: Mutex<Kept>,
}

#[derive(Debug, Default)]
struct Kept {
    /// The buffers: their item type, size, last toucher ([`toucher`]).
    bufs: Vec<(TypeId, usize, u64, Box<dyn Any + Send>)>,
    bytes: usize,
}

/// This thread, as the last toucher of a spare buffer.
fn toucher() -> u64 {
    thread_local! {
        static TOUCHER: u64 = {
            static NEXT: AtomicU64 = AtomicU64::new(1);
            NEXT.fetch_add(1, Ordering::Relaxed)
        };
    }
    TOUCHER.with(|w| *w)
}

/// The smallest buffer worth keeping.
const SPARE_MIN: usize = 4 << 10;
/// The most buffers a pool keeps.
const SPARE_COUNT: usize = 64;
/// The most memory a pool keeps in spare buffers.
const SPARE_BYTES: usize = 8 << 20;

impl Spare {
    fn lock(&self) -> MutexGuard<'_, Kept> {
        lock(&self.kept)
    }

    /// An empty buffer for items of type `A` (a spare one if there is,
    /// one this thread touched last if there is).
    pub(crate) fn take<A: Send + 'static>(&self) -> Vec<A> {
        let (ty, me) = (TypeId::of::<A>(), toucher());
        let mut kept = self.lock();
        let found = (kept.bufs.iter())
            .rposition(|(t, _, w, _)| *t == ty && *w == me)
            .or_else(|| kept.bufs.iter().rposition(|(t, ..)| *t == ty));
        let Some(i) = found else {
            return Vec::new();
        };
        let (_, bytes, _, buf) = kept.bufs.swap_remove(i);
        kept.bytes -= bytes;
        drop(kept);
        buf.downcast::<Vec<A>>().map(|b| *b).unwrap_or_default()
    }

    /// Keeps `buf`'s memory, last touched by this thread, for a later
    /// chunk, if it is worth it and there is room.
    pub(crate) fn give<A: Send + 'static>(&self, mut buf: Vec<A>) {
        buf.clear();
        let bytes = buf.capacity().saturating_mul(std::mem::size_of::<A>());
        if bytes < SPARE_MIN {
            return;
        }
        let mut kept = self.lock();
        if kept.bufs.len() < SPARE_COUNT && kept.bytes.saturating_add(bytes) <= SPARE_BYTES {
            kept.bytes += bytes;
            kept.bufs
                .push((TypeId::of::<A>(), bytes, toucher(), Box::new(buf)));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spare_buffers_are_kept_by_type_and_bounded() {
        let spare = Spare::default();
        assert_eq!(spare.take::<u64>().capacity(), 0);
        // Too small to keep.
        spare.give(vec![1u64; 8]);
        assert_eq!(spare.take::<u64>().capacity(), 0);
        // Kept, emptied, and only for its own item type.
        spare.give(vec![7u64; 4096]);
        assert_eq!(spare.take::<u32>().capacity(), 0);
        let again = spare.take::<u64>();
        assert!(again.is_empty() && again.capacity() >= 4096);
        // At most SPARE_BYTES in all.
        for _ in 0..4 {
            spare.give(Vec::<u8>::with_capacity(SPARE_BYTES / 2));
        }
        assert_eq!(spare.lock().bufs.len(), 2);
        assert!(spare.lock().bytes <= SPARE_BYTES);
        // And SPARE_COUNT buffers.
        let spare = Spare::default();
        for _ in 0..SPARE_COUNT + 5 {
            spare.give(Vec::<u8>::with_capacity(SPARE_MIN));
        }
        assert_eq!(spare.lock().bufs.len(), SPARE_COUNT);
    }

    #[test]
    fn a_thread_takes_the_spare_buffers_it_touched_last_first() {
        let spare = Spare::default();
        spare.give(Vec::<u64>::with_capacity(8192));
        std::thread::scope(|s| {
            s.spawn(|| spare.give(Vec::<u64>::with_capacity(4096)));
        });
        // Its own, though another's was kept after.
        assert!(spare.take::<u64>().capacity() >= 8192);
        // Then another's rather than none.
        let next = spare.take::<u64>();
        assert!(next.capacity() >= 4096 && next.capacity() < 8192);
        assert_eq!(spare.take::<u64>().capacity(), 0);
    }
}
