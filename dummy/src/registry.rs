//! Thread handles as `Payload`s: a handle serializes as an id in a
//! process-local registry (with this process's id), so generic code that
//! passes a queue or a lock in a worker's arguments, or through a pool's
//! `initializer`, works on threads as on processes. The bytes mean nothing
//! in another process: decoding them there is an error.

use std::any::Any;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use serde::de::Error as _;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// The shared state of every handle ever serialized, by id. An entry lives
/// until the process ends (the bytes may be decoded any number of times,
/// any time later); re-serializing the same object reuses its entry.
static REGISTRY: Mutex<Option<HashMap<u64, Arc<dyn Any + Send + Sync>>>> = Mutex::new(None);

/// Serializes `shared` as `(pid, id)`.
pub(crate) fn serialize<T: Any + Send + Sync, S: Serializer>(
    shared: &Arc<T>,
    s: S,
) -> Result<S::Ok, S::Error> {
    let id = Arc::as_ptr(shared) as usize as u64;
    REGISTRY
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .get_or_insert_with(HashMap::new)
        .entry(id)
        .or_insert_with(|| shared.clone() as Arc<dyn Any + Send + Sync>);
    (std::process::id(), id).serialize(s)
}

/// The shared state a handle was serialized with.
pub(crate) fn deserialize<'de, T: Any + Send + Sync, D: Deserializer<'de>>(
    d: D,
) -> Result<Arc<T>, D::Error> {
    let (pid, id) = <(u32, u64)>::deserialize(d)?;
    if pid != std::process::id() {
        return Err(D::Error::custom(
            "a thread handle (mp-dummy) cannot leave its process",
        ));
    }
    let found = REGISTRY
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .as_ref()
        .and_then(|r| r.get(&id).cloned());
    found
        .and_then(|a| a.downcast::<T>().ok())
        .ok_or_else(|| D::Error::custom("no such thread handle in this process"))
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
