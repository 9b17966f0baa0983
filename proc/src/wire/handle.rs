//! Handles are capabilities: the bytes of a handle that can be rebuilt
//! without a descriptor (a function reference, a manager proxy) carry a tag,
//! an HMAC-SHA256 under the key of the handle's domain, and a handle is
//! rebuilt only from bytes whose tag checks. A handle that carries a
//! descriptor names its own type next to the descriptor's index, so bytes
//! made for one type of handle never become another.
//!
//! The key of a process tree's handles is derived from the process authkey
//! (`current_process().authkey()`), which every child inherits. It is
//! derived, not the authkey itself: a peer can make a program compute
//! HMACs under its authkey (the connection handshake answers any challenge
//! that begins with `{sha256}`), and the derivation's message does not begin
//! so, so no handshake answer is ever a key or a tag here.

use std::any::TypeId;
use std::fmt;
use std::hash::{Hash, Hasher};

use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

/// The length of a handle's tag (a truncated HMAC-SHA256: 128 bits).
pub(crate) const TAG_LEN: usize = 16;

/// A handle's tag.
pub(crate) type Tag = [u8; TAG_LEN];

/// What the key is derived with (not a `{digest}`-prefixed message).
const DERIVATION: &[u8] = b"mp handle signing key, version 1";

/// The key that signs and checks the handles of one domain: a process tree
/// (made from its authkey, [`HandleKey::process`], which the runtime defines:
/// it holds the authkey) or a manager (made from the manager's authkey,
/// [`HandleKey::new`]).
///
/// Each tag covers a domain string that names the kind of handle, then the
/// handle's parts, each with its length: bytes signed as one kind of handle
/// never check as another.
///
/// ```
/// use mp_proc::plumbing::HandleKey;
/// let key = HandleKey::new(b"manager secret");
/// let tag = key.sign("proxy", &[b"/tmp/socket", &7u64.to_le_bytes()]);
/// assert!(key.verify("proxy", &[b"/tmp/socket", &7u64.to_le_bytes()], &tag));
/// assert!(!key.verify("proxy", &[b"/tmp/socket", &8u64.to_le_bytes()], &tag));
/// assert!(!HandleKey::new(b"another").verify("proxy", &[b"/tmp/socket", &7u64.to_le_bytes()], &tag));
/// ```
#[derive(Clone)]
pub struct HandleKey {
    mac: Hmac<Sha256>,
}

impl fmt::Debug for HandleKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HandleKey").finish_non_exhaustive()
    }
}

impl HandleKey {
    /// The key of the handles of a domain whose secret is `authkey`.
    pub fn new(authkey: &[u8]) -> HandleKey {
        let mut derive =
            <Hmac<Sha256> as KeyInit>::new_from_slice(authkey).expect("HMAC takes any key length");
        derive.update(DERIVATION);
        let key = derive.finalize().into_bytes();
        HandleKey {
            mac: <Hmac<Sha256> as KeyInit>::new_from_slice(&key)
                .expect("HMAC takes any key length"),
        }
    }

    fn mac(&self, domain: &str, parts: &[&[u8]]) -> Hmac<Sha256> {
        let mut m = self.mac.clone();
        for part in std::iter::once(domain.as_bytes()).chain(parts.iter().copied()) {
            m.update(&(part.len() as u64).to_le_bytes());
            m.update(part);
        }
        m
    }

    /// The tag of a handle of kind `domain` made of `parts`.
    pub fn sign(&self, domain: &str, parts: &[&[u8]]) -> [u8; TAG_LEN] {
        let full = self.mac(domain, parts).finalize().into_bytes();
        let mut tag = [0; TAG_LEN];
        tag.copy_from_slice(&full[..TAG_LEN]);
        tag
    }

    /// Whether `tag` is the tag of a handle of kind `domain` made of
    /// `parts` (compared in constant time).
    pub fn verify(&self, domain: &str, parts: &[&[u8]], tag: &[u8]) -> bool {
        tag.len() == TAG_LEN && self.mac(domain, parts).verify_truncated_left(tag).is_ok()
    }
}

/// A number for the type `T`, the same in every process of this executable
/// and different for different types (a hash of its `TypeId`): what a
/// handle records so that it is rebuilt only as the type it was made as.
///
/// ```
/// use mp_proc::plumbing::type_tag;
/// assert_eq!(type_tag::<Vec<u8>>(), type_tag::<Vec<u8>>());
/// assert_ne!(type_tag::<bool>(), type_tag::<u8>());
/// ```
pub fn type_tag<T: ?Sized + 'static>() -> u64 {
    // `DefaultHasher::new()` has fixed keys: the same in every process of
    // one executable (whose fingerprint the function references check).
    let mut h = std::hash::DefaultHasher::new();
    TypeId::of::<T>().hash(&mut h);
    h.finish()
}

/// The number a handle of kind `kind` over items of type `elem` (0: none)
/// writes next to its descriptor's index, and checks when it is rebuilt.
pub(crate) fn handle_type(kind: &str, elem: u64) -> u64 {
    let mut h = std::hash::DefaultHasher::new();
    kind.hash(&mut h);
    elem.hash(&mut h);
    h.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tags_depend_on_key_domain_and_every_part() {
        let k = HandleKey::new(b"k");
        let t = k.sign("a", &[b"x", b"y"]);
        assert!(k.verify("a", &[b"x", b"y"], &t));
        assert!(!k.verify("b", &[b"x", b"y"], &t));
        // Parts are length-prefixed: moving a byte between parts changes the tag.
        assert!(!k.verify("a", &[b"xy", b""], &t));
        assert!(!k.verify("a", &[b"x", b"y"], &t[..8]));
        for bit in 0..TAG_LEN * 8 {
            let mut u = t;
            u[bit / 8] ^= 1 << (bit % 8);
            assert!(!k.verify("a", &[b"x", b"y"], &u));
        }
        assert!(!HandleKey::new(b"K").verify("a", &[b"x", b"y"], &t));
    }

    #[test]
    fn the_key_is_not_a_handshake_answer() {
        // The handshake answers HMAC(authkey, "{sha256}" + challenge); the
        // derivation's message can never be such a challenge.
        assert!(!DERIVATION.starts_with(b"{"));
    }
}
