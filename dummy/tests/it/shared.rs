//! `Value::lock` and `Array::lock` on threads, with mp-proc's names; the
//! same code on mp-proc's types.

use std::fmt::Debug;

use mp_proc::{Result, Shareable};
use mp_testkit::guard;

#[test]
fn value_lock_is_exclusive_across_threads() -> Result<()> {
    let v = mp_dummy::Value::new(0u64)?;
    std::thread::scope(|s| {
        for _ in 0..4 {
            s.spawn(|| {
                for _ in 0..1000 {
                    // A read and a write: only the lock keeps every update.
                    *v.lock().unwrap() += 1;
                }
            });
        }
    });
    assert_eq!(v.get(), 4000);
    Ok(())
}

#[test]
fn array_lock_gives_the_items_in_place() -> Result<()> {
    let a = mp_dummy::Array::from_slice(&[3u32, 1, 2])?;
    {
        let mut items = a.lock()?;
        items.sort_unstable();
        items[0] += 10;
        assert_eq!(items.len(), 3);
    }
    assert_eq!(a.to_vec(), [11, 2, 3]);
    assert_eq!(a.get(0), Some(11));
    Ok(())
}

/// One body for both backends: `*v.lock()? += 1` compiles and works.
macro_rules! bump {
    ($value:expr) => {{
        let v = $value;
        *v.lock()? += 1;
        *v.lock()? += 1;
        v.get()
    }};
}

#[test]
fn value_lock_reads_the_same_on_both_backends() -> Result<()> {
    let _g = guard();
    assert_eq!(bump!(mp_dummy::Value::new(1i32)?), 3);
    assert_eq!(bump!(mp_proc::Value::new(1i32)?), 3);
    Ok(())
}

/// Only `Shareable`: `Array::new` asks for no `Default`, on either backend.
fn zero_filled<T: Shareable + PartialEq + Debug>(len: usize) -> Result<Vec<T>> {
    let threads = mp_dummy::Array::<T>::new(len)?.to_vec();
    let processes = mp_proc::Array::<T>::new(len)?.to_vec();
    assert_eq!(threads, processes);
    Ok(threads)
}

#[test]
fn array_new_zero_fills_any_shareable() -> Result<()> {
    let _g = guard();
    assert_eq!(zero_filled::<f64>(3)?, [0.0; 3]);
    assert_eq!(zero_filled::<bool>(2)?, [false; 2]);
    assert!(zero_filled::<u8>(0)?.is_empty());
    Ok(())
}

#[test]
fn a_condition_waits_only_with_a_guard_of_its_own_lock() -> Result<()> {
    let c = mp_dummy::Condition::new(None)?;
    let other = mp_dummy::Lock::new()?;
    let g = other.acquire()?;
    assert!(matches!(c.wait(g), Err(mp_proc::Error::Invalid { .. })));
    // The guard was dropped with the error: the other lock is free again.
    assert!(!other.locked());
    Ok(())
}
