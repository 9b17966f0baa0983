//! The link between a parent and the agent that runs one of its processes
//! on another host: the launcher's standard input and output (for ssh, ssh's
//! encrypted channel), carrying CPython-framed messages. The parent sends
//! the bootstrap, then the bytes its side of each bridged descriptor reads
//! and the signals it sends; the agent answers with the process's pid, the
//! bytes the process writes on each channel and on its standard output,
//! and its exit code.
//!
//! A channel is one descriptor of the process's arguments (a
//! `Connection`'s, or a `spawn` result pipe): the parent keeps the
//! original, the process gets one end of a socket pair on its host, and a
//! pump on each side moves the bytes. More channels are added while the
//! link runs, one per connection the process makes to a forwarded address
//! (see [`tunnel`](crate::rt::tunnel)): the agent announces it
//! ([`Up::Open`]), the parent connects and answers.

use std::collections::HashMap;
use std::os::fd::{AsFd, OwnedFd};
use std::sync::{Arc, Mutex, mpsc};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::mutex::lock;
use crate::rt::child::Bootstrap;
use crate::rt::dial::WireAddress;
use crate::sys;
use crate::wire::{frame, payload};

/// The largest first message (the bootstrap, the arguments inside): 1 GiB.
pub(crate) const MAX_BOOT: u64 = 1 << 30;
/// The largest message after it (a chunk of a channel's bytes, 64 KiB, and
/// its envelope).
pub(crate) const MAX_MESSAGE: u64 = 1 << 17;
/// How much of a channel one read takes.
pub(crate) const CHUNK: usize = 1 << 16;

/// From the parent to the agent.
#[derive(Serialize, Deserialize)]
pub(crate) enum Down {
    /// The first message: the process's bootstrap (its descriptors are the
    /// channels: the result pipe if it has one, then its arguments'), and
    /// the parent's build (which the agent's must be).
    Boot {
        boot: Box<Bootstrap>,
        build: Vec<u8>,
        /// The launcher's forwarded addresses: a connection the process
        /// makes to one of them travels over this link (see
        /// [`Up::Open`]).
        forward: Vec<WireAddress>,
        /// The silence after which the link counts as lost (zero: never);
        /// each side sends [`Down::Ping`] / [`Up::Ping`] every quarter of
        /// it.
        keepalive: Duration,
    },
    /// Bytes the parent's side of channel `ch` read.
    Data { ch: u32, bytes: Vec<u8> },
    /// The parent's side of channel `ch` reached end of file.
    Eof { ch: u32 },
    /// Send this signal to the process.
    Signal(i32),
    /// The parent connected channel `ch` (asked by [`Up::Open`]): the
    /// bytes of the connection follow as `Data`.
    Opened { ch: u32 },
    /// The parent could not connect channel `ch`: why.
    OpenFailed { ch: u32, reason: String },
    /// The parent is there (a keep-alive).
    Ping,
}

/// From the agent to the parent.
#[derive(Serialize, Deserialize)]
pub(crate) enum Up {
    /// The process runs, with this pid on its host.
    Started { pid: u32 },
    /// The agent cannot run the process (not the same build, a bad
    /// bootstrap): why.
    Refused(String),
    /// Bytes the process wrote on channel `ch`.
    Data { ch: u32, bytes: Vec<u8> },
    /// The process's side of channel `ch` closed.
    Eof { ch: u32 },
    /// Bytes the process wrote on its standard output.
    Stdout(Vec<u8>),
    /// The process ended with this exit code (`-N`: signal `N`).
    Exited(i32),
    /// The process connects to forwarded address number `address` (an
    /// index in the launcher's list, never an address of the far side's
    /// choosing): the parent connects to it and bridges it as the new
    /// channel `ch`, answering [`Down::Opened`] or [`Down::OpenFailed`].
    Open { ch: u32, address: u32 },
    /// The agent is there (a keep-alive).
    Ping,
}

/// How often a side sends its keep-alive, for a link lost after `silence`.
pub(crate) fn ping_every(silence: Duration) -> Duration {
    silence / 4
}

/// The shortest keep-alive bound: below it, a loaded machine's scheduling
/// alone would look like a partition.
pub(crate) const MIN_KEEPALIVE: Duration = Duration::from_millis(100);

/// The thread that sends one side's keep-alives until it is dropped (or
/// the link fails).
pub(crate) struct Pinger {
    /// Its closing wakes the thread, which then ends.
    stop: Option<OwnedFd>,
    /// Told when the thread has ended (its copy of the link with it).
    done: Option<mpsc::Receiver<()>>,
}

/// How long dropping a [`Pinger`] waits for its thread: it ends at once
/// unless a full link holds up its write, and is then left to end with
/// the link.
const PINGER_END: Duration = Duration::from_secs(1);

impl Pinger {
    /// Sends `ping` on `link` every [`ping_every`]`(silence)`; none when
    /// `silence` is zero.
    pub(crate) fn start<T: Serialize>(
        link: &Writer,
        ping: &T,
        silence: Duration,
    ) -> Result<Pinger> {
        let every = ping_every(silence);
        if every.is_zero() {
            return Ok(Pinger {
                stop: None,
                done: None,
            });
        }
        let mut framed = Vec::new();
        frame::append(ping, &mut framed)?;
        let (stop_r, stop_w) = sys::fd::pipe().map_err(|e| Error::os("pipe", e))?;
        let (done_tx, done) = mpsc::channel();
        let link = link.clone();
        std::thread::Builder::new()
            .name("mp-link-ping".into())
            .spawn(move || {
                // Readable: dropped (the write end closed) or told to stop.
                while let Ok(false) = sys::fd::readable(stop_r.as_fd(), Some(every)) {
                    if link.send_framed(&framed).is_err() {
                        break;
                    }
                }
                drop((link, stop_r));
                let _ = done_tx.send(());
            })
            .map_err(|e| Error::os("start a link thread", e))?;
        Ok(Pinger {
            stop: Some(stop_w),
            done: Some(done),
        })
    }
}

impl Drop for Pinger {
    /// Stops the thread and waits (a little) for it to end, so that its
    /// copy of the link is closed when the link's owner closes its own.
    fn drop(&mut self) {
        drop(self.stop.take());
        if let Some(done) = self.done.take() {
            let _ = done.recv_timeout(PINGER_END);
        }
    }
}

/// The reading half of a link: whole messages from a byte stream.
pub(crate) struct Reader {
    fd: OwnedFd,
    buf: Vec<u8>,
}

impl Reader {
    pub(crate) fn new(fd: OwnedFd) -> Reader {
        Reader {
            fd,
            buf: Vec::new(),
        }
    }

    /// The descriptor read, for what is left on it.
    pub(crate) fn into_fd(self) -> OwnedFd {
        self.fd
    }

    /// The next message, at most `max` bytes long; `Ok(None)` at end of
    /// file between messages, [`Error::Timeout`] past `deadline`. A frame
    /// cut short, over `max` or that does not decode is an error (the link
    /// is then unusable).
    pub(crate) fn next<T: serde::de::DeserializeOwned>(
        &mut self,
        max: u64,
        deadline: Option<Instant>,
    ) -> Result<Option<T>> {
        self.next_until(max, deadline, None)
    }

    /// As [`next`](Self::next), [`Error::Timeout`] when no byte has come
    /// for `silence` (zero: never): a message that arrives slowly but
    /// steadily (a large frame on a slow link) is not a silence.
    pub(crate) fn next_or_silent<T: serde::de::DeserializeOwned>(
        &mut self,
        max: u64,
        silence: Duration,
    ) -> Result<Option<T>> {
        let quiet = (!silence.is_zero()).then_some(silence);
        self.next_until(max, quiet.and_then(crate::spin::deadline_after), quiet)
    }

    /// The next message by `deadline`, which each read that brings bytes
    /// moves to `silence` from then, when given.
    fn next_until<T: serde::de::DeserializeOwned>(
        &mut self,
        max: u64,
        mut deadline: Option<Instant>,
        silence: Option<Duration>,
    ) -> Result<Option<T>> {
        loop {
            if let Some((head, len)) = frame::parse_header(&self.buf, max)? {
                // `len <= max`, which fits in memory (checked by parse_header).
                let end = head + len as usize;
                if self.buf.len() >= end {
                    let value = payload::decode(&self.buf[head..end]);
                    self.buf.drain(..end);
                    return value.map(Some);
                }
                let want = end - self.buf.len();
                self.buf.reserve(want.min(CHUNK * 4));
            } else {
                self.buf.reserve(16);
            }
            if let Some(deadline) = deadline {
                let left = deadline.saturating_duration_since(Instant::now());
                if !sys::fd::readable(self.fd.as_fd(), Some(left))
                    .map_err(|e| Error::os("wait for the link", e))?
                {
                    return Err(Error::Timeout);
                }
            }
            let room = self.buf.capacity() - self.buf.len();
            let n = sys::fd::read_append(self.fd.as_fd(), &mut self.buf, room)
                .map_err(|e| Error::os("read the link", e))?;
            if n == 0 {
                if self.buf.is_empty() {
                    return Ok(None);
                }
                return Err(Error::TruncatedFrame {
                    expected: frame::parse_header(&self.buf, max)?.map_or(4, |(h, l)| h as u64 + l),
                    got: self.buf.len() as u64,
                });
            }
            if let Some(silence) = silence {
                deadline = crate::spin::deadline_after(silence);
            }
        }
    }
}

/// The writing half of a link, shared by the threads that write on it.
#[derive(Clone)]
pub(crate) struct Writer(Arc<Mutex<OwnedFd>>);

impl Writer {
    pub(crate) fn new(fd: OwnedFd) -> Writer {
        Writer(Arc::new(Mutex::new(fd)))
    }

    /// Sends one message, whole.
    pub(crate) fn send<T: Serialize>(&self, message: &T) -> Result<()> {
        let mut bytes = Vec::new();
        frame::append(message, &mut bytes)?;
        self.send_framed(&bytes)
    }

    /// Sends one message already framed ([`framed`]), whole.
    fn send_framed(&self, framed: &[u8]) -> Result<()> {
        let fd = lock(&self.0);
        sys::fd::write_all(fd.as_fd(), framed, false).map_err(|e| Error::os("write the link", e))
    }

    /// As [`send`](Self::send), giving up (`None`) when the link does not
    /// take the message within `patience`: another thread holds it, blocked
    /// on a full link (the far side is not reading it). A message given up
    /// on may be cut: the caller then ends the link.
    pub(crate) fn send_within<T: Serialize>(
        &self,
        message: &T,
        patience: Duration,
    ) -> Option<Result<()>> {
        let mut bytes = Vec::new();
        if let Err(e) = frame::append(message, &mut bytes) {
            return Some(Err(e));
        }
        let deadline = crate::spin::deadline_after(patience);
        let past = || deadline.is_some_and(|d| Instant::now() >= d);
        // The pump holds the link only while it writes a frame: a holder
        // that keeps it is blocked on a full link (std's Mutex has no timed
        // lock, hence the polling, on this rare path only).
        let fd = loop {
            match self.0.try_lock() {
                Ok(fd) => break fd,
                Err(std::sync::TryLockError::Poisoned(p)) => break p.into_inner(),
                Err(std::sync::TryLockError::WouldBlock) if past() => return None,
                Err(std::sync::TryLockError::WouldBlock) => {
                    std::thread::sleep(Duration::from_millis(1));
                }
            }
        };
        let mut rest = &bytes[..];
        while !rest.is_empty() {
            let left = deadline.map(|d| d.saturating_duration_since(Instant::now()));
            match sys::fd::wait_ready(&[], &[fd.as_fd()], left) {
                Ok(ready) if !ready[0] => return None,
                Ok(_) => {}
                Err(e) => return Some(Err(Error::os("wait for the link", e))),
            }
            match sys::fd::write_nonblocking(fd.as_fd(), rest, false) {
                Ok(n) => rest = &rest[n..],
                Err(e) => return Some(Err(Error::os("write the link", e))),
            }
        }
        Some(Ok(()))
    }
}

/// Channels handed to a running [`pump_out`]: the sending half
/// ([`Adder`]) wakes the pump through a pipe.
pub(crate) struct Added {
    rx: mpsc::Receiver<(u32, Arc<OwnedFd>)>,
    wake: OwnedFd,
}

/// Adds channels to a running [`pump_out`] (a connection opened through a
/// forwarded address).
#[derive(Clone)]
pub(crate) struct Adder {
    tx: mpsc::Sender<(u32, Arc<OwnedFd>)>,
    wake: Arc<OwnedFd>,
}

impl Adder {
    /// A new adder and the pump's half.
    pub(crate) fn new() -> Result<(Adder, Added)> {
        let (r, w) = sys::fd::pipe().map_err(|e| Error::os("pipe", e))?;
        let (tx, rx) = mpsc::channel();
        Ok((
            Adder {
                tx,
                wake: Arc::new(w),
            },
            Added { rx, wake: r },
        ))
    }

    /// Hands channel `ch` to the pump; `false` if it has ended.
    pub(crate) fn add(&self, ch: u32, fd: Arc<OwnedFd>) -> bool {
        if self.tx.send((ch, fd)).is_err() {
            return false;
        }
        // A full pipe already wakes the pump.
        let _ = sys::fd::write_nonblocking(self.wake.as_fd(), b"+", false);
        true
    }
}

/// The pump of one side: reads every open channel (and, on the agent's
/// side, the process's standard output) and sends what it reads as
/// messages made by `wrap`, until every channel is at end of file (and,
/// with `added`, no more can come) or `stop` is readable. `finish` then
/// drains what is already there (the process has ended: its bytes are all
/// in the buffers) and returns.
pub(crate) fn pump_out(
    channels: Vec<(u32, Arc<OwnedFd>)>,
    stop: OwnedFd,
    mut added: Option<Added>,
    link: &Writer,
    wrap: impl Fn(u32, Option<Vec<u8>>) -> Option<Vec<u8>>,
) {
    let mut open = channels;
    let mut stopping = false;
    let mut chunk = vec![0u8; CHUNK];
    while !open.is_empty() || (added.is_some() && !stopping) {
        let waking = usize::from(added.is_some());
        let ready = if stopping {
            vec![true; open.len() + 1 + waking]
        } else {
            let mut fds = vec![stop.as_fd()];
            fds.extend(added.as_ref().map(|a| a.wake.as_fd()));
            fds.extend(open.iter().map(|(_, fd)| fd.as_fd()));
            match sys::fd::wait_readable(&fds, None) {
                Ok(r) => r,
                Err(_) => return,
            }
        };
        if ready[0] && !stopping {
            stopping = true;
            continue;
        }
        if let Some(a) = &added
            && ready[1]
        {
            // While stopping, the channels already handed over are drained
            // with the others; none comes after.
            let gone = stopping
                || !matches!(
                    sys::fd::read_nonblocking(a.wake.as_fd(), &mut chunk),
                    Ok(Some(1..)) | Ok(None)
                );
            open.extend(a.rx.try_iter());
            if gone {
                added = None;
            }
            continue;
        }
        let mut still = Vec::with_capacity(open.len());
        for ((ch, fd), ready) in open.into_iter().zip(ready.into_iter().skip(1 + waking)) {
            if !ready {
                still.push((ch, fd));
                continue;
            }
            let read = if stopping {
                sys::fd::read_nonblocking(fd.as_fd(), &mut chunk)
            } else {
                sys::fd::read(fd.as_fd(), &mut chunk).map(Some)
            };
            match read {
                Ok(Some(n)) if n > 0 => {
                    if let Some(message) = wrap(ch, Some(chunk[..n].to_vec()))
                        && link.send_framed(&message).is_err()
                    {
                        return;
                    }
                    still.push((ch, fd));
                }
                // Nothing more there now, while stopping: done with it.
                Ok(None) => {}
                _ => {
                    if let Some(message) = wrap(ch, None)
                        && link.send_framed(&message).is_err()
                    {
                        return;
                    }
                }
            }
        }
        open = still;
    }
}

/// The frame of `message`, for [`pump_out`]'s `wrap`.
pub(crate) fn framed<T: Serialize>(message: &T) -> Option<Vec<u8>> {
    let mut bytes = Vec::new();
    frame::append(message, &mut bytes).ok()?;
    Some(bytes)
}

/// The local descriptors that channels' bytes from the far side are
/// written to, shared by the threads that read the link and those that
/// open channels.
///
/// Each channel's bytes are written by a thread of its own (started with
/// its first bytes), from a queue: a reader that does not read one channel
/// (its socket buffer full) holds up only that channel, never the link's
/// other channels (a forwarded manager connection waiting for its reply
/// while a large message waits on a pipe, say).
#[derive(Clone, Default)]
pub(crate) struct Channels(Arc<Mutex<ChannelMap>>);

#[derive(Default)]
struct ChannelMap {
    sinks: HashMap<u32, Sink>,
    /// The writer threads that may still run.
    writers: Vec<std::thread::JoinHandle<()>>,
    /// The link has ended: no channel is added any more.
    closed: bool,
}

/// Where a channel's bytes go: its descriptor, and the queue of its writer
/// thread once it has one.
struct Sink {
    fd: Arc<OwnedFd>,
    /// Whether `fd` is a socket (asked once: how it is written).
    socket: bool,
    queue: Option<Queue>,
}

impl Sink {
    fn new(fd: Arc<OwnedFd>) -> Sink {
        let socket = sys::fd::is_socket(fd.as_fd());
        Sink {
            fd,
            socket,
            queue: None,
        }
    }
}

/// A writer thread's queue: bytes, or `None`: end of file after them.
/// Bounded: a channel whose reader does not read holds at most
/// [`QUEUED`] messages (each at most [`MAX_MESSAGE`] bytes) here, then the
/// link waits for it, as a pipe makes its writer wait: memory stays
/// bounded, and a reader that is only slow holds up no other channel.
type Queue = mpsc::SyncSender<Option<Vec<u8>>>;

/// How many messages a channel's queue holds (8 MiB at most).
const QUEUED: usize = 64;

impl Channels {
    pub(crate) fn new(list: impl IntoIterator<Item = (u32, Arc<OwnedFd>)>) -> Channels {
        let channels = Channels::default();
        lock(&channels.0)
            .sinks
            .extend(list.into_iter().map(|(ch, fd)| (ch, Sink::new(fd))));
        channels
    }

    /// Adds channel `ch`; `false` if the link has ended or `ch` is taken.
    pub(crate) fn insert(&self, ch: u32, fd: Arc<OwnedFd>) -> bool {
        let mut map = lock(&self.0);
        if map.closed || map.sinks.contains_key(&ch) {
            return false;
        }
        map.sinks.insert(ch, Sink::new(fd));
        true
    }

    /// Whether channel `ch` is in use.
    pub(crate) fn contains(&self, ch: u32) -> bool {
        lock(&self.0).sinks.contains_key(&ch)
    }

    /// Channel `ch`'s descriptor.
    pub(crate) fn get(&self, ch: u32) -> Option<Arc<OwnedFd>> {
        lock(&self.0).sinks.get(&ch).map(|s| s.fd.clone())
    }

    /// Forgets channel `ch` (what is queued for it is still written): its
    /// descriptor.
    pub(crate) fn remove(&self, ch: u32) -> Option<Arc<OwnedFd>> {
        lock(&self.0).sinks.remove(&ch).map(|s| s.fd)
    }

    /// The link has ended: every descriptor is let go once what is queued
    /// for it is written (its readers see end of file once the pumps let
    /// theirs go too), and none is added. Returns when every writer
    /// thread has written its queue and ended, as a write on the link's
    /// thread would have.
    pub(crate) fn close_all(&self) {
        let writers = {
            let mut map = lock(&self.0);
            map.closed = true;
            map.sinks.clear();
            std::mem::take(&mut map.writers)
        };
        for writer in writers {
            let _ = writer.join();
        }
    }

    /// Queues bytes that arrived for channel `ch`, for its local
    /// descriptor; a descriptor whose reader has gone is forgotten.
    pub(crate) fn deliver(&self, ch: u32, bytes: Vec<u8>) {
        // Until a channel needs its writer thread, its bytes go straight to
        // its descriptor when it takes them without waiting (the common
        // case: a reader that keeps up), saving two thread hand-offs per
        // message; what it does not take goes to the thread, which from
        // then on writes everything, in order.
        let direct = {
            let map = lock(&self.0);
            match map.sinks.get(&ch) {
                Some(sink) if sink.queue.is_none() => Some((sink.fd.clone(), sink.socket)),
                Some(_) => None,
                None => return,
            }
        };
        let bytes = match direct {
            Some((fd, socket)) => {
                let mut at = 0;
                while at < bytes.len() {
                    match sys::fd::write_nonblocking(fd.as_fd(), &bytes[at..], socket) {
                        Ok(0) => break,
                        Ok(n) => at += n,
                        Err(_) => {
                            // The reader has gone.
                            lock(&self.0).sinks.remove(&ch);
                            return;
                        }
                    }
                }
                if at == bytes.len() {
                    return;
                }
                bytes[at..].to_vec()
            }
            None => bytes,
        };
        let queue = {
            let mut map = lock(&self.0);
            let Some(sink) = map.sinks.get_mut(&ch) else {
                return;
            };
            match &sink.queue {
                Some(queue) => queue.clone(),
                None => match start_writer(ch, sink.fd.clone(), sink.socket) {
                    Some((queue, writer)) => {
                        let queue = sink.queue.insert(queue).clone();
                        map.writers.retain(|w| !w.is_finished());
                        map.writers.push(writer);
                        queue
                    }
                    None => {
                        map.sinks.remove(&ch);
                        return;
                    }
                },
            }
        };
        // Outside the map's lock: a full queue (its reader is slow) holds
        // up the link here, as a write would, and nothing else.
        if queue.send(Some(bytes)).is_err() {
            // Its writer stopped: the reader has gone.
            lock(&self.0).sinks.remove(&ch);
        }
    }

    /// The far side closed channel `ch`: its readers here see end of file
    /// once what is queued is written (a socket's write side is shut down;
    /// any other descriptor is closed).
    pub(crate) fn close(&self, ch: u32) {
        let Some(sink) = lock(&self.0).sinks.remove(&ch) else {
            return;
        };
        match sink.queue {
            Some(queue) => {
                let _ = queue.send(None);
            }
            None => end_of_file(&sink.fd),
        }
    }
}

/// The writer thread of channel `ch` and its queue, or `None` if no
/// thread can start.
fn start_writer(
    ch: u32,
    fd: Arc<OwnedFd>,
    socket: bool,
) -> Option<(Queue, std::thread::JoinHandle<()>)> {
    let (tx, rx) = mpsc::sync_channel::<Option<Vec<u8>>>(QUEUED);
    std::thread::Builder::new()
        .name(format!("mp-link-ch{ch}"))
        .spawn(move || {
            while let Ok(next) = rx.recv() {
                match next {
                    Some(bytes) => {
                        if sys::fd::write_all(fd.as_fd(), &bytes, socket).is_err() {
                            return;
                        }
                    }
                    None => {
                        end_of_file(&fd);
                        return;
                    }
                }
            }
        })
        .ok()
        .map(|writer| (tx, writer))
}

/// End of file for the readers of `fd` (a socket: its write side shut
/// down; anything else: when the last clone is dropped).
fn end_of_file(fd: &OwnedFd) {
    if sys::fd::is_socket(fd.as_fd()) {
        sys::fd::shutdown_write(fd.as_fd());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn data_or_eof(reader: &mut Reader) -> (u32, Option<Vec<u8>>) {
        match reader.next::<Up>(MAX_MESSAGE, None) {
            Ok(Some(Up::Data { ch, bytes })) => (ch, Some(bytes)),
            Ok(Some(Up::Eof { ch })) => (ch, None),
            _ => panic!("not a channel's message"),
        }
    }

    /// A keep-alive is a frame of a few bytes each way (the cost the
    /// launcher's docs state), and a pinger sends them until it is dropped.
    #[test]
    fn keepalives_are_small_and_stop_with_their_pinger() {
        let down = framed(&Down::Ping).unwrap();
        let up = framed(&Up::Ping).unwrap();
        assert!(down.len() <= 10 && up.len() <= 10, "{down:?} {up:?}");
        let (r, w) = sys::fd::socket_pair(false).unwrap();
        let link = Writer::new(w);
        let pinger = Pinger::start(&link, &Up::Ping, Duration::from_millis(40)).unwrap();
        let mut reader = Reader::new(r);
        for _ in 0..3 {
            assert!(matches!(
                reader.next::<Up>(MAX_MESSAGE, None),
                Ok(Some(Up::Ping))
            ));
        }
        drop(pinger);
        drop(link);
        // The pinger's thread ends with its stop: its copy of the writer
        // goes, and the reader sees the end of the link after the pings
        // already sent.
        while let Ok(Some(Up::Ping)) = reader.next::<Up>(MAX_MESSAGE, None) {}
        assert!(
            Pinger::start(
                &Writer::new(sys::fd::pipe().unwrap().1),
                &Up::Ping,
                Duration::ZERO
            )
            .is_ok()
        );
    }

    /// A frame that arrives slowly but steadily is no silence, though it
    /// takes longer than the bound; nothing at all is.
    #[test]
    fn silence_is_the_time_between_bytes_not_the_time_of_a_message() {
        let (r, w) = sys::fd::socket_pair(false).unwrap();
        let frame = framed(&Up::Data {
            ch: 1,
            bytes: vec![7; 30],
        })
        .unwrap();
        let writer = std::thread::spawn(move || {
            for byte in frame {
                sys::fd::write_all(w.as_fd(), &[byte], false).unwrap();
                std::thread::sleep(Duration::from_millis(100));
            }
            w
        });
        let mut reader = Reader::new(r);
        let slow = reader.next_or_silent::<Up>(MAX_MESSAGE, Duration::from_secs(2));
        assert!(matches!(slow, Ok(Some(Up::Data { ch: 1, .. }))));
        let _quiet_writer = writer.join().unwrap();
        let silent = reader.next_or_silent::<Up>(MAX_MESSAGE, Duration::from_millis(200));
        assert!(matches!(silent, Err(Error::Timeout)));
    }

    /// A pump that starts with no channel goes on for the ones added
    /// later, each read to its end of file, and stops when told.
    #[test]
    fn channels_added_to_a_running_pump_are_pumped() {
        let (link_r, link_w) = sys::fd::pipe().unwrap();
        let (stop_r, stop_w) = sys::fd::pipe().unwrap();
        let (adder, added) = Adder::new().unwrap();
        let writer = Writer::new(link_w);
        let pump = std::thread::spawn(move || {
            pump_out(Vec::new(), stop_r, Some(added), &writer, |ch, bytes| {
                framed(&match bytes {
                    Some(bytes) => Up::Data { ch, bytes },
                    None => Up::Eof { ch },
                })
            });
        });
        let mut reader = Reader::new(link_r);
        for ch in [7u32, 8] {
            let (ours, theirs) = sys::fd::socket_pair(false).unwrap();
            assert!(adder.add(ch, Arc::new(ours)));
            sys::fd::write_all(theirs.as_fd(), b"hello", true).unwrap();
            assert_eq!(data_or_eof(&mut reader), (ch, Some(b"hello".to_vec())));
            drop(theirs);
            assert_eq!(data_or_eof(&mut reader), (ch, None));
        }
        sys::fd::write(stop_w.as_fd(), b"x", false).unwrap();
        pump.join().unwrap();
        // The pump has ended: nothing more is taken.
        let (ours, _theirs) = sys::fd::socket_pair(false).unwrap();
        assert!(!adder.add(9, Arc::new(ours)));
        assert!(matches!(reader.next::<Up>(MAX_MESSAGE, None), Ok(None)));
    }

    #[test]
    fn no_channel_is_added_once_the_link_has_ended() {
        let (a, _b) = sys::fd::socket_pair(false).unwrap();
        let a = Arc::new(a);
        let channels = Channels::new([(0, a.clone())]);
        assert!(!channels.insert(0, a.clone()), "channel 0 is taken");
        assert!(channels.insert(1, a.clone()));
        channels.close(1);
        assert!(!channels.contains(1));
        channels.close_all();
        assert!(!channels.contains(0));
        assert!(!channels.insert(2, a));
    }
}
