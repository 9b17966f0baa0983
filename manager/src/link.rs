//! One persistent authenticated connection per manager per process, shared
//! by the `SyncManager` and every proxy of that process (CPython opens a new
//! connection, with a full handshake, for every create, incref and decref).

use std::sync::{Arc, Mutex, Weak};

use mp_proc::Connection;
use mp_proc::connection::{Address, Client};

use crate::protocol::{Reply, Request};
use crate::{Error, Result};

pub(crate) struct Link {
    pub(crate) address: Address,
    conn: Mutex<Connection>,
}

/// The links of this process, by address (and pid: a forked child finds
/// its parent's entries, whose connections it does not have).
static LINKS: Mutex<Vec<(u32, Address, Weak<Link>)>> = Mutex::new(Vec::new());

impl Link {
    /// This process's link to `address`, made (and authenticated with
    /// `authkey`) if there is none.
    pub(crate) fn to(address: &Address, authkey: &[u8]) -> Result<Arc<Link>> {
        let pid = std::process::id();
        let mut links = LINKS.lock().unwrap_or_else(|p| p.into_inner());
        links.retain(|(p, _, l)| *p == pid && l.strong_count() > 0);
        if let Some(l) = links
            .iter()
            .find(|(_, a, _)| a == address)
            .and_then(|(_, _, l)| l.upgrade())
        {
            return Ok(l);
        }
        let conn = Client::connect(address, Some(authkey))?;
        let link = Arc::new(Link {
            address: address.clone(),
            conn: Mutex::new(conn),
        });
        links.push((pid, address.clone(), Arc::downgrade(&link)));
        Ok(link)
    }

    /// One round trip.
    pub(crate) fn call(&self, request: &Request) -> Result<Reply> {
        let conn = self.conn.lock().unwrap_or_else(|p| p.into_inner());
        conn.send(request)?;
        match conn.recv::<Reply>()? {
            Reply::Error(e) => Err(remote(e)),
            r => Ok(r),
        }
    }
}

/// An error the server reported (Python's `RemoteError`).
pub(crate) fn remote(message: String) -> Error {
    Error::Os {
        op: "manager",
        source: std::io::Error::other(message),
    }
}

/// A reply of the wrong shape.
pub(crate) fn unexpected(r: Reply) -> Error {
    remote(format!("unexpected reply from the manager: {r:?}"))
}
