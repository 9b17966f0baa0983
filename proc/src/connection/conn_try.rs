//! Receiving without waiting: [`Connection::try_recv`] and
//! [`Connection::try_recv_bytes`], over the same buffer, frame parser and
//! descriptor intake as `recv`.

use std::sync::TryLockError;

use super::*;

impl Connection {
    /// Receives one message if a whole one is here now, and decodes it as
    /// `T`; `Ok(None)` if not. Never waits.
    ///
    /// A message counts as here when it is already in this end's buffer or
    /// when what the descriptor holds now completes it. Part of a message
    /// (a peer that sent half a frame and stalls) stays buffered for the next
    /// call, which goes on from there: nothing is lost and nothing spins.
    /// The errors are [`recv`](Self::recv)'s: [`Error::Eof`] once the peer
    /// has closed and every message was received, [`Error::TruncatedFrame`]
    /// if it closed inside one, [`Error::FrameTooLong`] and
    /// [`Error::NegativeFrameLength`] for a bad header, [`Error::Decode`] for
    /// bytes that are not a `T`. Handles in the message take their
    /// descriptors along, as with `recv`.
    ///
    /// For an event loop that waits on the descriptor ([`AsFd`]) and then
    /// receives: call `try_recv` until it gives `None` **before** each wait.
    /// One read can bring several messages into the buffer, and those never
    /// make the descriptor readable again (see `examples/tokio_connection.rs`).
    ///
    /// While another thread receives on this connection (a clone of it, in
    /// `recv`), `try_recv` gives `None` rather than wait for it: what is here
    /// is that thread's. Never waiting assumes this process is the only one
    /// reading the descriptor: a reader elsewhere could take the bytes
    /// between the check that they are there and the read (as with
    /// [`poll`](Self::poll) then [`recv`](Self::recv)).
    ///
    /// ```
    /// let (a, b) = mp_proc::pipe(true)?;
    /// assert_eq!(b.try_recv::<u32>()?, None); // nothing sent: no wait
    /// a.send(&1u32)?;
    /// a.send(&2u32)?;
    /// assert_eq!(b.try_recv::<u32>()?, Some(1));
    /// assert_eq!(b.try_recv::<u32>()?, Some(2));
    /// assert_eq!(b.try_recv::<u32>()?, None);
    /// drop(a);
    /// assert!(matches!(b.try_recv::<u32>(), Err(mp_proc::Error::Eof)));
    /// # Ok::<(), mp_proc::Error>(())
    /// ```
    pub fn try_recv<T: DeserializeOwned>(&self) -> Result<Option<T>> {
        let Some(mut reader) = self.try_reader()? else {
            return Ok(None);
        };
        let r = &mut *reader;
        let Some((from, len)) = self.try_frame(r)? else {
            return Ok(None);
        };
        let at = r.start;
        r.start += len;
        let fds = r.intake.claim(from, r.consumed());
        let value = decode_message(&r.buf[at..at + len], fds);
        shrink(r);
        value.map(Some)
    }

    /// Receives one message as bytes if a whole one is here now; `Ok(None)`
    /// if not. Never waits; see [`try_recv`](Self::try_recv).
    ///
    /// ```
    /// let (a, b) = mp_proc::pipe(false)?;
    /// assert_eq!(a.try_recv_bytes()?, None);
    /// b.send_bytes(b"hello")?;
    /// assert_eq!(a.try_recv_bytes()?.as_deref(), Some(&b"hello"[..]));
    /// # Ok::<(), mp_proc::Error>(())
    /// ```
    pub fn try_recv_bytes(&self) -> Result<Option<Vec<u8>>> {
        let Some(mut reader) = self.try_reader()? else {
            return Ok(None);
        };
        let r = &mut *reader;
        let Some((from, len)) = self.try_frame(r)? else {
            return Ok(None);
        };
        let bytes = r.buf[r.start..r.start + len].to_vec();
        r.start += len;
        // Bytes claim no descriptors: any that came are closed.
        drop(r.intake.claim(from, r.consumed()));
        shrink(r);
        Ok(Some(bytes))
    }

    /// The reader, or `None` while another thread holds it (receiving).
    fn try_reader(&self) -> Result<Option<MutexGuard<'_, Reader>>> {
        if !self.inner.readable {
            return Err(Error::WriteOnly);
        }
        match self.inner.reader.try_lock() {
            Ok(r) => Self::prepared(r).map(Some),
            Err(TryLockError::Poisoned(p)) => Self::prepared(p.into_inner()).map(Some),
            Err(TryLockError::WouldBlock) => Ok(None),
        }
    }

    /// Makes the next frame whole in the buffer with what the descriptor
    /// holds now, without waiting. Then consumes its header and returns the
    /// stream position where the frame began and the payload's length (the
    /// payload is `buf[start..start + len]`); `None` (nothing consumed)
    /// while it is not whole.
    fn try_frame(&self, r: &mut Reader) -> Result<Option<(u64, usize)>> {
        let fd = self.inner.fd.as_fd();
        loop {
            let buffered = r.end - r.start;
            let want = match crate::wire::frame::parse_header(
                &r.buf[r.start..r.end],
                self.max_frame_len(),
            ) {
                Err(e) => {
                    r.desync = true;
                    return Err(e);
                }
                Ok(Some((head, len))) => {
                    // `len` is at most `isize::MAX`: no overflow.
                    let whole = head + len as usize;
                    if buffered >= whole {
                        let from = r.consumed();
                        r.start += head;
                        return Ok(Some((from, len as usize)));
                    }
                    whole
                }
                Ok(None) if buffered < 4 => 4,
                Ok(None) => 12,
            };
            if !sys::fd::readable(fd, Some(Duration::ZERO)).os("recv")? {
                return Ok(None);
            }
            make_room(r, want);
            let end = r.end;
            let n = r.intake.read(fd, self.inner.unix, &mut r.buf[end..])?;
            if n == 0 {
                if buffered == 0 {
                    return Err(Error::Eof);
                }
                return Err(self.truncated(r, want, buffered));
            }
            r.end += n;
        }
    }
}

/// Makes room after the buffered bytes for the frame of `want` bytes that
/// starts at `r.start`: moves them to the front, and grows the buffer only
/// when they fill it, by doubling (up to `want`). So its memory grows with
/// the bytes that arrive, never with a length a header claims.
fn make_room(r: &mut Reader, want: usize) {
    if r.start == r.end {
        r.start = 0;
        r.end = 0;
    } else if r.end == r.buf.len() && r.start > 0 {
        let (start, end) = (r.start, r.end);
        r.buf.copy_within(start..end, 0);
        r.start = 0;
        r.end = end - start;
    }
    if r.end == r.buf.len() && want > r.buf.len() {
        let size = want.min(r.buf.len().saturating_mul(2)).max(READ_BUF);
        let mut buf = Vec::with_capacity(size);
        buf.extend_from_slice(&r.buf[r.start..r.end]);
        buf.resize(size, 0);
        r.end -= r.start;
        r.start = 0;
        r.buf = buf.into_boxed_slice();
    }
}

/// Gives a buffer grown for a large frame back to its usual size once what
/// is left of it fits.
fn shrink(r: &mut Reader) {
    let left = r.end - r.start;
    if r.buf.len() > READ_BUF && left <= READ_BUF {
        let mut buf = vec![0; READ_BUF].into_boxed_slice();
        buf[..left].copy_from_slice(&r.buf[r.start..r.end]);
        r.buf = buf;
        r.start = 0;
        r.end = left;
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use super::*;

    fn raw(conn: &Connection) -> std::fs::File {
        std::fs::File::from(conn.as_fd().try_clone_to_owned().unwrap())
    }

    /// A frame larger than the buffer, sent in pieces, grows the buffer only
    /// as its bytes arrive, comes out whole, and the buffer shrinks back.
    #[test]
    fn a_large_frame_in_pieces_grows_the_buffer_with_its_bytes() {
        let (a, b) = pipe(true).unwrap();
        let payload: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
        let mut frame = Vec::new();
        let (h, n) = frame::header(payload.len());
        frame.extend_from_slice(&h[..n]);
        frame.extend_from_slice(&payload);
        let mut w = raw(&a);
        for piece in frame.chunks(50_000) {
            assert_eq!(b.try_recv_bytes().unwrap(), None);
            w.write_all(piece).unwrap();
            let held = lock(&b.inner.reader).buf.len();
            assert!(held < frame.len() * 2, "buffer {held} for {}", frame.len());
        }
        assert_eq!(b.try_recv_bytes().unwrap(), Some(payload));
        assert_eq!(lock(&b.inner.reader).buf.len(), READ_BUF);
        assert_eq!(b.try_recv_bytes().unwrap(), None);
    }

    /// While another thread receives (holds the reader), `try_recv` does not
    /// wait for it: `None`, and the message is there once it is done.
    #[test]
    fn a_receiving_thread_makes_try_recv_none_not_a_wait() {
        let (a, b) = pipe(true).unwrap();
        a.send(&1u32).unwrap();
        let held = lock(&b.inner.reader);
        assert_eq!(b.try_recv::<u32>().unwrap(), None);
        assert_eq!(b.try_recv_bytes().unwrap(), None);
        drop(held);
        assert_eq!(b.try_recv::<u32>().unwrap(), Some(1));
        let (reader, writer) = pipe(false).unwrap();
        assert!(matches!(writer.try_recv::<u32>(), Err(Error::WriteOnly)));
        drop(reader);
    }

    /// A header that claims more than the limit is the error `recv` gives,
    /// before any of its payload arrives.
    #[test]
    fn a_lying_header_is_frame_too_long_at_once() {
        let (a, b) = pipe(true).unwrap();
        b.set_max_frame_len(1024);
        raw(&a).write_all(&(-2i32).to_be_bytes()[..]).unwrap();
        assert!(matches!(
            b.try_recv_bytes(),
            Err(Error::NegativeFrameLength { len: -2 })
        ));
        let (a, b) = pipe(true).unwrap();
        b.set_max_frame_len(1024);
        raw(&a).write_all(&4096u32.to_be_bytes()[..]).unwrap();
        assert!(matches!(
            b.try_recv::<u8>(),
            Err(Error::FrameTooLong {
                len: 4096,
                max: 1024
            })
        ));
        assert!(matches!(b.try_recv::<u8>(), Err(Error::Desynchronized)));
    }
}
