//! `Connection`: CPython's framed byte stream over a pipe or a socket.

use std::fmt;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::error::{Error, OsContext, Result};
use crate::mutex::lock;
use crate::sys;
use crate::wire::{frame, payload};

use super::intake::{Claimed, Intake};

/// The default limit on the length of one received message: 1 GiB.
///
/// A peer that announces more gets [`Error::FrameTooLong`] instead of an
/// allocation. Raise it per connection with [`Connection::set_max_frame_len`].
pub const DEFAULT_MAX_FRAME_LEN: u64 = 1 << 30;

/// Frames up to this size (header included) go out with one `write` of a copy;
/// larger ones are gathered with `writev` (CPython's threshold, bpo-20540).
const COPY_THRESHOLD: usize = 16 * 1024;
/// The read buffer: small frames are parsed from it, many per `read`. Also
/// the room a large frame's buffer starts with, whatever length its header
/// claims: past that, the buffer doubles only once the bytes it has room for
/// have arrived, so a lying length costs no memory.
const READ_BUF: usize = 64 * 1024;

/// One end of a pipe, Python's `multiprocessing.connection.Connection`.
///
/// Messages are framed as CPython frames them: a 4-byte big-endian length
/// (and, above 2 GiB - 1, CPython's escape: `-1` followed by an 8-byte
/// length), then the bytes. [`send_bytes`](Connection::send_bytes) and
/// [`recv_bytes`](Connection::recv_bytes) talk to a Python peer byte for
/// byte; [`send`](Connection::send) and [`recv`](Connection::recv) carry typed
/// values encoded with postcard, never pickle.
///
/// Unlike CPython, a frame whose length is over the connection's limit
/// ([`DEFAULT_MAX_FRAME_LEN`]) or negative is an error, not an allocation or a
/// silent loss of the stream's place.
///
/// A `Connection` is `Clone` (clones share the descriptor, which closes with
/// the last clone) and can be passed to a child process inside its `args`
/// under every start method, or sent after start like any handle (see
/// [`reduction`](crate::reduction)). Handles sent with [`send`](Self::send)
/// on a duplex connection take their descriptors along (`SCM_RIGHTS`); on a
/// one-way pipe they go as tickets.
///
/// ```
/// let (left, right) = mp_proc::pipe(true)?;
/// left.send(&("ping", 42))?;
/// let (word, n): (String, i32) = right.recv()?;
/// assert_eq!((word.as_str(), n), ("ping", 42));
/// right.send_bytes(b"raw bytes")?;
/// assert_eq!(left.recv_bytes()?, b"raw bytes");
/// # Ok::<(), mp_proc::Error>(())
/// ```
#[derive(Clone)]
pub struct Connection {
    inner: Arc<Inner>,
}

struct Inner {
    fd: OwnedFd,
    readable: bool,
    writable: bool,
    socket: bool,
    /// A Unix socket: descriptors can go with its messages.
    unix: bool,
    max_frame: AtomicU64,
    reader: Mutex<Reader>,
    writer: Mutex<Vec<u8>>,
}

/// Bytes read from the descriptor but not yet consumed: `buf[start..end]`.
struct Reader {
    buf: Box<[u8]>,
    start: usize,
    end: usize,
    /// An earlier error lost the frame boundary.
    desync: bool,
    /// Where the stream is, and the descriptors that came with it.
    intake: Intake,
}

impl Reader {
    /// The stream position of the first byte not yet consumed.
    fn consumed(&self) -> u64 {
        self.intake.pos - (self.end - self.start) as u64
    }
}

/// Python's `Pipe(duplex)`: a connected pair of [`Connection`]s.
///
/// With `duplex = true` both ends send and receive (a Unix socket pair). With
/// `duplex = false` the **first** end only receives and the second only sends
/// (an OS pipe), in CPython's order.
///
/// ```
/// let (reader, writer) = mp_proc::pipe(false)?;
/// writer.send(&vec![1u8, 2, 3])?;
/// assert_eq!(reader.recv::<Vec<u8>>()?, [1, 2, 3]);
/// assert!(reader.send(&0).is_err()); // the read end cannot send
/// # Ok::<(), mp_proc::Error>(())
/// ```
pub fn pipe(duplex: bool) -> Result<(Connection, Connection)> {
    if duplex {
        let (a, b) = sys::fd::socket_pair(false).os("socketpair")?;
        Ok((
            Connection::new(a, true, true, true),
            Connection::new(b, true, true, true),
        ))
    } else {
        let (r, w) = sys::fd::pipe().os("pipe")?;
        Ok((
            Connection::new(r, true, false, false),
            Connection::new(w, false, true, false),
        ))
    }
}

impl Connection {
    pub(crate) fn new(fd: OwnedFd, readable: bool, writable: bool, socket: bool) -> Connection {
        Connection {
            inner: Arc::new(Inner {
                unix: socket && sys::fd::is_unix_socket(fd.as_fd()),
                fd,
                readable,
                writable,
                socket,
                max_frame: AtomicU64::new(DEFAULT_MAX_FRAME_LEN),
                reader: Mutex::new(Reader {
                    buf: Vec::new().into_boxed_slice(),
                    start: 0,
                    end: 0,
                    desync: false,
                    intake: Intake::default(),
                }),
                writer: Mutex::new(Vec::new()),
            }),
        }
    }

    /// Wraps a connected stream socket or a pipe end this process owns.
    /// Whether it is a socket is read from the descriptor.
    pub fn from_fd(fd: OwnedFd, readable: bool, writable: bool) -> Connection {
        let socket = sys::fd::is_socket(fd.as_fd());
        Connection::new(fd, readable, writable, socket)
    }

    /// Whether this end can receive.
    pub fn readable(&self) -> bool {
        self.inner.readable
    }

    /// Whether this end can send.
    pub fn writable(&self) -> bool {
        self.inner.writable
    }

    /// The longest message this end accepts, in bytes.
    pub fn max_frame_len(&self) -> u64 {
        self.inner.max_frame.load(Ordering::Relaxed)
    }

    /// Sets the longest message this end accepts. A longer one is
    /// [`Error::FrameTooLong`], and this end cannot be read afterwards.
    ///
    /// ```
    /// let (a, b) = mp_proc::pipe(true)?;
    /// b.set_max_frame_len(4);
    /// a.send_bytes(b"too long")?;
    /// assert!(matches!(b.recv_bytes(), Err(mp_proc::Error::FrameTooLong { len: 8, max: 4 })));
    /// # Ok::<(), mp_proc::Error>(())
    /// ```
    pub fn set_max_frame_len(&self, max: u64) {
        self.inner.max_frame.store(max, Ordering::Relaxed);
    }

    /// Sends a value, encoded with postcard, as one message.
    ///
    /// ```
    /// #[derive(serde::Serialize, serde::Deserialize, PartialEq, Debug)]
    /// struct Job { id: u32, name: String }
    /// let (a, b) = mp_proc::pipe(true)?;
    /// a.send(&Job { id: 7, name: "seven".into() })?;
    /// assert_eq!(b.recv::<Job>()?, Job { id: 7, name: "seven".into() });
    /// # Ok::<(), mp_proc::Error>(())
    /// ```
    pub fn send<T: Serialize + ?Sized>(&self, value: &T) -> Result<()> {
        if !self.inner.writable {
            return Err(Error::ReadOnly);
        }
        let mut guard = lock(&self.inner.writer);
        let mut buf = std::mem::take(&mut *guard);
        buf.clear();
        let fd = self.inner.fd.as_fd();
        let r = if self.inner.unix {
            // The descriptors of its handles go with the message.
            let (r, fds) = payload::with_message_sink(|| Self::encode_frame(value, &mut buf));
            r.and_then(|()| match fds.is_empty() {
                true => sys::fd::write_all(fd, &buf, true).os("send"),
                false => sys::scm::send_with_fds(fd, &buf, &fds).os("send"),
            })
        } else {
            Self::encode_frame(value, &mut buf)
                .and_then(|()| sys::fd::write_all(fd, &buf, false).os("send"))
        };
        if buf.capacity() <= READ_BUF {
            *guard = buf;
        }
        r
    }

    /// Appends the frame that [`send`](Self::send) would write for `value`
    /// (header and payload) to `out`, for a caller that writes frames itself
    /// with [`write_nonblocking`](Self::write_nonblocking).
    ///
    /// ```
    /// let (a, b) = mp_proc::pipe(true)?;
    /// let mut frame = Vec::new();
    /// mp_proc::Connection::encode_frame(&42u32, &mut frame)?;
    /// let mut sent = 0;
    /// while sent < frame.len() {
    ///     sent += a.write_nonblocking(&frame[sent..])?;
    /// }
    /// assert_eq!(b.recv::<u32>()?, 42);
    /// # Ok::<(), mp_proc::Error>(())
    /// ```
    pub fn encode_frame<T: Serialize + ?Sized>(value: &T, out: &mut Vec<u8>) -> Result<()> {
        frame::append(value, out)
    }

    /// Writes the start of `buf` without blocking and returns how many bytes
    /// went (0 when the peer's buffer is full: wait for the connection to be
    /// writable, e.g. `poll(2)` with `POLLOUT` on its fd). Frames written
    /// this way must not interleave with [`send`](Self::send) on the same
    /// connection.
    pub fn write_nonblocking(&self, buf: &[u8]) -> Result<usize> {
        if !self.inner.writable {
            return Err(Error::ReadOnly);
        }
        let _guard = lock(&self.inner.writer);
        sys::fd::write_nonblocking(self.inner.fd.as_fd(), buf, self.inner.socket).os("send")
    }

    /// Receives one message and decodes it as `T`.
    ///
    /// Bytes that do not decode as `T` are [`Error::Decode`]; the message is
    /// consumed and the connection stays usable. A closed peer is
    /// [`Error::Eof`]; it never blocks forever on a peer that is gone.
    pub fn recv<T: DeserializeOwned>(&self) -> Result<T> {
        let mut reader = self.reader()?;
        let r = &mut *reader;
        let from = r.consumed();
        let len = self.read_header(r)? as usize;
        if r.end - r.start >= len {
            // The whole frame is buffered: decode in place.
            let at = r.start;
            r.start += len;
            let fds = r.intake.claim(from, r.consumed());
            return decode_message(&r.buf[at..at + len], fds);
        }
        let mut frame = Vec::new();
        self.read_payload(r, len, &mut frame)?;
        let fds = r.intake.claim(from, r.consumed());
        drop(reader);
        decode_message(&frame, fds)
    }

    /// [`reduction::send_handle`](crate::reduction::send_handle).
    pub(crate) fn send_handle(&self, fd: BorrowedFd<'_>) -> Result<()> {
        if !self.inner.writable {
            return Err(Error::ReadOnly);
        }
        if !self.inner.unix {
            return Err(Error::Invalid {
                what: "send_handle",
                reason: "only a Unix socket (a duplex pipe) can carry descriptors".into(),
            });
        }
        let _guard = lock(&self.inner.writer);
        // CPython's `sendfds`: one byte, the number of descriptors.
        sys::scm::send_with_fds(self.inner.fd.as_fd(), &[1], &[fd.as_raw_fd()]).os("send_handle")
    }

    /// [`reduction::recv_handle`](crate::reduction::recv_handle).
    pub(crate) fn recv_handle(&self) -> Result<OwnedFd> {
        if self.inner.readable && !self.inner.unix {
            return Err(Error::Invalid {
                what: "recv_handle",
                reason: "only a Unix socket (a duplex pipe) can carry descriptors".into(),
            });
        }
        let mut reader = self.reader()?;
        let r = &mut *reader;
        let from = r.consumed();
        self.need_by(r, 1, None)?;
        r.start += 1;
        let mut claimed = r.intake.claim(from, from + 1);
        match claimed.fds.len() {
            1 if !claimed.lost => Ok(claimed.fds.remove(0)),
            0 => Err(Error::DescriptorsMissing {
                claimed: 1,
                arrived: 0,
            }),
            n => Err(Error::Invalid {
                what: "recv_handle",
                reason: format!(
                    "{n} descriptors{} came with the byte, not 1 (all closed)",
                    if claimed.lost { " and some lost" } else { "" }
                ),
            }),
        }
    }

    /// Sends `buf` as one message (Python's `send_bytes`).
    pub fn send_bytes(&self, buf: &[u8]) -> Result<()> {
        if !self.inner.writable {
            return Err(Error::ReadOnly);
        }
        let (header, n) = frame::header(buf.len());
        let header = &header[..n];
        let fd = self.inner.fd.as_fd();
        if header.len() + buf.len() <= COPY_THRESHOLD {
            let mut guard = lock(&self.inner.writer);
            guard.clear();
            guard.extend_from_slice(header);
            guard.extend_from_slice(buf);
            sys::fd::write_all(fd, &guard, self.inner.socket).os("send_bytes")
        } else {
            let _guard = lock(&self.inner.writer);
            sys::fd::write_all_vectored(fd, &[header, buf], self.inner.socket).os("send_bytes")
        }
    }

    /// Receives one message as bytes (Python's `recv_bytes`).
    ///
    /// ```
    /// let (a, b) = mp_proc::pipe(true)?;
    /// a.send_bytes(b"")?; // an empty message is a message
    /// assert!(b.poll(None)?);
    /// assert_eq!(b.recv_bytes()?, b"");
    /// drop(a);
    /// assert!(matches!(b.recv_bytes(), Err(mp_proc::Error::Eof)));
    /// # Ok::<(), mp_proc::Error>(())
    /// ```
    pub fn recv_bytes(&self) -> Result<Vec<u8>> {
        let mut reader = self.reader()?;
        let from = reader.consumed();
        let len = self.read_header(&mut reader)?;
        let mut frame = Vec::new();
        self.read_payload(&mut reader, len as usize, &mut frame)?;
        // Bytes claim no descriptors: any that came are closed.
        let to = reader.consumed();
        drop(reader.intake.claim(from, to));
        Ok(frame)
    }

    /// Receives one message into `buf` and returns its length (Python's
    /// `recv_bytes_into`). A message longer than `buf` is consumed and
    /// returned whole in [`Error::BufferTooShort`].
    ///
    /// ```
    /// let (a, b) = mp_proc::pipe(true)?;
    /// a.send_bytes(b"hello")?;
    /// let mut buf = [0u8; 16];
    /// let n = b.recv_bytes_into(&mut buf)?;
    /// assert_eq!(&buf[..n], b"hello");
    /// a.send_bytes(&[7; 32])?;
    /// match b.recv_bytes_into(&mut buf) {
    ///     Err(mp_proc::Error::BufferTooShort(whole)) => assert_eq!(whole, [7; 32]),
    ///     other => panic!("{other:?}"),
    /// }
    /// # Ok::<(), mp_proc::Error>(())
    /// ```
    pub fn recv_bytes_into(&self, buf: &mut [u8]) -> Result<usize> {
        let mut reader = self.reader()?;
        let from = reader.consumed();
        let len = self.read_header(&mut reader)? as usize;
        let r = if len > buf.len() {
            let mut whole = Vec::new();
            self.read_payload(&mut reader, len, &mut whole)?;
            Err(Error::BufferTooShort(whole))
        } else {
            self.read_payload_into(&mut reader, &mut buf[..len])?;
            Ok(len)
        };
        let to = reader.consumed();
        drop(reader.intake.claim(from, to));
        r
    }

    /// Sends `buf` as one message, waiting for room no later than
    /// `deadline` ([`Error::Timeout`] after it): for the handshake, where a
    /// peer that does not read must not hold the sender. `buf` is small (a
    /// pipe takes it in one atomic write of at most `PIPE_BUF` bytes).
    pub(crate) fn send_bytes_by(&self, buf: &[u8], deadline: Instant) -> Result<()> {
        if !self.inner.writable {
            return Err(Error::ReadOnly);
        }
        let (header, n) = frame::header(buf.len());
        let mut guard = lock(&self.inner.writer);
        guard.clear();
        guard.extend_from_slice(&header[..n]);
        guard.extend_from_slice(buf);
        let fd = self.inner.fd.as_fd();
        let mut sent = 0;
        while sent < guard.len() {
            let n = sys::fd::write_nonblocking(fd, &guard[sent..], self.inner.socket)
                .os("send_bytes")?;
            if n == 0 {
                let left = deadline.saturating_duration_since(Instant::now());
                if !sys::fd::wait_ready(&[], &[fd], Some(left)).os("send_bytes")?[0] {
                    return Err(Error::Timeout);
                }
            }
            sent += n;
        }
        Ok(())
    }

    /// Receives one message of at most `max` bytes (no more than the read
    /// buffer holds), waiting for its bytes no later than `deadline`
    /// (`None`: as long as it takes; [`Error::Timeout`] after it). A header
    /// that claims more than `max` is [`Error::FrameTooLong`] as soon as it
    /// is read, whatever the connection's own limit: for the handshake, whose
    /// messages are small.
    pub(crate) fn recv_bytes_by(&self, max: usize, deadline: Option<Instant>) -> Result<Vec<u8>> {
        let mut reader = self.reader()?;
        let from = reader.consumed();
        let max = max.min(READ_BUF) as u64;
        let len = self.read_header_by(&mut reader, max, deadline)? as usize;
        match self.need_by(&mut reader, len, deadline) {
            Ok(()) => {}
            Err(Error::Eof) => return Err(self.truncated(&mut reader, len, 0)),
            Err(e) => {
                // The header is consumed: the stream lost its place.
                reader.desync = true;
                return Err(e);
            }
        }
        let frame = reader.buf[reader.start..reader.start + len].to_vec();
        reader.start += len;
        let to = reader.consumed();
        drop(reader.intake.claim(from, to));
        Ok(frame)
    }

    /// Whether a message (or end of file) is waiting, waiting up to `timeout`
    /// for one (`None`: as long as it takes). Python's `poll`.
    ///
    /// ```
    /// use std::time::Duration;
    /// let (a, b) = mp_proc::pipe(true)?;
    /// assert!(!b.poll(Some(Duration::ZERO))?);
    /// a.send(&1u8)?;
    /// assert!(b.poll(Some(Duration::from_secs(5)))?);
    /// # Ok::<(), mp_proc::Error>(())
    /// ```
    pub fn poll(&self, timeout: Option<Duration>) -> Result<bool> {
        if !self.inner.readable {
            return Err(Error::WriteOnly);
        }
        if self.has_buffered() {
            return Ok(true);
        }
        sys::fd::readable(self.inner.fd.as_fd(), timeout).os("poll")
    }

    /// Whether bytes are buffered here (read from the OS, not yet consumed).
    pub(crate) fn has_buffered(&self) -> bool {
        match self.inner.reader.try_lock() {
            Ok(r) => r.end > r.start || r.desync,
            Err(_) => false,
        }
    }

    fn reader(&self) -> Result<MutexGuard<'_, Reader>> {
        if !self.inner.readable {
            return Err(Error::WriteOnly);
        }
        Self::prepared(lock(&self.inner.reader))
    }

    /// The locked reader, checked (not desynchronized) and with its buffer.
    fn prepared(mut reader: MutexGuard<'_, Reader>) -> Result<MutexGuard<'_, Reader>> {
        if reader.desync {
            return Err(Error::Desynchronized);
        }
        if reader.buf.is_empty() {
            reader.buf = vec![0; READ_BUF].into_boxed_slice();
        }
        Ok(reader)
    }

    /// Reads more bytes into the buffer (compacting it first). `Ok(0)`: end of file.
    fn fill(&self, reader: &mut Reader) -> Result<usize> {
        self.fill_by(reader, None)
    }

    /// As [`fill`](Self::fill), waiting for bytes no later than `deadline`
    /// (`None`: as long as it takes); [`Error::Timeout`] once it has passed.
    fn fill_by(&self, reader: &mut Reader, deadline: Option<Instant>) -> Result<usize> {
        if reader.start == reader.end {
            reader.start = 0;
            reader.end = 0;
        } else if reader.end == reader.buf.len() {
            let (start, end) = (reader.start, reader.end);
            reader.buf.copy_within(start..end, 0);
            reader.start = 0;
            reader.end = end - start;
        }
        let end = reader.end;
        let fd = self.inner.fd.as_fd();
        match deadline {
            // Poll a little before a read that would sleep: a peer that answers
            // within the poll is seen without a sleep and a cross-CPU wake-up.
            None => {
                crate::spin::poll_until(|| {
                    sys::fd::readable(fd, Some(Duration::ZERO)).unwrap_or(true)
                });
            }
            Some(d) => {
                let left = d.saturating_duration_since(Instant::now());
                if !sys::fd::readable(fd, Some(left)).os("recv")? {
                    return Err(Error::Timeout);
                }
            }
        }
        let n = reader
            .intake
            .read(fd, self.inner.unix, &mut reader.buf[end..])?;
        reader.end += n;
        Ok(n)
    }

    /// Makes at least `want` bytes available, no later than `deadline`
    /// (`None`: as long as it takes); `Err` at end of file.
    fn need_by(&self, reader: &mut Reader, want: usize, deadline: Option<Instant>) -> Result<()> {
        while reader.end - reader.start < want {
            if self.fill_by(reader, deadline)? == 0 {
                let got = reader.end - reader.start;
                if got == 0 {
                    return Err(Error::Eof);
                }
                reader.desync = true;
                return Err(Error::TruncatedFrame {
                    expected: want as u64,
                    got: got as u64,
                });
            }
        }
        Ok(())
    }

    /// Consumes one frame header and returns the payload's length.
    fn read_header(&self, reader: &mut Reader) -> Result<u64> {
        self.read_header_by(reader, self.max_frame_len(), None)
    }

    /// As [`read_header`](Self::read_header), with `max` for the limit and
    /// no later than `deadline`.
    fn read_header_by(
        &self,
        reader: &mut Reader,
        max: u64,
        deadline: Option<Instant>,
    ) -> Result<u64> {
        let mut want = 4;
        loop {
            self.need_by(reader, want, deadline)?;
            match crate::wire::frame::parse_header(&reader.buf[reader.start..reader.end], max) {
                Ok(Some((head, len))) => {
                    reader.start += head;
                    return Ok(len);
                }
                // CPython's escape, whose 8-byte length has not all arrived.
                Ok(None) => want = 12,
                Err(e) => {
                    reader.desync = true;
                    return Err(e);
                }
            }
        }
    }

    /// Reads a payload of `len` bytes into `out`. Its memory grows with the
    /// bytes that arrive, never with the length claimed: it starts with room
    /// for what is buffered or [`READ_BUF`], and doubles (up to `len`) only
    /// when that room is full.
    fn read_payload(&self, reader: &mut Reader, len: usize, out: &mut Vec<u8>) -> Result<()> {
        let buffered = (reader.end - reader.start).min(len);
        out.reserve_exact(len.min(buffered.max(READ_BUF)));
        out.extend_from_slice(&reader.buf[reader.start..reader.start + buffered]);
        reader.start += buffered;
        while out.len() < len {
            let left = len - out.len();
            if left < READ_BUF / 2 {
                // Small remainder: read through the buffer, which may also
                // pick up the frames that follow.
                if self.fill(reader)? == 0 {
                    return Err(self.truncated(reader, len, out.len()));
                }
                let take = (reader.end - reader.start).min(left);
                out.extend_from_slice(&reader.buf[reader.start..reader.start + take]);
                reader.start += take;
            } else {
                if out.len() == out.capacity() {
                    // Full: what arrived pays for as much room again.
                    out.reserve_exact(left.min(out.capacity().max(READ_BUF)));
                }
                let n =
                    reader
                        .intake
                        .read_append(self.inner.fd.as_fd(), self.inner.unix, out, left)?;
                if n == 0 {
                    return Err(self.truncated(reader, len, out.len()));
                }
            }
        }
        Ok(())
    }

    /// Reads a payload of exactly `dest.len()` bytes into `dest`.
    fn read_payload_into(&self, reader: &mut Reader, dest: &mut [u8]) -> Result<()> {
        let len = dest.len();
        let buffered = (reader.end - reader.start).min(len);
        dest[..buffered].copy_from_slice(&reader.buf[reader.start..reader.start + buffered]);
        reader.start += buffered;
        let mut done = buffered;
        while done < len {
            let left = len - done;
            let n = if left < READ_BUF / 2 {
                if self.fill(reader)? == 0 {
                    0
                } else {
                    let take = (reader.end - reader.start).min(left);
                    dest[done..done + take]
                        .copy_from_slice(&reader.buf[reader.start..reader.start + take]);
                    reader.start += take;
                    take
                }
            } else {
                reader
                    .intake
                    .read(self.inner.fd.as_fd(), self.inner.unix, &mut dest[done..])?
            };
            if n == 0 {
                return Err(self.truncated(reader, len, done));
            }
            done += n;
        }
        Ok(())
    }

    fn truncated(&self, reader: &mut Reader, expected: usize, got: usize) -> Error {
        reader.desync = true;
        Error::TruncatedFrame {
            expected: expected as u64,
            got: got as u64,
        }
    }
}

/// Decodes a received message, whose handles take their descriptors from
/// those that came with it (the rest are closed).
fn decode_message<T: DeserializeOwned>(bytes: &[u8], fds: Claimed) -> Result<T> {
    if fds.is_empty() {
        return payload::decode(bytes);
    }
    payload::with_message_fds(fds.fds, || payload::decode(bytes))
}

impl AsFd for Connection {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.inner.fd.as_fd()
    }
}

/// For event loops whose registrations take an [`AsRawFd`] (tokio's
/// `AsyncFd<Connection>`): wait for it to be readable, then receive with
/// [`try_recv`](Connection::try_recv), draining it before each wait.
impl AsRawFd for Connection {
    fn as_raw_fd(&self) -> std::os::fd::RawFd {
        self.inner.fd.as_raw_fd()
    }
}

impl fmt::Debug for Connection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Connection")
            .field("fd", &self.inner.fd.as_raw_fd())
            .field("readable", &self.inner.readable)
            .field("writable", &self.inner.writable)
            .finish()
    }
}

#[path = "conn_wire.rs"]
mod wire;

#[path = "conn_try.rs"]
mod try_recv;

#[cfg(test)]
#[path = "conn_tests.rs"]
mod tests;
