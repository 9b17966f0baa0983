//! What a connection reads from the OS: bytes, and on a Unix socket the
//! descriptors that come with them, each matched to the message it came
//! with.
//!
//! A sender attaches a message's descriptors to the message's first bytes
//! (one `sendmsg` per message). The kernel never lets one read run past the
//! bytes that carried descriptors: a read that brings descriptors ends
//! inside the message they came with. So a batch of descriptors belongs to
//! the message that holds the last byte of the read that brought it, and a
//! message claims exactly the batches whose reads ended within it. Batches
//! that no message claims (a peer that attached descriptors to a message
//! that names none, or that `recv_bytes` read) are closed as soon as their
//! message is consumed; none is ever handed to another message.

use std::collections::VecDeque;
use std::os::fd::{BorrowedFd, OwnedFd};

use crate::error::{OsContext, Result};
use crate::sys;

/// The most batches that wait at once. A sender attaches all of a message's
/// descriptors to one write, so a message brings at most one batch; and a
/// read runs past the message being received only to end it, so at most two
/// wait: that message's, and the next one's. More is a hostile peer, whose
/// extra batches are closed on arrival (bounding the descriptors held to two
/// messages' worth, `2 * MAX_FDS`).
const MAX_BATCHES: usize = 2;

/// Bytes and descriptors read from one descriptor so far.
#[derive(Default)]
pub(super) struct Intake {
    /// How many bytes were read (the stream position after the last read).
    pub(super) pos: u64,
    /// Descriptors no message has claimed yet, in stream order.
    batches: VecDeque<Batch>,
    /// `recvmsg`'s control space (made by the first read of a socket).
    space: Option<Box<[u64]>>,
}

/// The descriptors one read brought.
struct Batch {
    /// The stream position after that read.
    end: u64,
    fds: Vec<OwnedFd>,
    /// Some descriptors of that read were lost (`MSG_CTRUNC`).
    lost: bool,
}

/// The descriptors that came with one message.
#[derive(Default)]
pub(super) struct Claimed {
    pub(super) fds: Vec<OwnedFd>,
    /// Some were lost on the way in (this process had no room for them).
    pub(super) lost: bool,
}

impl Claimed {
    pub(super) fn is_empty(&self) -> bool {
        self.fds.is_empty() && !self.lost
    }
}

impl Intake {
    /// Reads into `buf` from `fd`; `unix`: a Unix socket, read with
    /// `recvmsg` for the descriptors that come. `Ok(0)` is end of file.
    pub(super) fn read(&mut self, fd: BorrowedFd<'_>, unix: bool, buf: &mut [u8]) -> Result<usize> {
        if !unix {
            let n = sys::fd::read(fd, buf).os("recv")?;
            self.pos += n as u64;
            return Ok(n);
        }
        let space = self.space.get_or_insert_with(sys::scm::control_space);
        let got = sys::scm::recv_stream(fd, buf, space).os("recv")?;
        Ok(self.arrived(got))
    }

    /// As [`read`](Self::read), appending at most `max` bytes to the spare
    /// capacity of `out`.
    pub(super) fn read_append(
        &mut self,
        fd: BorrowedFd<'_>,
        unix: bool,
        out: &mut Vec<u8>,
        max: usize,
    ) -> Result<usize> {
        if !unix {
            let n = sys::fd::read_append(fd, out, max).os("recv")?;
            self.pos += n as u64;
            return Ok(n);
        }
        let space = self.space.get_or_insert_with(sys::scm::control_space);
        let got = sys::scm::recv_stream_append(fd, out, max, space).os("recv")?;
        Ok(self.arrived(got))
    }

    fn arrived(&mut self, got: sys::scm::Received) -> usize {
        self.pos += got.n as u64;
        if !got.fds.is_empty() || got.lost {
            if self.batches.len() >= MAX_BATCHES {
                // More batches than whole messages bring: a peer that spreads
                // descriptors over one message's bytes to fill this process's
                // table. These are closed now (as `got.fds` drops); the batch
                // before them is marked, so that its message learns of the loss.
                if let Some(last) = self.batches.back_mut() {
                    last.lost = true;
                }
                return got.n;
            }
            self.batches.push_back(Batch {
                end: self.pos,
                fds: got.fds,
                lost: got.lost,
            });
        }
        got.n
    }

    /// The batches not yet claimed by a message that ends at or before
    /// `from` (the first byte not consumed): for each, where its read ended,
    /// counted from `from`, its descriptors, and whether some were lost.
    /// What a connection sent elsewhere takes along with its buffered bytes.
    pub(super) fn pending(&self, from: u64) -> impl Iterator<Item = (u64, &[OwnedFd], bool)> {
        self.batches
            .iter()
            .filter(move |b| b.end > from)
            .map(move |b| (b.end - from, b.fds.as_slice(), b.lost))
    }

    /// The intake of a connection that arrives with `len` bytes buffered
    /// and these batches among them (as [`pending`](Self::pending) gave
    /// them; those that end past the bytes are closed).
    pub(super) fn restored(len: u64, batches: Vec<(u64, Vec<OwnedFd>, bool)>) -> Intake {
        Intake {
            pos: len,
            batches: batches
                .into_iter()
                .filter(|&(end, _, _)| end > 0 && end <= len)
                .take(MAX_BATCHES)
                .map(|(end, fds, lost)| Batch { end, fds, lost })
                .collect(),
            space: None,
        }
    }

    /// The descriptors of the message at stream positions `from..to`, now
    /// consumed: the batches whose reads ended within it. Earlier batches,
    /// which no message claimed, are closed.
    pub(super) fn claim(&mut self, from: u64, to: u64) -> Claimed {
        let mut claimed = Claimed::default();
        while let Some(batch) = self.batches.front() {
            if batch.end > to {
                break;
            }
            let batch = self.batches.pop_front().expect("a front batch");
            if batch.end > from {
                claimed.fds.extend(batch.fds);
                claimed.lost |= batch.lost;
            }
        }
        claimed
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn batch(end: u64, n: usize) -> Batch {
        Batch {
            end,
            fds: (0..n)
                .map(|_| sys::fd::dev_null(false).expect("/dev/null"))
                .collect(),
            lost: false,
        }
    }

    /// A batch goes to the message that holds the last byte of its read;
    /// batches of earlier messages that nobody claimed are dropped, later
    /// ones wait.
    #[test]
    fn a_batch_belongs_to_the_message_its_read_ended_in() {
        let mut intake = Intake::default();
        intake
            .batches
            .extend([batch(3, 1), batch(10, 2), batch(25, 3)]);
        // Message 4..10 holds byte 9: the read that ended at 10 is its.
        let c = intake.claim(4, 10);
        assert_eq!(c.fds.len(), 2);
        assert!(!c.lost);
        assert_eq!(intake.batches.len(), 1);
        // Message 10..20 has none (the batch ending at 25 is past it).
        assert!(intake.claim(10, 20).is_empty());
        assert_eq!(intake.claim(20, 30).fds.len(), 3);
        assert!(intake.batches.is_empty());
    }

    /// A peer that writes one message a byte at a time, each byte with a
    /// full batch of descriptors, cannot make this process hold more than
    /// two messages' worth of them (a sender of whole messages attaches all
    /// of a message's descriptors to one write): the rest are closed as they
    /// come, and the message learns that some were lost.
    #[test]
    fn a_peer_cannot_pile_up_descriptors_within_one_message() {
        use std::os::fd::{AsFd, AsRawFd};
        let (a, b) = sys::fd::socket_pair(false).expect("socketpair");
        let null = sys::fd::dev_null(false).expect("/dev/null");
        let batch = vec![null.as_raw_fd(); sys::scm::MAX_FDS];
        let mut intake = Intake::default();
        let mut buf = [0u8; 16];
        for _ in 0..20 {
            sys::scm::send_with_fds(a.as_fd(), &[0], &batch).expect("sendmsg");
            // The read stops at the bytes that brought descriptors: one byte.
            assert_eq!(intake.read(b.as_fd(), true, &mut buf).expect("recvmsg"), 1);
        }
        let held: usize = intake.batches.iter().map(|b| b.fds.len()).sum();
        assert!(
            held <= 2 * sys::scm::MAX_FDS && intake.batches.len() <= 2,
            "{held} descriptors held in {} batches",
            intake.batches.len()
        );
        let c = intake.claim(0, 20);
        assert!(c.lost, "the message is told that descriptors were dropped");
        assert!(intake.batches.is_empty());
    }
}
