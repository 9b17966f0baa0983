//! [`ClusterContext`]: an [`mp_proc::Context`] whose processes start on
//! hosts by their [`Launcher`]s and whose queues, locks and the rest are
//! served by a manager of this process, which the processes on other hosts
//! reach through their launcher's link.

mod attach;
mod traits;

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use mp_proc::connection::Address;
use mp_proc::{Connection, Context, Launcher, Payload, Process, Shareable, StartMethod, Workers};

pub use traits::{ClusterBarrier, ClusterCondition, ClusterValue};

use crate::{
    BoundedSemaphoreProxy, Core, Error, EventProxy, JoinableQueueProxy, LockProxy, QueueProxy,
    RLockProxy, Result, SemaphoreProxy, SyncManager,
};

/// A [`Context`] across hosts: its processes start on the hosts given to
/// its [`builder`](Self::builder), each by its [`Launcher`], filled in turn
/// up to their slots; its queues, locks, conditions, semaphores, events,
/// barriers and values are proxies to a manager that this process starts
/// (a `SyncManager` listening on TCP, with this process's authkey, which
/// its children have; processes on the other hosts reach it through their
/// launcher's link, its address [forwarded](Launcher::forward) to each),
/// so they need no memory or descriptor shared with a
/// process; its [`pipe`](Context::pipe) is [`mp_proc::pipe`], whose ends a
/// process on another host reaches over its launcher's link.
///
/// So a body written against [`Context`] (the one that runs on threads and
/// under the three start methods) runs on hosts unchanged.
///
/// The manager ends (and with it every proxy's object) when the last clone
/// of the context is dropped.
///
/// ```
/// use mp_proc::{Context, Launcher, ProcessLike, QueueLike, Workers};
///
/// fn square<C: Context>((q, x): (C::Queue<u64>, u64)) {
///     q.put(x * x).unwrap();
/// }
///
/// /// The squares of 1..=3, each in a process of `ctx`.
/// fn run<C: Context>(ctx: &C) -> mp_proc::Result<u64> {
///     let q = ctx.queue::<u64>()?;
///     let mut ps: Vec<C::Process> = (1..=3)
///         .map(|x| ctx.process(square::<C>, (q.clone(), x)))
///         .collect();
///     for p in &mut ps {
///         p.start()?;
///     }
///     let sum = (0..3).map(|_| q.get()).sum::<mp_proc::Result<u64>>()?;
///     for p in &mut ps {
///         assert_eq!(p.join()?, 0);
///     }
///     Ok(sum)
/// }
///
/// // Two slots on this machine, and one host reached the way another
/// // machine would be: `Launcher::command` runs this program there as an
/// // agent over the launcher's stdio (with no prefix, here; with
/// // `Launcher::ssh("node1")` or `["srun", ..]`, on that node).
/// let cluster = mp_manager::ClusterContext::builder()
///     .host(Launcher::local(), 2)
///     .host(Launcher::command([""; 0]), 1)
///     .build()?;
/// assert_eq!(run(&cluster)?, 14);
/// assert_eq!(run(&mp_proc::get_context(mp_proc::StartMethod::Spawn))?, 14);
/// assert_eq!(cluster.cpu_count(), 3);
/// assert_eq!(cluster.workers(), Workers::Hosts);
/// # Ok::<(), mp_manager::Error>(())
/// ```
#[derive(Clone, Debug)]
pub struct ClusterContext {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    manager: SyncManager,
    hosts: Vec<(Launcher, usize)>,
    /// The host of each process in turn (indices into `hosts`), cycled.
    schedule: Vec<usize>,
    next: AtomicUsize,
    /// Held while a process is placed and counted on its host, so that
    /// two placed at once do not take the same free slot.
    placing: std::sync::Mutex<()>,
    method: StartMethod,
    /// The copies attached by `from_launcher` (told goodbye when dropped).
    _attached: Option<attach::Coordinator>,
}

/// The options of a [`ClusterContext`]: where its manager listens, its
/// hosts and their slots, the start method of its local processes.
///
/// ```
/// use mp_proc::Launcher;
/// let cluster = mp_manager::ClusterContext::builder()
///     .listen("127.0.0.1:0".parse().unwrap())
///     .host(Launcher::local(), 1)
///     .start_method(mp_proc::StartMethod::Spawn)
///     .build()?;
/// assert_eq!(cluster.hosts().len(), 1);
/// # Ok::<(), mp_manager::Error>(())
/// ```
#[derive(Debug)]
pub struct ClusterBuilder {
    listen: SocketAddr,
    hosts: Vec<(Launcher, usize)>,
    method: Option<StartMethod>,
    attached: Option<attach::Coordinator>,
}

impl Default for ClusterBuilder {
    fn default() -> ClusterBuilder {
        ClusterBuilder {
            listen: SocketAddr::from((Ipv4Addr::LOCALHOST, 0)),
            hosts: Vec::new(),
            method: None,
            attached: None,
        }
    }
}

impl ClusterBuilder {
    /// Where the manager serving the context's primitives listens (default
    /// `127.0.0.1:0`; port 0 picks a free one). Every proxy carries this
    /// address. Processes on this machine dial it; processes on the other
    /// hosts reach it through their launcher's link, not the network:
    /// [`build`](Self::build) adds it to each host's launcher that is not
    /// [`Launcher::local`] with [`Launcher::forward`]. So the default
    /// loopback address serves every host, and no host needs a route back
    /// to this machine. An unspecified address (`0.0.0.0`, `::`) is refused
    /// by [`build`](Self::build): a proxy could not say where to dial.
    ///
    /// A proxy's traffic is authenticated by the authkey's handshake; from
    /// another host it travels inside the launcher's link (for
    /// [`Launcher::ssh`], ssh's encrypted channel; for a
    /// [`Launcher::command`], whatever that command's standard input and
    /// output are), and on this machine over TCP to the listening address
    /// (see `SECURITY.md`).
    ///
    /// ```
    /// let at: std::net::SocketAddr = "127.0.0.1:0".parse().unwrap();
    /// let cluster = mp_manager::ClusterContext::builder().listen(at).build()?;
    /// let mp_proc::connection::Address::Tcp(bound) = cluster.address() else { panic!() };
    /// assert_ne!(bound.port(), 0); // the port chosen
    /// # Ok::<(), mp_manager::Error>(())
    /// ```
    pub fn listen(mut self, addr: SocketAddr) -> Self {
        self.listen = addr;
        self
    }

    /// One more host: processes start there by `launcher`, at most `slots`
    /// of them per round of the hosts (a zero is refused by
    /// [`build`](Self::build)). With no host at all, the context has one,
    /// [`Launcher::local()`] with [`mp_proc::available_cpus`] slots.
    ///
    /// ```
    /// use mp_proc::{Context, Launcher};
    /// let cluster = mp_manager::ClusterContext::builder()
    ///     .host(Launcher::local(), 2)
    ///     .host(Launcher::ssh("node1"), 1) // nothing starts there until a process does
    ///     .build()?;
    /// let turns: Vec<String> = (0..3)
    ///     .map(|_| cluster.process(drop::<()>, ()).get_launcher().host())
    ///     .collect();
    /// assert_eq!(turns[1], "node1");
    /// assert_eq!(cluster.cpu_count(), 3);
    /// # Ok::<(), mp_manager::Error>(())
    /// ```
    pub fn host(mut self, launcher: Launcher, slots: usize) -> Self {
        self.hosts.push((launcher, slots));
        self
    }

    /// The start method of the processes on this machine (the local hosts'
    /// and the manager's; default [`mp_proc::get_start_method`]).
    ///
    /// ```
    /// use mp_proc::{Context, StartMethod, Workers};
    /// let cluster = mp_manager::ClusterContext::builder()
    ///     .start_method(StartMethod::Spawn)
    ///     .build()?;
    /// assert_eq!(cluster.workers(), Workers::Processes(StartMethod::Spawn));
    /// # Ok::<(), mp_manager::Error>(())
    /// ```
    pub fn start_method(mut self, method: StartMethod) -> Self {
        self.method = Some(method);
        self
    }

    /// Starts the manager and makes the context: an error for an
    /// unspecified listening address, a host of zero slots, or a manager
    /// that does not start (the address taken, say).
    ///
    /// ```
    /// use mp_proc::Launcher;
    /// let any = mp_manager::ClusterContext::builder()
    ///     .listen("0.0.0.0:0".parse().unwrap())
    ///     .build();
    /// assert!(matches!(any, Err(mp_manager::Error::Invalid { .. })));
    /// let none = mp_manager::ClusterContext::builder()
    ///     .host(Launcher::local(), 0)
    ///     .build();
    /// assert!(matches!(none, Err(mp_manager::Error::Invalid { .. })));
    /// ```
    pub fn build(self) -> Result<ClusterContext> {
        if self.listen.ip().is_unspecified() {
            return Err(Error::Invalid {
                what: "ClusterContext",
                reason: format!(
                    "cannot listen at {}: its proxies carry the address, and processes on the \
                     hosts must be able to dial it; give this machine's address on their network",
                    self.listen
                ),
            });
        }
        if let Some((launcher, _)) = self.hosts.iter().find(|(_, slots)| *slots == 0) {
            return Err(Error::Invalid {
                what: "ClusterContext",
                reason: format!(
                    "host {} has no slots: give it at least one",
                    launcher.host()
                ),
            });
        }
        let hosts = match self.hosts.is_empty() {
            true => vec![(Launcher::local(), mp_proc::available_cpus())],
            false => self.hosts,
        };
        let method = self.method.unwrap_or_else(mp_proc::get_start_method);
        let authkey = mp_proc::current_process().authkey().to_vec();
        let address = Address::Tcp(self.listen);
        let core = Core::start(
            "ClusterManager",
            method,
            Some(&address),
            &authkey,
            Vec::new(),
            None,
        )?;
        let manager = SyncManager { core };
        // Every other host reaches the manager through its launcher's link.
        let hosts = hosts
            .into_iter()
            .map(|(launcher, slots)| match launcher.is_local() {
                true => (launcher, slots),
                false => (launcher.forward(manager.address().clone()), slots),
            })
            .collect::<Vec<_>>();
        Ok(ClusterContext {
            inner: Arc::new(Inner {
                manager,
                schedule: schedule(&hosts),
                hosts,
                next: AtomicUsize::new(0),
                placing: std::sync::Mutex::new(()),
                method,
                _attached: self.attached,
            }),
        })
    }
}

impl Inner {
    /// The host of the next process (an index into `hosts`): in the turn
    /// order of [`schedule`], the first that is up with a free slot, else
    /// the first that is down with a free slot, else the next up host in
    /// turn, else the next in turn.
    fn place(&self) -> usize {
        let schedule = &self.schedule;
        let turn = self.next.fetch_add(1, Ordering::Relaxed) % schedule.len();
        let in_turn = || (0..schedule.len()).map(move |k| schedule[(turn + k) % schedule.len()]);
        let free = |i: usize| {
            let (launcher, slots) = &self.hosts[i];
            launcher.processes() < *slots
        };
        let up = |i: usize| !self.hosts[i].0.is_down();
        in_turn()
            .find(|&i| up(i) && free(i))
            .or_else(|| in_turn().find(|&i| free(i)))
            .or_else(|| in_turn().find(|&i| up(i)))
            .unwrap_or(schedule[turn])
    }
}

/// The hosts in turn, one slot each per round while they have slots left:
/// with slots 2 and 1, hosts 0, 1, 0.
fn schedule(hosts: &[(Launcher, usize)]) -> Vec<usize> {
    let rounds = hosts.iter().map(|(_, s)| *s).max().unwrap_or(0);
    (0..rounds)
        .flat_map(|round| {
            hosts
                .iter()
                .enumerate()
                .filter(move |(_, (_, slots))| round < *slots)
                .map(|(i, _)| i)
        })
        .collect()
}

impl ClusterContext {
    /// The cluster of a program whose copies an engine started itself
    /// (`mpirun -n 8 app`, `srun -n 8 app`, a Kubernetes Indexed Job), as
    /// `mpi4py.futures` attaches under `mpiexec`: `Ok(Some(ctx))` in the
    /// coordinating copy (rank 0), whose hosts are the other copies;
    /// `Ok(None)` in each other copy, once it has served as a host of the
    /// coordinator until the coordinator is done (the last clone of its
    /// context dropped, or the coordinator gone, however it ended).
    ///
    /// What each copy reads in its environment:
    /// - its **rank**: the first set of `OMPI_COMM_WORLD_RANK`, `PMI_RANK`,
    ///   `SLURM_PROCID`, `JOB_COMPLETION_INDEX`. None set: this program was
    ///   not started by an engine ([`Error::Invalid`] says so).
    /// - the job's **size**: the first set of `OMPI_COMM_WORLD_SIZE`,
    ///   `PMI_SIZE`, `SLURM_NTASKS`, `MP_CLUSTER_SIZE` (an Indexed Job's
    ///   environment has no size: set it to the job's completions).
    /// - the **key**: the file named by `MP_CLUSTER_AUTHKEY_FILE`, a regular
    ///   file of this user with mode `0600`, at most 4 KiB (see
    ///   [`mp_proc::connection::read_authkey_file`]); every copy makes it
    ///   its authkey ([`mp_proc::set_authkey`]). The key never travels: the
    ///   copies prove they hold it (the handshake of
    ///   [`mp_proc::connection::Client`]), and the processes started on a
    ///   copy read it from there.
    /// - where the coordinator is: `MP_CLUSTER_ADDRESS` (`host:port`; rank 0
    ///   listens there, the others dial it), or, when nobody knows rank 0's
    ///   node in advance, `MP_CLUSTER_ADDRESS_FILE`: a file on a filesystem
    ///   every copy sees (read only if it is a regular file of this user
    ///   that its group and others cannot write: another user who could
    ///   plant it would sit between the copies and rank 0), to which rank 0
    ///   writes the `ip:port` it listens at
    ///   (a free port of every address, and it writes its first
    ///   non-loopback IPv4 address that is up, else `127.0.0.1`); the others
    ///   read it until it names a coordinator that answers (a file an
    ///   earlier run left is read again). `MP_CLUSTER_LISTEN` (`ip:port`), if
    ///   set, is where rank 0 listens in both cases (`0.0.0.0:5555` for a
    ///   `MP_CLUSTER_ADDRESS` that names a Kubernetes service, say).
    /// - `MP_CLUSTER_TIMEOUT` (seconds, default 60): how long rank 0 waits
    ///   for all the others to attach (past it, an error naming the ranks
    ///   missing) and the others for the coordinator; how long a start
    ///   waits for its link.
    /// - `MP_CLUSTER_SLOTS` (default 1): how many processes a copy takes per
    ///   round of the hosts.
    /// - `MP_CLUSTER_KEEPALIVE` (seconds, default 10; 0: off), rank 0's,
    ///   which it tells the copies when they attach: how long a
    ///   connection of the job may stay silent (see [`Launcher::keepalive`]):
    ///   rank 0 tells each copy it is there every quarter of it, and a copy
    ///   that hears nothing for the whole bound (rank 0 frozen, or behind a
    ///   partition) dials rank 0 again for `MP_CLUSTER_REJOIN` seconds
    ///   (default: `MP_CLUSTER_TIMEOUT`; 0: not at all): back within it (the
    ///   partition healed), rank 0 takes the copy again, in place of its old
    ///   connection; else the copy returns `Ok(None)`. Each process's link
    ///   has the same bound: its processes there end when it passes.
    ///
    /// A job of size 1 gets a context whose one host is this machine
    /// ([`Launcher::local`]) with `MP_CLUSTER_SLOTS` slots. A copy that runs
    /// another build than rank 0 is refused, saying so, and rank 0 waits
    /// on for the rank (its error at the deadline names the refusals); a
    /// copy with another key fails its handshake.
    ///
    /// Each process of the context on a copy has a TCP connection of its
    /// own, from the copy to rank 0, authenticated by the key; the copy runs
    /// this executable as its agent on it, as [`Launcher::ssh`] would. Its
    /// bytes are not encrypted (use a network of the job's own, as MPI
    /// does; see `SECURITY.md`).
    ///
    /// ```
    /// // Not started by mpirun, srun or an Indexed Job:
    /// let attached = mp_manager::ClusterContext::from_launcher();
    /// assert!(matches!(attached, Err(mp_manager::Error::Invalid { .. })));
    /// ```
    ///
    /// The same program under each engine (see `manager/examples/spmd.rs`):
    ///
    /// ```no_run
    /// use mp_proc::{Context, QueueLike};
    /// fn main() -> mp_manager::Result<()> {
    ///     match mp_manager::ClusterContext::from_launcher()? {
    ///         Some(cluster) => {
    ///             let q = cluster.queue::<u32>()?;
    ///             // ... start processes on the cluster, as on any Context
    ///             # drop(q);
    ///         }
    ///         None => {} // this copy served; the coordinator is done
    ///     }
    ///     Ok(())
    /// }
    /// ```
    pub fn from_launcher() -> Result<Option<ClusterContext>> {
        attach::from_launcher()
    }

    /// The options of a new cluster context (see [`ClusterBuilder`]).
    ///
    /// ```
    /// let cluster = mp_manager::ClusterContext::builder().build()?; // this machine
    /// assert_eq!(cluster.hosts().len(), 1);
    /// # Ok::<(), mp_manager::Error>(())
    /// ```
    pub fn builder() -> ClusterBuilder {
        ClusterBuilder::default()
    }

    /// Where its manager listens (the port chosen, for port 0).
    ///
    /// ```
    /// let cluster = mp_manager::ClusterContext::builder().build()?;
    /// assert!(cluster.address().to_string().starts_with("127.0.0.1:"));
    /// # Ok::<(), mp_manager::Error>(())
    /// ```
    pub fn address(&self) -> &Address {
        self.inner.manager.address()
    }

    /// Its hosts and their slots, as given (or the one local host).
    ///
    /// ```
    /// use mp_proc::Launcher;
    /// let cluster = mp_manager::ClusterContext::builder().build()?;
    /// let [(host, slots)] = cluster.hosts() else { panic!() };
    /// assert!(host.is_local());
    /// assert_eq!(*slots, mp_proc::available_cpus());
    /// # Ok::<(), mp_manager::Error>(())
    /// ```
    pub fn hosts(&self) -> &[(Launcher, usize)] {
        &self.inner.hosts
    }

    /// The manager serving its primitives, for the kinds a context does
    /// not name (dicts, lists, namespaces).
    ///
    /// ```
    /// let cluster = mp_manager::ClusterContext::builder().build()?;
    /// let d = cluster.manager().dict::<String, u32>()?;
    /// d.insert("a".into(), 1)?;
    /// # Ok::<(), mp_manager::Error>(())
    /// ```
    pub fn manager(&self) -> &SyncManager {
        &self.inner.manager
    }

    fn total_slots(&self) -> usize {
        self.inner.hosts.iter().map(|(_, s)| s).sum()
    }
}

impl Context for ClusterContext {
    type Process = Process;
    type Queue<T: Payload> = QueueProxy<T>;
    type JoinableQueue<T: Payload> = JoinableQueueProxy<T>;
    type Lock = LockProxy;
    type RLock = RLockProxy;
    type Condition = ClusterCondition;
    type Semaphore = SemaphoreProxy;
    type BoundedSemaphore = BoundedSemaphoreProxy;
    type Event = EventProxy;
    type Barrier = ClusterBarrier;
    type Value<T: Shareable + Payload> = ClusterValue<T>;
    type Connection = Connection;

    fn name(&self) -> &'static str {
        "cluster"
    }
    /// A process on the next host in turn (by [`Process::launcher`]) that
    /// has a free slot and is up (see [`Launcher::processes`] and
    /// [`Launcher::is_down`]). A host that is down keeps its slots: when
    /// only down hosts have free slots, the process goes to one of them,
    /// and its start fails at once (a pool then runs with the workers it
    /// has and tries again later, so the host rejoins as soon as it is
    /// back). When every slot is taken, the hosts take turns as if they
    /// had more.
    fn process<A: Payload>(&self, target: fn(A), args: A) -> Process {
        let process = Process::new(target, args).start_method(self.inner.method);
        let _placing = self
            .inner
            .placing
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let (launcher, _) = &self.inner.hosts[self.inner.place()];
        process.launcher(launcher.clone())
    }
    /// [`Workers::Hosts`], or, when every host is [`Launcher::local`],
    /// [`Workers::Processes`] with the context's start method (the
    /// processes are this machine's: a pool may treat them so).
    fn workers(&self) -> Workers {
        match self.inner.hosts.iter().all(|(l, _)| l.is_local()) {
            true => Workers::Processes(self.inner.method),
            false => Workers::Hosts,
        }
    }
    fn queue<T: Payload>(&self) -> Result<QueueProxy<T>> {
        self.inner.manager.queue()
    }
    fn queue_with_maxsize<T: Payload>(&self, maxsize: usize) -> Result<QueueProxy<T>> {
        self.inner.manager.queue_with_maxsize(maxsize)
    }
    fn joinable_queue<T: Payload>(&self) -> Result<JoinableQueueProxy<T>> {
        self.inner.manager.joinable_queue()
    }
    fn lock(&self) -> Result<LockProxy> {
        self.inner.manager.lock()
    }
    fn rlock(&self) -> Result<RLockProxy> {
        self.inner.manager.rlock()
    }
    fn condition(&self, lock: Option<LockProxy>) -> Result<ClusterCondition> {
        let lock = match lock {
            Some(lock) => lock,
            None => self.inner.manager.lock()?,
        };
        let condition = self.inner.manager.condition_over(&lock)?;
        Ok(ClusterCondition::new(condition, lock))
    }
    fn semaphore(&self, value: usize) -> Result<SemaphoreProxy> {
        self.inner.manager.semaphore(value)
    }
    fn bounded_semaphore(&self, value: usize) -> Result<BoundedSemaphoreProxy> {
        self.inner.manager.bounded_semaphore(value)
    }
    fn event(&self) -> Result<EventProxy> {
        self.inner.manager.event()
    }
    fn barrier(&self, parties: usize, timeout: Option<Duration>) -> Result<ClusterBarrier> {
        let b = self.inner.manager.barrier(parties, timeout)?;
        Ok(ClusterBarrier::new(b, parties))
    }
    /// The action runs in the manager's process, on this machine, each time
    /// the barrier trips.
    fn barrier_with_action(
        &self,
        parties: usize,
        action: fn(),
        timeout: Option<Duration>,
    ) -> Result<ClusterBarrier> {
        let b = self
            .inner
            .manager
            .barrier_with_action(parties, action, timeout)?;
        Ok(ClusterBarrier::new(b, parties))
    }
    fn value<T: Shareable + Payload>(&self, value: T) -> Result<ClusterValue<T>> {
        let v = self.inner.manager.value(value)?;
        Ok(ClusterValue::new(v, self.inner.manager.lock()?))
    }
    fn pipe(&self, duplex: bool) -> Result<(Connection, Connection)> {
        mp_proc::pipe(duplex)
    }
    /// The slots of all its hosts.
    fn cpu_count(&self) -> usize {
        self.total_slots()
    }
    /// The slots of all its hosts.
    fn available_cpus(&self) -> usize {
        self.total_slots()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts_take_turns_by_slots() {
        let h = |n| (Launcher::local(), n);
        assert_eq!(schedule(&[h(2), h(1)]), [0, 1, 0]);
        assert_eq!(schedule(&[h(1), h(3), h(2)]), [0, 1, 2, 1, 2, 1]);
        assert_eq!(schedule(&[h(1)]), [0]);
    }
}
