//! CPython's connection handshake (`multiprocessing.connection`'s
//! `deliver_challenge` and `answer_challenge`): a mutual HMAC
//! challenge/response over ordinary frames.
//!
//! mp offers the `{sha256}` challenge of Python 3.12+ and accepts every reply
//! CPython accepts but the SHA-3 ones: `{sha256}`, `{sha384}`, `{md5}`, and
//! the raw 16-byte HMAC-MD5 of Python 3.11 and earlier. Answering, it
//! follows the challenge's form (a 20-byte legacy challenge gets raw
//! HMAC-MD5). Digests are compared in constant time, and every handshake
//! frame is bounded at 256 bytes, as CPython reads them: a header that claims
//! more is refused as soon as it arrives.
//!
//! [`Listener`](super::Listener) and [`Client`](super::Client) run both
//! halves under one deadline for the whole handshake, so that a peer that
//! sends nothing, or one byte at a time, is cut off when it passes.

use std::time::Instant;

use hmac::{Hmac, KeyInit, Mac};

use super::Connection;
use crate::error::{Error, Result};

const CHALLENGE: &[u8] = b"#CHALLENGE#";
const WELCOME: &[u8] = b"#WELCOME#";
const FAILURE: &[u8] = b"#FAILURE#";
/// Random bytes of a modern challenge.
const MESSAGE_LENGTH: usize = 40;
/// The longest handshake frame read (CPython's `recv_bytes(256)`).
const MAX_FRAME: usize = 256;
/// Lengths that mark the legacy form: a challenge (20) or an MD5 reply (16).
const LEGACY_LENGTHS: [usize; 2] = [20, 16];

/// The digests a reply may use.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Digest {
    Md5,
    Sha256,
    Sha384,
}

impl Digest {
    fn from_name(name: &[u8]) -> Option<Digest> {
        match name {
            b"md5" => Some(Digest::Md5),
            b"sha256" => Some(Digest::Sha256),
            b"sha384" => Some(Digest::Sha384),
            _ => None,
        }
    }

    fn name(self) -> &'static str {
        match self {
            Digest::Md5 => "md5",
            Digest::Sha256 => "sha256",
            Digest::Sha384 => "sha384",
        }
    }

    fn len(self) -> usize {
        match self {
            Digest::Md5 => 16,
            Digest::Sha256 => 32,
            Digest::Sha384 => 48,
        }
    }

    /// HMAC of `message` under `key`.
    fn mac(self, key: &[u8], message: &[u8]) -> Vec<u8> {
        fn run<M: Mac + KeyInit>(key: &[u8], message: &[u8]) -> Vec<u8> {
            let mut m = <M as KeyInit>::new_from_slice(key).expect("HMAC takes keys of any length");
            m.update(message);
            m.finalize().into_bytes().to_vec()
        }
        match self {
            Digest::Md5 => run::<Hmac<md5::Md5>>(key, message),
            Digest::Sha256 => run::<Hmac<sha2::Sha256>>(key, message),
            Digest::Sha384 => run::<Hmac<sha2::Sha384>>(key, message),
        }
    }

    /// Whether `mac` is the HMAC of `message` under `key`, in constant time.
    fn verify(self, key: &[u8], message: &[u8], mac: &[u8]) -> bool {
        fn run<M: Mac + KeyInit>(key: &[u8], message: &[u8], mac: &[u8]) -> bool {
            let mut m = <M as KeyInit>::new_from_slice(key).expect("HMAC takes keys of any length");
            m.update(message);
            m.verify_slice(mac).is_ok()
        }
        match self {
            Digest::Md5 => run::<Hmac<md5::Md5>>(key, message, mac),
            Digest::Sha256 => run::<Hmac<sha2::Sha256>>(key, message, mac),
            Digest::Sha384 => run::<Hmac<sha2::Sha384>>(key, message, mac),
        }
    }
}

fn failed(message: impl Into<String>) -> Error {
    Error::Authentication(message.into())
}

/// Splits a challenge or reply into its digest (`None`: the legacy form) and
/// the rest, as CPython's `_get_digest_name_and_payload`.
fn parse(x: &[u8]) -> Result<(Option<Digest>, &[u8])> {
    if LEGACY_LENGTHS.contains(&x.len()) {
        return Ok((None, x));
    }
    if x.first() == Some(&b'{')
        && let Some(end) = x.iter().take(10).skip(1).position(|&b| b == b'}')
    {
        let end = end + 1;
        if let Some(d) = Digest::from_name(&x[1..end]) {
            return Ok((Some(d), &x[end + 1..]));
        }
    }
    Err(failed(format!(
        "unsupported message length, missing digest prefix, or unsupported digest: {} bytes",
        x.len()
    )))
}

/// Reads one handshake frame (at most 256 bytes), by `deadline`.
fn recv_bounded(conn: &Connection, deadline: Option<Instant>) -> Result<Vec<u8>> {
    conn.recv_bytes_by(MAX_FRAME, deadline)
}

/// Sends one handshake frame, by `deadline`.
fn send(conn: &Connection, frame: &[u8], deadline: Option<Instant>) -> Result<()> {
    match deadline {
        Some(d) => conn.send_bytes_by(frame, d),
        None => conn.send_bytes(frame),
    }
}

/// Sends a challenge and checks the peer's answer (the listening side runs
/// this first). A wrong answer is told `#FAILURE#` and is
/// [`Error::Authentication`] (`'digest received was wrong'`).
///
/// Like CPython's, it waits for the peer as long as it takes: a server that
/// faces untrusted peers uses [`Listener`](super::Listener), whose handshake
/// has a deadline.
pub fn deliver_challenge(conn: &Connection, authkey: &[u8]) -> Result<()> {
    deliver_challenge_by(conn, authkey, None)
}

/// [`deliver_challenge`], every read and write done by `deadline` (`None`:
/// no bound); [`Error::Timeout`] once it has passed.
pub(crate) fn deliver_challenge_by(
    conn: &Connection,
    authkey: &[u8],
    deadline: Option<Instant>,
) -> Result<()> {
    let mut message = b"{sha256}".to_vec();
    let mut random = [0u8; MESSAGE_LENGTH];
    getrandom::fill(&mut random).map_err(|e| failed(format!("no random challenge: {e}")))?;
    message.extend_from_slice(&random);
    let mut frame = CHALLENGE.to_vec();
    frame.extend_from_slice(&message);
    send(conn, &frame, deadline)?;
    let response = recv_bounded(conn, deadline)?;
    let verdict = match parse(&response) {
        Err(e) => Err(e),
        Ok((digest, mac)) => {
            let digest = digest.unwrap_or(Digest::Md5);
            if mac.len() != digest.len() {
                Err(failed(format!(
                    "expected {:?} of length {} got {}",
                    digest.name(),
                    digest.len(),
                    mac.len()
                )))
            } else if digest.verify(authkey, &message, mac) {
                Ok(())
            } else {
                Err(failed("digest received was wrong"))
            }
        }
    };
    match verdict {
        Ok(()) => send(conn, WELCOME, deadline),
        Err(e) => {
            let _ = send(conn, FAILURE, deadline);
            Err(e)
        }
    }
}

/// Answers the peer's challenge (the connecting side runs this first). A
/// rejected answer is [`Error::Authentication`] (`'digest sent was rejected'`).
///
/// Like CPython's, it waits for the peer as long as it takes: see
/// [`Client`](super::Client) for a handshake with a deadline.
pub fn answer_challenge(conn: &Connection, authkey: &[u8]) -> Result<()> {
    answer_challenge_by(conn, authkey, None)
}

/// [`answer_challenge`], every read and write done by `deadline` (`None`:
/// no bound); [`Error::Timeout`] once it has passed.
pub(crate) fn answer_challenge_by(
    conn: &Connection,
    authkey: &[u8],
    deadline: Option<Instant>,
) -> Result<()> {
    let frame = recv_bounded(conn, deadline)?;
    let Some(message) = frame.strip_prefix(CHALLENGE) else {
        return Err(failed("protocol error: expected a challenge"));
    };
    if message.len() < 20 {
        return Err(failed(format!(
            "challenge too short: {} bytes",
            message.len()
        )));
    }
    let reply = match parse(message)? {
        (None, _) => Digest::Md5.mac(authkey, message),
        (Some(d), _) => {
            let mut r = format!("{{{}}}", d.name()).into_bytes();
            r.extend_from_slice(&d.mac(authkey, message));
            r
        }
    };
    send(conn, &reply, deadline)?;
    if recv_bounded(conn, deadline)? != WELCOME {
        return Err(failed("digest sent was rejected"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(b: &[u8]) -> String {
        b.iter().map(|x| format!("{x:02x}")).collect()
    }

    /// The vectors computed with CPython 3.13's `_create_response`.
    #[test]
    fn digests_match_cpython() {
        let mut modern = b"{sha256}".to_vec();
        modern.extend(0u8..40);
        assert_eq!(
            hex(&Digest::Sha256.mac(b"secret", &modern)),
            "fc57fbe650d6124b98215e7b5d197d5807ad69982d275a9735ea2d56f1fa6989"
        );
        let legacy: Vec<u8> = (0u8..20).collect();
        assert_eq!(
            hex(&Digest::Md5.mac(b"secret", &legacy)),
            "7defa9cc46abc3583325d17ccda75190"
        );
        // A 3.11 client answering the modern challenge: MD5 over all of it.
        assert_eq!(
            hex(&Digest::Md5.mac(b"secret", &modern)),
            "8e48d2bb349b4b72b9382999ed5b62eb"
        );
    }

    #[test]
    fn replies_parse_as_cpython_does() {
        assert_eq!(parse(&[0; 16]).unwrap().0, None);
        assert_eq!(parse(&[0; 20]).unwrap().0, None);
        let mut r = b"{sha384}".to_vec();
        r.extend([1; 48]);
        assert_eq!(parse(&r).unwrap(), (Some(Digest::Sha384), &[1u8; 48][..]));
        assert!(parse(b"{sha1}0123456789abcdefghij").is_err());
        assert!(parse(b"no prefix at all, 33 bytes long!!").is_err());
    }

    fn handshake(server_key: &'static [u8], client_key: &'static [u8]) -> (Result<()>, Result<()>) {
        let (s, c) = crate::pipe(true).unwrap();
        let server = std::thread::spawn(move || {
            let r =
                deliver_challenge(&s, server_key).and_then(|()| answer_challenge(&s, server_key));
            (r, s)
        });
        let client =
            answer_challenge(&c, client_key).and_then(|()| deliver_challenge(&c, client_key));
        let (server, s) = server.join().unwrap();
        if server.is_ok() && client.is_ok() {
            // The connection goes on carrying ordinary frames.
            s.send_bytes(b"after").unwrap();
            assert_eq!(c.recv_bytes().unwrap(), b"after");
        }
        (server, client)
    }

    #[test]
    fn same_key_passes_both_ways() {
        let (s, c) = handshake(b"secret", b"secret");
        s.unwrap();
        c.unwrap();
        let (s, c) = handshake(b"", b"");
        s.unwrap();
        c.unwrap();
    }

    #[test]
    fn a_wrong_key_fails_on_both_sides() {
        let (s, c) = handshake(b"secret", b"guess");
        assert!(
            matches!(&s, Err(Error::Authentication(m)) if m == "digest received was wrong"),
            "{s:?}"
        );
        assert!(
            matches!(&c, Err(Error::Authentication(m)) if m == "digest sent was rejected"),
            "{c:?}"
        );
    }

    #[test]
    fn a_legacy_peer_is_answered_and_accepted() {
        // A 3.11 server: a 20-byte challenge, raw MD5 expected back.
        let (s, c) = crate::pipe(true).unwrap();
        let mut frame = CHALLENGE.to_vec();
        frame.extend(0u8..20);
        s.send_bytes(&frame).unwrap();
        s.send_bytes(WELCOME).unwrap();
        answer_challenge(&c, b"secret").unwrap();
        assert_eq!(
            hex(&s.recv_bytes().unwrap()),
            "7defa9cc46abc3583325d17ccda75190"
        );
        // A 3.11 client: it answers our modern challenge with raw MD5.
        let server = std::thread::spawn(move || deliver_challenge(&s, b"secret"));
        let challenge = c.recv_bytes().unwrap();
        c.send_bytes(&Digest::Md5.mac(b"secret", &challenge[CHALLENGE.len()..]))
            .unwrap();
        assert_eq!(c.recv_bytes().unwrap(), WELCOME);
        server.join().unwrap().unwrap();
    }

    #[test]
    fn an_oversized_or_garbage_challenge_is_refused() {
        let (s, c) = crate::pipe(true).unwrap();
        s.send_bytes(&[b'#'; 300]).unwrap();
        assert!(matches!(
            answer_challenge(&c, b"k"),
            Err(Error::FrameTooLong { len: 300, max: 256 })
        ));
        let (s, c) = crate::pipe(true).unwrap();
        s.send_bytes(b"hello, not a challenge").unwrap();
        assert!(matches!(
            answer_challenge(&c, b"k"),
            Err(Error::Authentication(_))
        ));
    }
}
