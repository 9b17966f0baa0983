//! Thread handles as `Payload`s: a handle serializes as an id in a
//! process-local registry (with this process's id), so generic code that
//! passes a queue or a lock in a worker's arguments, or through a pool's
//! `initializer`, works on threads as on processes. The bytes mean nothing
//! in another process: decoding them there is an error.

use std::any::Any;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use mp_proc::plumbing::lock;
use serde::de::Error as _;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// The shared state of every handle ever serialized, by id, and the id of
/// each, by address. An entry lives until the process ends (the bytes may be
/// decoded any number of times, any time later); re-serializing the same
/// object reuses its entry. Ids are random (128 bits), not addresses: the
/// bytes of a handle neither reveal this process's layout nor let anyone
/// who saw one handle guess another's.
struct Registry {
    by_id: HashMap<u128, Arc<dyn Any + Send + Sync>>,
    by_addr: HashMap<usize, u128>,
}

static REGISTRY: Mutex<Option<Registry>> = Mutex::new(None);

fn new_id() -> u128 {
    let mut b = [0u8; 16];
    // The OS's random source; were it missing, the ids would still be
    // unique (the counter), only guessable.
    static COUNTER: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
    if getrandom::fill(&mut b).is_err() {
        b[..8].copy_from_slice(
            &COUNTER
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed)
                .to_le_bytes(),
        );
    }
    u128::from_le_bytes(b)
}

/// Serializes `shared` as `(pid, id)`.
pub(crate) fn serialize<T: Any + Send + Sync, S: Serializer>(
    shared: &Arc<T>,
    s: S,
) -> Result<S::Ok, S::Error> {
    let addr = Arc::as_ptr(shared) as usize;
    let id = {
        let mut r = lock(&REGISTRY);
        let r = r.get_or_insert_with(|| Registry {
            by_id: HashMap::new(),
            by_addr: HashMap::new(),
        });
        match r.by_addr.get(&addr) {
            Some(id) => *id,
            None => {
                let mut id = new_id();
                while r.by_id.contains_key(&id) {
                    id = new_id();
                }
                r.by_addr.insert(addr, id);
                r.by_id
                    .insert(id, shared.clone() as Arc<dyn Any + Send + Sync>);
                id
            }
        }
    };
    (std::process::id(), id).serialize(s)
}

/// The shared state a handle was serialized with.
pub(crate) fn deserialize<'de, T: Any + Send + Sync, D: Deserializer<'de>>(
    d: D,
) -> Result<Arc<T>, D::Error> {
    let (pid, id) = <(u32, u128)>::deserialize(d)?;
    if pid != std::process::id() {
        return Err(D::Error::custom(
            "a thread handle (mp-dummy) cannot leave its process",
        ));
    }
    let found = lock(&REGISTRY)
        .as_ref()
        .and_then(|r| r.by_id.get(&id).cloned());
    let found = found.ok_or_else(|| D::Error::custom("no such thread handle in this process"))?;
    found
        .downcast::<T>()
        .map_err(|_| D::Error::custom("a thread handle of another type"))
}

/// `Clone`, `Debug`, `Serialize` and `Deserialize` for a handle whose
/// state is `self.inner: Arc<_>`.
macro_rules! handle {
    ($name:ident $(<$($t:ident),+>)?) => {
        impl$(<$($t),+>)? Clone for $name$(<$($t),+>)? {
            fn clone(&self) -> Self {
                $name { inner: self.inner.clone() }
            }
        }

        impl$(<$($t),+>)? std::fmt::Debug for $name$(<$($t),+>)? {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.debug_struct(stringify!($name)).finish_non_exhaustive()
            }
        }

        impl$(<$($t: Send + 'static),+>)? serde::Serialize for $name$(<$($t),+>)? {
            fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
                crate::registry::serialize(&self.inner, s)
            }
        }

        impl<'de $($(, $t: Send + 'static)+)?> serde::Deserialize<'de> for $name$(<$($t),+>)? {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
                Ok($name { inner: crate::registry::deserialize(d)? })
            }
        }
    };
}

pub(crate) use handle;
