//! The messages between the coordinator (rank 0) and the other copies,
//! each a frame of an authenticated [`Connection`](mp_proc::Connection)
//! (the workspace's codec), at most [`MAX_FRAME`] bytes: a longer frame,
//! or one that does not decode as the message expected, is an error.
//!
//! A copy opens its control connection with [`Hello::Attach`], and the
//! coordinator answers [`Answer`]; then the coordinator sends [`Order`]s
//! and the copy [`Report`]s. Each process the coordinator starts on a copy
//! has a link of its own: a new connection of the copy whose first message
//! is [`Hello::Link`] (the ticket of an [`Order::Start`]); its bytes after
//! that are the link of an agent (mp-proc's, as over ssh), with no key in
//! them.

use serde::{Deserialize, Serialize};

/// The longest message of the attach protocol.
pub(super) const MAX_FRAME: u64 = 64 * 1024;

/// A copy's first message on a connection to the coordinator.
#[derive(Serialize, Deserialize, Debug)]
pub(super) enum Hello {
    /// This is the copy's control connection.
    Attach(Attach),
    /// This connection is the link of the process of `ticket`.
    Link { ticket: u64 },
}

/// Who attaches.
#[derive(Serialize, Deserialize, Debug)]
pub(super) struct Attach {
    pub(super) rank: u64,
    /// The copy's host name, for messages.
    pub(super) host: String,
    pub(super) slots: u64,
    /// Its build identity: the coordinator's must be the same.
    pub(super) build: Vec<u8>,
}

/// The coordinator's answer to an [`Hello::Attach`].
#[derive(Serialize, Deserialize, Debug)]
pub(super) enum Answer {
    /// Attached. `keepalive` is the coordinator's bound
    /// (`MP_CLUSTER_KEEPALIVE` in its environment, which an engine may not
    /// pass on to the others): it pings every quarter of it, and the copy
    /// counts it as gone after a silence of the whole bound (zero: never).
    Welcome {
        keepalive: std::time::Duration,
    },
    Refused(String),
}

/// From the coordinator, on a control connection.
#[derive(Serialize, Deserialize, Debug)]
pub(super) enum Order {
    /// Open a link for a process: dial back with this ticket and run an
    /// agent on the connection.
    Start { ticket: u64 },
    /// The coordinator is done: end every agent, and return.
    Goodbye,
    /// The coordinator is there (sent every quarter of the keep-alive
    /// bound): a copy that hears nothing for the whole bound counts it as
    /// gone.
    Ping,
}

/// From a copy, on its control connection.
#[derive(Serialize, Deserialize, Debug)]
pub(super) enum Report {
    /// The link of `ticket` could not be made.
    StartFailed { ticket: u64, reason: String },
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A frame over the bound is refused before it is read, and a frame of
    /// another message does not decode.
    #[test]
    fn control_frames_are_bounded_and_strict() {
        let (a, b) = mp_proc::pipe(true).unwrap();
        b.set_max_frame_len(MAX_FRAME);
        a.send_bytes(&vec![0u8; MAX_FRAME as usize + 1]).unwrap();
        assert!(matches!(
            b.recv::<Order>(),
            Err(mp_proc::Error::FrameTooLong { .. })
        ));
        let (a, b) = mp_proc::pipe(true).unwrap();
        b.set_max_frame_len(MAX_FRAME);
        a.send_bytes(&[7, 1, 2]).unwrap();
        assert!(b.recv::<Order>().is_err(), "no Order has tag 7");
        a.send(&Order::Start { ticket: 9 }).unwrap();
        assert!(matches!(b.recv::<Order>(), Ok(Order::Start { ticket: 9 })));
    }
}
