//! Entry points for the fuzz targets in `fuzz/` and for the tests that
//! replay their corpus (`tests/it/fuzz_corpus.rs`), so that both run the
//! same code. Each takes bytes as a peer could send them and must return
//! whatever they are: no panic, no hang, no crash, no descriptor left open.
//! Not part of the API.
//!
//! ```
//! for (name, target) in mp_proc::plumbing::fuzzing::TARGETS {
//!     for seed in mp_proc::plumbing::fuzzing::seeds(name) {
//!         target(&seed);
//!     }
//!     target(&[0xff; 40]);
//! }
//! ```

use std::collections::BTreeMap;
use std::io::Write;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::function::ErasedFunction;
use crate::wire::codec::{self, Packed};
use crate::{Connection, Error, FnPointer, StartMethod};

mod link;

pub use link::link;

/// The authentication key both handshake targets use.
pub const AUTHKEY: &[u8] = b"fuzzing key";

/// A value of every serde shape: what [`payload`] and [`frames`] decode.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Sample {
    /// An integer.
    pub id: u64,
    /// A string.
    pub name: String,
    /// Bytes.
    pub bytes: Vec<u8>,
    /// A tuple of small scalars.
    pub flags: (bool, char, i32),
    /// A float.
    pub ratio: f64,
    /// An option of a struct.
    pub when: Option<Duration>,
    /// A sequence of enums.
    pub items: Vec<Item>,
    /// A map.
    pub map: BTreeMap<String, Vec<u16>>,
    /// A recursive value.
    pub tree: Tree,
    /// A wide integer.
    pub big: u128,
    /// A fixed-size array.
    pub fixed: [u8; 4],
}

/// Every kind of enum variant.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum Item {
    /// A unit variant.
    Unit,
    /// A newtype variant.
    Newtype(i64),
    /// A tuple variant.
    Tuple(u8, String),
    /// A struct variant, recursive.
    Struct {
        /// The next item.
        next: Option<Box<Item>>,
        /// A small array.
        b: [u8; 3],
    },
}

/// A recursive enum: one tag byte per level on the wire.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum Tree {
    /// The end.
    Leaf,
    /// One level more.
    Node(Box<Tree>),
}

/// Decodes `bytes` as `T`; what decodes must encode, and decode again to
/// the same encoding.
fn decode_round_trip<T: Serialize + serde::de::DeserializeOwned>(bytes: &[u8]) {
    if let Ok(value) = codec::decode::<T>(bytes) {
        let again = codec::encode(&value).expect("a decoded value encodes");
        let back = codec::decode::<T>(&again).expect("an encoded value decodes");
        assert_eq!(
            codec::encode(&back).expect("a decoded value encodes"),
            again,
            "a decoded value re-encodes to different bytes"
        );
    }
}

/// The payload decoder: `data` as a [`Sample`], a [`Tree`] and a tuple.
pub fn payload(data: &[u8]) {
    decode_round_trip::<Sample>(data);
    decode_round_trip::<Tree>(data);
    decode_round_trip::<(String, Vec<Option<u8>>, Item)>(data);
}

/// Writes `data` to `writer` and closes it (from a thread if it may not
/// fit the pipe's or the socket's buffer), while `read` reads `conn`, the
/// other end; then drains what `read` left, so that the writer never waits
/// for a reader that stopped (nor writes to a closed pipe).
fn fed(data: &[u8], writer: OwnedFd, conn: Connection, read: impl FnOnce(&Connection)) {
    let mut writer = std::fs::File::from(writer);
    if data.len() <= 16 << 10 {
        let _ = writer.write_all(data);
        drop(writer);
        read(&conn);
        return;
    }
    std::thread::scope(|s| {
        s.spawn(move || {
            let _ = writer.write_all(data);
        });
        read(&conn);
        if let Ok(fd) = conn.as_fd().try_clone_to_owned() {
            let _ = std::io::copy(&mut std::fs::File::from(fd), &mut std::io::sink());
        }
    })
}

/// The frame reader: `data[0]` chooses a pipe or a socket, a small limit or
/// the default one, and the order of the reading calls; the rest is the
/// byte stream a peer wrote, then end of file.
pub fn frames(data: &[u8]) {
    let Some((&mode, stream)) = data.split_first() else {
        return;
    };
    let (reader, writer): (OwnedFd, OwnedFd) = if mode & 1 == 0 {
        match std::io::pipe() {
            Ok((r, w)) => (r.into(), w.into()),
            Err(_) => return,
        }
    } else {
        match UnixStream::pair() {
            Ok((r, w)) => (r.into(), w.into()),
            Err(_) => return,
        }
    };
    let conn = Connection::from_fd(reader, true, false);
    if mode & 2 != 0 {
        conn.set_max_frame_len(4096);
    }
    fed(stream, writer, conn, |conn| {
        let mut buf = [0u8; 64];
        // Every call consumes at least a byte or ends the stream.
        for i in 0..=stream.len() + 1 {
            let r = match (usize::from(mode >> 2) + i) % 4 {
                0 => conn.recv_bytes().map(drop),
                1 => conn.recv::<Sample>().map(drop),
                2 => conn.recv_bytes_into(&mut buf).map(drop),
                _ => conn
                    .poll(Some(Duration::ZERO))
                    .and_then(|_| conn.recv::<u32>().map(drop)),
            };
            match r {
                Ok(()) | Err(Error::Decode(_)) | Err(Error::BufferTooShort(_)) => {}
                Err(_) => break,
            }
        }
    })
}

/// The frame reader with descriptors: `data[0]` chooses the order of the
/// reading calls; the rest is what a peer sends, one `sendmsg` per chunk
/// `[n, len, len bytes]` with `n % 4` descriptors attached, then end of
/// file. The descriptors are duplicates of a pipe's write end: afterwards
/// the pipe's read end must see end of file, so no descriptor that came was
/// kept open (each was claimed and dropped, or closed unclaimed).
pub fn fd_frames(data: &[u8]) {
    use std::os::fd::AsRawFd;
    let Some((&mode, mut rest)) = data.split_first() else {
        return;
    };
    let (Ok((ours, theirs)), Ok((probe_r, probe_w))) = (UnixStream::pair(), std::io::pipe()) else {
        return;
    };
    let mut chunks = Vec::new();
    while let [n, len, tail @ ..] = rest {
        let (bytes, next) = tail.split_at(usize::from(*len).min(tail.len()));
        if !bytes.is_empty() {
            chunks.push((usize::from(n % 4), bytes));
        }
        rest = next;
    }
    let conn = Connection::from_fd(ours.into(), true, true);
    std::thread::scope(|s| {
        let probe_w = &probe_w;
        s.spawn(move || {
            for (n, bytes) in chunks {
                let fds = vec![probe_w.as_raw_fd(); n];
                if crate::sys::scm::send_with_fds(theirs.as_fd(), bytes, &fds).is_err() {
                    break;
                }
            }
        });
        for i in 0..=data.len() + 1 {
            let r = match (usize::from(mode) + i) % 5 {
                0 => conn.recv::<(Connection, u8)>().map(drop),
                1 => conn.recv::<(u8, Option<crate::Lock>)>().map(drop),
                2 => conn.recv_bytes().map(drop),
                3 => crate::reduction::recv_handle(&conn).map(drop),
                _ => conn.recv::<Sample>().map(drop),
            };
            match r {
                Ok(())
                | Err(Error::Decode(_))
                | Err(Error::DescriptorsMissing { .. })
                | Err(Error::Invalid { .. }) => {}
                Err(_) => break,
            }
        }
        // Let the writer finish (plain reads: the kernel closes what comes).
        if let Ok(fd) = conn.as_fd().try_clone_to_owned() {
            let _ = std::io::copy(&mut std::fs::File::from(fd), &mut std::io::sink());
        }
    });
    drop(conn);
    drop(probe_w);
    assert!(
        crate::sys::fd::readable(probe_r.as_fd(), Some(Duration::ZERO)).unwrap_or(true),
        "a descriptor that came with a message is still open"
    );
}

/// A connection whose peer wrote `data` (at most 64 KiB: it must fit the
/// socket's buffer) and then shut its sending side down. The peer's end
/// stays open, so what this end sends is not an error.
fn peer_wrote(data: &[u8]) -> Option<(Connection, UnixStream)> {
    let (ours, mut theirs) = UnixStream::pair().ok()?;
    theirs.write_all(&data[..data.len().min(64 << 10)]).ok()?;
    theirs.shutdown(std::net::Shutdown::Write).ok()?;
    Some((Connection::from_fd(ours.into(), true, true), theirs))
}

/// The connecting side of the handshake answering a peer that sent `data`.
pub fn answer_challenge(data: &[u8]) {
    if let Some((conn, _peer)) = peer_wrote(data) {
        let _ = crate::connection::answer_challenge(&conn, AUTHKEY);
    }
}

/// The listening side of the handshake checking a peer that sent `data`.
pub fn deliver_challenge(data: &[u8]) {
    if let Some((conn, _peer)) = peer_wrote(data) {
        let _ = crate::connection::deliver_challenge(&conn, AUTHKEY);
    }
}

/// Handles made from bytes: `data[0]` chooses the kind, the rest is the
/// encoding. Nothing decoded is ever called.
pub fn handles(data: &[u8]) {
    let Some((&kind, bytes)) = data.split_first() else {
        return;
    };
    match kind % 4 {
        0 => {
            if let Ok(f) = codec::decode::<FnPointer<fn(u64) -> u64>>(bytes) {
                let _ = f.check(StartMethod::Spawn, "fuzzed");
                let _ = f.get();
            }
        }
        1 => {
            if let Ok(f) = codec::decode::<ErasedFunction>(bytes) {
                let _ = f.check(StartMethod::Forkserver, "fuzzed");
                let _ = f.bind();
            }
        }
        2 => {
            if let Ok(p) = codec::decode::<Packed>(bytes) {
                let _ = p.unpack::<Sample>();
                let _ = p.with_handles(codec::decode::<(u8, Tree)>);
            }
        }
        _ => {
            // With descriptors at hand, as in a child's arguments.
            let Ok((r, w)) = std::io::pipe() else {
                return;
            };
            let conn = crate::wire::handle::handle_type("Connection", 0);
            let fds = vec![(OwnedFd::from(r), conn), (OwnedFd::from(w), conn)];
            crate::wire::payload::with_fds(fds, || {
                let _ = crate::wire::payload::decode::<(Packed, Vec<u8>)>(bytes);
                let _ = crate::wire::payload::decode::<Connection>(bytes);
            });
        }
    }
}

/// The child's bootstrap reader: `data` as the bootstrap memfd's content.
pub fn bootstrap(data: &[u8]) {
    let Ok(fd) = crate::sys::fd::memfd(c"mp-fuzz-bootstrap") else {
        return;
    };
    let mut file = std::fs::File::from(fd);
    if file.write_all(data).is_err() {
        return;
    }
    if let Ok(boot) = crate::rt::child::read_bootstrap(file.into()) {
        let _ = crate::rt::child::ChildFds::from_vec(Vec::new(), boot.has_result);
        let _ = crate::wire::runners::resolve(boot.runner, boot.target, boot.fingerprint);
        let _ = boot.becoming();
    }
}

/// A fuzz target's entry point.
pub type Target = fn(&[u8]);

/// The fuzz targets of mp-proc, by name (each a function of this module).
pub const TARGETS: &[(&str, Target)] = &[
    ("frames", frames),
    ("answer_challenge", answer_challenge),
    ("deliver_challenge", deliver_challenge),
    ("payload", payload),
    ("handles", handles),
    ("bootstrap", bootstrap),
    ("fd_frames", fd_frames),
    ("link", link::link),
];

fn sample(n: u8) -> Sample {
    let depth = usize::from(n) * 7;
    Sample {
        id: u64::from(n) << (n % 64),
        name: "sample ".repeat(usize::from(n % 4)),
        bytes: (0..n).collect(),
        flags: (
            n.is_multiple_of(2),
            char::from(b'a' + n % 26),
            -i32::from(n),
        ),
        ratio: f64::from(n) / 3.0,
        when: (!n.is_multiple_of(3)).then(|| Duration::new(u64::from(n), u32::from(n) * 1000)),
        items: vec![
            Item::Unit,
            Item::Newtype(-i64::from(n)),
            Item::Tuple(n, "t".into()),
            Item::Struct {
                next: Some(Box::new(Item::Struct {
                    next: None,
                    b: [n; 3],
                })),
                b: [1, 2, 3],
            },
        ]
        .into_iter()
        .take(usize::from(n % 5))
        .collect(),
        map: (0..n % 4)
            .map(|k| (format!("key{k}"), vec![u16::from(k); usize::from(k)]))
            .collect(),
        tree: tree(depth),
        big: u128::from(n) << 100,
        fixed: [n, 0, 255, n],
    }
}

/// A tree `depth` levels deep.
pub fn tree(depth: usize) -> Tree {
    (0..depth).fold(Tree::Leaf, |t, _| Tree::Node(Box::new(t)))
}

fn encoded<T: Serialize + ?Sized>(value: &T) -> Vec<u8> {
    codec::encode(value).expect("a seed encodes")
}

/// `frame` with CPython's 4-byte header in front.
fn framed(frame: &[u8]) -> Vec<u8> {
    let mut out = (frame.len() as u32).to_be_bytes().to_vec();
    out.extend_from_slice(frame);
    out
}

fn prefixed(mode: u8, rest: &[u8]) -> Vec<u8> {
    let mut out = vec![mode];
    out.extend_from_slice(rest);
    out
}

fn frames_seeds() -> Vec<Vec<u8>> {
    let mut streams: Vec<Vec<u8>> = Vec::new();
    let mut values = Vec::new();
    for n in 0..4 {
        Connection::encode_frame(&sample(n), &mut values).expect("a frame encodes");
    }
    Connection::encode_frame(&7u32, &mut values).expect("a frame encodes");
    streams.push(values);
    streams.push([framed(b""), framed(b"hello"), framed(&[7; 100])].concat());
    streams.push([framed(&[1; 300]), framed(&[0, 0, 0, 9])].concat()); // nested past the bound
    streams.push(vec![
        0xff, 0xff, 0xff, 0xff, 0, 0, 0, 0, 0, 0, 0, 3, 1, 2, 3,
    ]); // the >2 GiB escape
    streams.push(vec![0x80, 0, 0, 0]); // negative length
    streams.push(vec![0x40, 0, 0, 0, 1, 2]); // claims 1 GiB, then ends
    streams.push(vec![0, 0, 0, 10, 1, 2, 3]); // truncated payload
    streams.push(vec![0, 0]); // truncated header
    let mut seeds = Vec::new();
    for (i, stream) in streams.iter().enumerate() {
        for mode in [0u8, 1, 6, 13] {
            if (i + usize::from(mode)) % 2 == 0 || i < 2 {
                seeds.push(prefixed(mode, stream));
            }
        }
    }
    // One frame larger than the read buffer.
    seeds.push(prefixed(5, &framed(&[0xab; 65 << 10])));
    seeds
}

fn answer_seeds() -> Vec<Vec<u8>> {
    let welcome = framed(b"#WELCOME#");
    let mut seeds = Vec::new();
    for (digest, random) in [("{sha256}", 40), ("{sha384}", 40), ("{md5}", 40), ("", 20)] {
        let mut challenge = b"#CHALLENGE#".to_vec();
        challenge.extend_from_slice(digest.as_bytes());
        challenge.extend((0..random).map(|i: u8| i.wrapping_mul(37)));
        seeds.push([framed(&challenge), welcome.clone()].concat());
        seeds.push([framed(&challenge), framed(b"#FAILURE#")].concat());
        seeds.push(framed(&challenge));
    }
    seeds.push(framed(b"#CHALLENGE#short"));
    seeds.push(framed(b"#CHALLENGE#{sha1}0123456789abcdefghij"));
    seeds.push(framed(&[b'#'; 300]));
    seeds.push(framed(b"not a challenge"));
    seeds.push(b"#CHALLENGE#".to_vec()); // no header
    seeds
}

fn deliver_seeds() -> Vec<Vec<u8>> {
    let mut seeds = Vec::new();
    for (digest, len) in [("{sha256}", 32), ("{sha384}", 48), ("{md5}", 16), ("", 16)] {
        let mut reply = digest.as_bytes().to_vec();
        reply.extend((0..len).map(|i: u8| i.wrapping_mul(11)));
        seeds.push(framed(&reply));
        seeds.push(framed(&reply[..reply.len() - 1]));
    }
    seeds.push(framed(b"{sha256}"));
    seeds.push(framed(b"{sha3_256}0123456789abcdef0123456789abcdef"));
    seeds.push(framed(&[0; 20]));
    seeds.push(framed(&[b'{'; 256]));
    seeds.push(framed(&[b'{'; 257]));
    seeds.push(vec![0, 0, 1]);
    seeds
}

fn payload_seeds() -> Vec<Vec<u8>> {
    let mut seeds: Vec<Vec<u8>> = (0..12).map(|n| encoded(&sample(n))).collect();
    for depth in [0, 1, 100, 127, 128, 129, 1000] {
        seeds.push(encoded(&tree(depth)));
    }
    seeds.push(encoded(&(
        "text".to_string(),
        vec![Some(1u8), None],
        Item::Unit,
    )));
    seeds.push(encoded(&(
        String::new(),
        Vec::<Option<u8>>::new(),
        Item::Struct {
            next: Some(Box::new(Item::Newtype(-1))),
            b: [9; 3],
        },
    )));
    seeds.push(vec![0xff; 11]); // an overlong varint
    seeds.push(vec![0x80, 0x00]); // a non-canonical zero
    seeds
}

fn double(x: u64) -> u64 {
    x * 2
}

fn handles_seeds() -> Vec<Vec<u8>> {
    let mut seeds = Vec::new();
    let f = FnPointer::new(double as fn(u64) -> u64);
    let bytes = encoded(&f);
    seeds.push(prefixed(0, &bytes));
    for (i, delta) in [1i8, 3, -1].into_iter().enumerate() {
        let mut moved = bytes.clone();
        moved[i] = moved[i].wrapping_add(delta as u8); // the offset, moved
        seeds.push(prefixed(0, &moved));
    }
    seeds.push(prefixed(
        0,
        &encoded(&FnPointer::new(sample as fn(u8) -> Sample)),
    ));
    let erased = crate::Function::new(double).erased();
    seeds.push(prefixed(1, &encoded(&erased)));
    seeds.push(prefixed(1, &encoded(&crate::Function::new(tree).erased())));
    for n in 0..4 {
        let packed = Packed::pack(&sample(n)).expect("a value packs");
        seeds.push(prefixed(2, &encoded(&packed)));
    }
    let packed = Packed::pack(&(3u8, tree(5))).expect("a value packs");
    seeds.push(prefixed(2, &encoded(&packed)));
    // With descriptors: a connection, and a value packed with one.
    if let Ok((a, _b)) = crate::pipe(true) {
        if let Ok((bytes, _)) = crate::wire::payload::encode_with_fds(&a) {
            seeds.push(prefixed(3, &bytes));
        }
        if let Ok(packed) = Packed::pack(&(a.clone(), 1u8))
            && let Ok((bytes, _)) = crate::wire::payload::encode_with_fds(&(packed, vec![1u8, 2]))
        {
            seeds.push(prefixed(3, &bytes));
        }
    }
    seeds
}

/// A real bootstrap of a process of `method` with `i` connections.
fn sample_bootstrap(i: usize, method: StartMethod) -> crate::rt::child::Bootstrap {
    use crate::sys::image;
    fn child(_: u32) {}
    let runner = crate::wire::runners::process_runner::<u32>() as usize;
    let target = child as fn(u32) as usize;
    crate::rt::child::Bootstrap {
        name: format!("Process-{i}"),
        identity: vec![1, i as u32],
        daemon: i.is_multiple_of(2),
        authkey: vec![7; 32],
        parent_name: "MainProcess".into(),
        parent_pid: 4242,
        start_method: method,
        log_level: 20,
        log_stderr: i == 1,
        log_propagate: true,
        fingerprint: image::fingerprint(),
        runner: image::offset_of(runner),
        target: image::offset_of(target),
        args: encoded(&(i as u32)),
        nfds: i as u32,
        fd_types: vec![crate::wire::handle::handle_type("Connection", 0); i],
        has_result: method == StartMethod::Spawn,
    }
}

fn bootstrap_seeds() -> Vec<Vec<u8>> {
    let mut seeds = Vec::new();
    for (i, method) in StartMethod::ALL.into_iter().enumerate() {
        let boot = sample_bootstrap(i, method);
        let bytes = encoded(&boot);
        seeds.push(bytes.clone());
        seeds.push(bytes[..bytes.len() / 2].to_vec());
        let mut moved = bytes.clone();
        let at = bytes.len() - 12;
        moved[at] ^= 1;
        seeds.push(moved);
    }
    seeds.push(Vec::new());
    seeds
}

/// Chunks of [`fd_frames`]: real frames with and without handles, sent with
/// the right descriptors, none, or too many.
fn fd_frames_seeds() -> Vec<Vec<u8>> {
    let chunk = |n: u8, bytes: &[u8]| -> Vec<u8> {
        bytes
            .chunks(255)
            .enumerate()
            .flat_map(|(i, c)| {
                let mut v = vec![if i == 0 { n } else { 0 }, c.len() as u8];
                v.extend_from_slice(c);
                v
            })
            .collect()
    };
    let (Ok((a, _b)), Ok(lock)) = (crate::pipe(true), crate::Lock::new()) else {
        return Vec::new();
    };
    let attached = |value: &dyn Fn(&mut Vec<u8>) -> crate::Result<()>| {
        let mut frame = Vec::new();
        let (r, _fds) = crate::wire::payload::with_message_sink(|| value(&mut frame));
        r.map(|()| frame).unwrap_or_default()
    };
    let conn = attached(&|out| Connection::encode_frame(&(a.clone(), 7u8), out));
    let block = attached(&|out| Connection::encode_frame(&(3u8, Some(lock.clone())), out));
    let plain = framed(&codec::encode(&sample(3)).unwrap_or_default());
    let mut seeds = Vec::new();
    for mode in [0u8, 1, 3] {
        seeds.push(prefixed(
            mode,
            &[chunk(1, &conn), chunk(0, &plain)].concat(),
        ));
        seeds.push(prefixed(
            mode,
            &[chunk(0, &conn), chunk(3, &plain)].concat(),
        ));
        seeds.push(prefixed(mode, &[chunk(2, &block), chunk(1, &[1])].concat()));
        seeds.push(prefixed(
            mode,
            &[chunk(1, &[1]), chunk(0, &[1]), chunk(3, &conn)].concat(),
        ));
    }
    seeds
}

/// Real encodings for `target`'s seed corpus: a few dozen inputs made from
/// the values and frames mp itself sends, and their usual corruptions.
pub fn seeds(target: &str) -> Vec<Vec<u8>> {
    match target {
        "frames" => frames_seeds(),
        "answer_challenge" => answer_seeds(),
        "deliver_challenge" => deliver_seeds(),
        "payload" => payload_seeds(),
        "handles" => handles_seeds(),
        "bootstrap" => bootstrap_seeds(),
        "fd_frames" => fd_frames_seeds(),
        "link" => link::seeds(),
        _ => Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_reader_that_stops_early_does_not_leave_the_writer_waiting() {
        // Over the limit at once, with more bytes behind than the pipe and
        // the read buffer hold: the writer finishes only if they are drained.
        for mode in [2u8, 3] {
            frames(&prefixed(mode, &framed(&[0xcd; 300 << 10])));
        }
    }
}
