//! Unit tests of shared values: hostile regions and handles.

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

/// What a relay could try with a `Value`'s bytes (tickets: they went
/// neither into a child's args nor with a socket's message): give it the
/// lock of another `Value`, or a lock where it had its own. Neither
/// decodes (the value's tag covers its lock); the bytes as made do.
#[test]
fn a_value_does_not_decode_with_another_lock() {
    use crate::rt::handles::FdRef;
    use crate::wire::payload::{decode, encode};
    type Wire = (FdRef, u64, Option<LockRef>);
    let a = Value::with_lock(1u32, Lock::new().unwrap()).unwrap();
    let b = Value::with_lock(2u32, RLock::new().unwrap()).unwrap();
    let plain = Value::new(3u32).unwrap();
    let (ba, bb, bp) = (
        encode(&a).unwrap(),
        encode(&b).unwrap(),
        encode(&plain).unwrap(),
    );
    let (fa, ta, lock_a) = decode::<Wire>(&ba).unwrap();
    let (_, _, lock_b) = decode::<Wire>(&bb).unwrap();
    let (fp, tp, none) = decode::<Wire>(&bp).unwrap();
    assert!(lock_a.is_some() && none.is_none());

    let swapped = encode(&(fa, ta, lock_b)).unwrap();
    let e = decode::<Value<u32>>(&swapped).unwrap_err();
    assert!(e.to_string().contains("signature does not check"), "{e}");
    let added = encode(&(fp, tp, lock_a)).unwrap();
    let e = decode::<Value<u32>>(&added).unwrap_err();
    assert!(e.to_string().contains("signature does not check"), "{e}");

    // As made (which redeems their tickets).
    let a2: Value<u32> = decode(&ba).unwrap();
    assert_eq!(a2.get_lock().unwrap(), a.get_lock().unwrap());
    assert!(!a2.get_lock().unwrap().is_reentrant());
    let b2: Value<u32> = decode(&bb).unwrap();
    assert_eq!(b2.get_lock().unwrap(), b.get_lock().unwrap());
    let p2: Value<u32> = decode(&bp).unwrap();
    assert_eq!(p2.get_lock().unwrap(), plain.get_lock().unwrap());
    assert_ne!(p2.get_lock().unwrap(), a.get_lock().unwrap());
}
