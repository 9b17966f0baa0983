//! Forwarded addresses of a [`Launcher`]: the user's side (the runtime's
//! is `rt::tunnel`).

use super::Address;
use crate::Launcher;
use crate::rt::dial::WireAddress;

impl Launcher {
    /// Connections to `address` made by processes started by this launcher
    /// travel over its link (for ssh, ssh's encrypted channel) instead of
    /// the network: [`Client::connect`](crate::connection::Client::connect)
    /// to exactly this address, in the process (or a fork child of it), asks
    /// its agent for a new channel, and this process connects to `address`
    /// itself and bridges the two. The bytes are the connection's (the
    /// handshake included), so the server sees a client of this machine.
    /// Only the addresses listed here are ever connected to (the far side
    /// names an index in this list, never an address); if this process
    /// cannot connect, the far side's `connect` fails with
    /// [`Error::Forwarded`](crate::Error::Forwarded) and the reason. So no
    /// host needs a route back to this machine, and a Unix socket of this
    /// machine can be reached from another. Nothing for a local launcher
    /// (its processes reach the address directly).
    ///
    /// ```
    /// use mp_proc::connection::{Address, Client, Listener};
    /// use mp_proc::{Launcher, Process, current_process};
    ///
    /// fn hello(address: String) {
    ///     let address: Address = address.parse().unwrap();
    ///     let conn = Client::connect(&address, Some(current_process().authkey())).unwrap();
    ///     conn.send(&"hello through the link").unwrap();
    /// }
    ///
    /// let key = current_process().authkey().to_vec();
    /// let l = Listener::bind("127.0.0.1:0".parse()?, Some(&key))?;
    /// // An empty prefix takes the remote path on this machine; with
    /// // `Launcher::ssh("node1")` the listener would be reached the same way
    /// // from node1, with no route from node1 to here.
    /// let far = Launcher::command([""; 0]).forward(l.address().clone());
    /// assert_eq!(far.forwarded(), [l.address().clone()]);
    /// let mut p = Process::new(hello, l.address().to_string()).launcher(far);
    /// p.start()?;
    /// assert_eq!(l.accept()?.recv::<String>()?, "hello through the link");
    /// assert_eq!(p.join()?, 0);
    /// # Ok::<(), mp_proc::Error>(())
    /// ```
    pub fn forward(mut self, address: Address) -> Launcher {
        self.add_forward(WireAddress::from(&address));
        self
    }

    /// The addresses [`forward`](Self::forward) added, in order.
    ///
    /// ```
    /// use mp_proc::Launcher;
    /// let a = "127.0.0.1:5000".parse()?;
    /// let far = Launcher::ssh("node1").forward(a).forward("@mp-manager".parse()?);
    /// assert_eq!(far.forwarded()[1].to_string(), "@mp-manager");
    /// # Ok::<(), mp_proc::Error>(())
    /// ```
    pub fn forwarded(&self) -> Vec<Address> {
        self.forward_list()
            .iter()
            .cloned()
            .map(Address::from)
            .collect()
    }
}
