//! What every proxy is: a counted, signed [`Reference`] to an object in a
//! manager's server, the [`Proxy`] trait, the handle traits every proxy
//! type has (`Clone`, `Debug`, `Serialize`, `Deserialize`), written once
//! by [`proxy_handle!`], and the shapes of replies, checked and decoded.
//! Each kind's proxy lives in its module under [`kinds`](crate::kinds).

use std::sync::Arc;

use mp_proc::codec::{decode, encode};
use mp_proc::connection::Address;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::Result;
use crate::link::{Link, unexpected};
use crate::protocol::{Bytes, Reply, Request};

/// A counted reference to an object in a manager's server, the inside of
/// every proxy: the server counts references, so the object lives while a
/// proxy to it exists anywhere (a process that is killed gives its
/// references back with its connections).
#[doc(hidden)]
pub struct Reference {
    pub(crate) link: Arc<Link>,
    pub(crate) id: u64,
}

impl Reference {
    /// One round trip to the server.
    pub(crate) fn call(&self, r: &Request) -> Result<Reply> {
        self.link.call(r)
    }
}

impl std::fmt::Debug for Reference {
    /// Never shows the authkey.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} at {}", self.id, self.link.address)
    }
}

impl Clone for Reference {
    fn clone(&self) -> Reference {
        // A failed incref (the manager is gone) leaves a proxy whose calls fail.
        let _ = self.link.call(&Request::IncRef(self.id));
        Reference {
            link: self.link.clone(),
            id: self.id,
        }
    }
}

impl Drop for Reference {
    fn drop(&mut self) {
        let _ = self.link.call(&Request::DecRef(self.id));
    }
}

impl Serialize for Reference {
    /// Lends the receiver a reference, so that the object outlives this copy
    /// until the receiver adopts it (a copy put on a queue: the getter). A
    /// copy stored in a dict, a list, a namespace or a value of the same
    /// manager is held by the stored value instead (each read-back is a
    /// reference of its own), and given back when the value leaves the
    /// container. A copy never received (or in the initial value of
    /// `SyncManager::value`, or stored in another manager's container)
    /// keeps the object until the manager ends. The authkey goes along only to a child
    /// being started (CPython's rule: `get_spawning_popen()`), never into a
    /// dict or a queue.
    ///
    /// The bytes are signed with the manager's key (see
    /// [`HandleKey`](mp_proc::plumbing::HandleKey)): a receiver connects only to
    /// an address that a holder of that key wrote, so bytes from a peer
    /// without it never make a program answer another server's challenge
    /// with its key.
    fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        use serde::ser::Error as _;
        self.link
            .call(&Request::Lend(self.id))
            .map_err(S::Error::custom)?;
        LENT.with(|l| {
            if let Some(lent) = l.borrow_mut().as_mut() {
                lent.push((self.link.address.clone(), self.id));
            }
        });
        let key =
            mp_proc::plumbing::is_spawning().then(|| serde_bytes::Bytes::new(self.link.authkey()));
        let address = self.link.address.to_string();
        let tag = reference_tag(self.link.authkey(), &address, self.id);
        (address, self.id, key, serde_bytes::Bytes::new(&tag)).serialize(s)
    }
}

/// What a proxy's bytes are signed as.
const PROXY: &str = "manager proxy";

/// The tag of a reference to object `id` at `address`, under `authkey`.
fn reference_tag(authkey: &[u8], address: &str, id: u64) -> [u8; 16] {
    mp_proc::plumbing::HandleKey::new(authkey).sign(PROXY, &[address.as_bytes(), &id.to_le_bytes()])
}

impl<'de> Deserialize<'de> for Reference {
    /// Reconnects (once per process) with the key that came along, or the
    /// one this process reached that manager with, or this process's
    /// authkey; and adopts the reference its sender lent.
    ///
    /// The signature is checked before anything else: bytes that no holder
    /// of the key made are an error, and no connection is made.
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Reference, D::Error> {
        use serde::de::Error as _;
        let (text, id, key, tag): (
            String,
            u64,
            Option<serde_bytes::ByteBuf>,
            serde_bytes::ByteBuf,
        ) = Deserialize::deserialize(d)?;
        let address: Address = text.parse().map_err(D::Error::custom)?;
        // A key that came with the bytes counts only in what this process
        // tree made for this process (a child's args): from a peer, a key of
        // its own would let it choose where this process connects.
        let key = match key {
            Some(k) if mp_proc::plumbing::is_receiving_from_parent() => k.into_vec(),
            _ => crate::link::known_key(&address),
        };
        if !mp_proc::plumbing::HandleKey::new(&key).verify(
            PROXY,
            &[text.as_bytes(), &id.to_le_bytes()],
            &tag,
        ) {
            return Err(mp_proc::plumbing::decode_failure(format!(
                "a proxy to {address} whose signature does not check under the key for that \
                 address: not made by a holder of the manager's key, or changed; not connecting"
            )));
        }
        let link = Link::to(&address, &key).map_err(D::Error::custom)?;
        link.call(&Request::Adopt(id)).map_err(D::Error::custom)?;
        Ok(Reference { link, id })
    }
}

/// A proxy type: made from a [`Reference`] (by a manager's factory
/// methods, or by [`BaseManager::create`](crate::BaseManager::create) for a
/// registered type id).
pub trait Proxy: Sized {
    #[doc(hidden)]
    fn from_reference(r: Reference) -> Self;
}

/// What a proxy holds: a [`Reference`], or the proxy it extends (a
/// `JoinableQueueProxy` holds a `QueueProxy`).
pub(crate) trait Handle: Clone {
    fn wrap(r: Reference) -> Self;
    fn reference(&self) -> &Reference;
}

impl Handle for Reference {
    fn wrap(r: Reference) -> Self {
        r
    }

    fn reference(&self) -> &Reference {
        self
    }
}

/// The handle traits of a proxy type `{ inner: impl Handle, _t: PhantomData }`:
/// `Clone` (one more reference), `Debug`, `Serialize`/`Deserialize` (a
/// child reconnects), [`Proxy`] and `Handle`.
macro_rules! proxy_handle {
    ($name:ident $(<$($t:ident),+>)?) => {
        impl$(<$($t),+>)? Clone for $name$(<$($t),+>)? {
            fn clone(&self) -> Self {
                $name { inner: self.inner.clone(), _t: std::marker::PhantomData }
            }
        }

        impl$(<$($t),+>)? std::fmt::Debug for $name$(<$($t),+>)? {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                use $crate::proxy::Handle as _;
                write!(f, "{}({:?})", stringify!($name), self.inner.reference())
            }
        }

        impl$(<$($t),+>)? serde::Serialize for $name$(<$($t),+>)? {
            fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
                use $crate::proxy::Handle as _;
                serde::Serialize::serialize(self.inner.reference(), s)
            }
        }

        impl<'de $($(, $t)+)?> serde::Deserialize<'de> for $name$(<$($t),+>)? {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
                let r = <$crate::proxy::Reference as serde::Deserialize>::deserialize(d)?;
                Ok($crate::proxy::Proxy::from_reference(r))
            }
        }

        impl$(<$($t),+>)? $crate::proxy::Proxy for $name$(<$($t),+>)? {
            fn from_reference(r: $crate::proxy::Reference) -> Self {
                $name { inner: $crate::proxy::Handle::wrap(r), _t: std::marker::PhantomData }
            }
        }

        impl$(<$($t),+>)? $crate::proxy::Handle for $name$(<$($t),+>)? {
            fn wrap(r: $crate::proxy::Reference) -> Self {
                $crate::proxy::Proxy::from_reference(r)
            }

            fn reference(&self) -> &$crate::proxy::Reference {
                self.inner.reference()
            }
        }
    };
}
pub(crate) use proxy_handle;

/// A value encoded for a request.
pub(crate) fn enc<T: Serialize + ?Sized>(v: &T) -> Result<Bytes> {
    Ok(Bytes::from(encode(v)?))
}

std::thread_local! {
    /// The references lent while a value is encoded by [`enc_stored`].
    static LENT: std::cell::RefCell<Option<Vec<(Address, u64)>>> =
        const { std::cell::RefCell::new(None) };
}

/// A value encoded to be stored in a container of the server at `at`,
/// and the ids of the references to that server's objects it holds (the
/// proxies in it, each lent a reference while it is encoded): the server
/// keeps those references as long as it keeps the value (CPython's rule:
/// a proxy stored in a managed container keeps its object alive).
pub(crate) fn enc_stored<T: Serialize + ?Sized>(v: &T, at: &Address) -> Result<(Bytes, Vec<u64>)> {
    let outer = LENT.with(|l| l.borrow_mut().replace(Vec::new()));
    let bytes = enc(v);
    let lent = LENT.with(|l| std::mem::replace(&mut *l.borrow_mut(), outer));
    let ids = lent
        .unwrap_or_default()
        .into_iter()
        .filter(|(a, _)| a == at)
        .map(|(_, id)| id)
        .collect();
    Ok((bytes?, ids))
}

// The replies' shapes, checked and decoded.

pub(crate) fn ok(r: Reply) -> Result<()> {
    match r {
        Reply::Ok => Ok(()),
        r => Err(unexpected(r)),
    }
}

pub(crate) fn flag(r: Reply) -> Result<bool> {
    match r {
        Reply::Bool(b) => Ok(b),
        r => Err(unexpected(r)),
    }
}

pub(crate) fn count(r: Reply) -> Result<usize> {
    match r {
        Reply::Count(n) => usize::try_from(n).map_err(|_| unexpected(Reply::Count(n))),
        r => Err(unexpected(r)),
    }
}

pub(crate) fn maybe<T: serde::de::DeserializeOwned>(r: Reply) -> Result<Option<T>> {
    match r {
        Reply::Maybe(v) => v.map(|b| decode(&b)).transpose(),
        r => Err(unexpected(r)),
    }
}

pub(crate) fn one<T: serde::de::DeserializeOwned>(r: Reply) -> Result<T> {
    maybe(r)?.ok_or_else(|| unexpected(Reply::Maybe(None)))
}

pub(crate) fn list<T: serde::de::DeserializeOwned>(r: Reply) -> Result<Vec<T>> {
    match r {
        Reply::List(l) => l.iter().map(|b| decode(b)).collect(),
        r => Err(unexpected(r)),
    }
}
