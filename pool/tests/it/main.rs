//! mp-pool's integration tests. Behaviours are written once as
//! `fn(StartMethod)` and instantiated for fork, spawn and forkserver.

/// The primitives of a test's own `Context` over mp-proc's processes: every
/// method but `name`, `process` and `workers` handed to the field `$inner`
/// (a `ProcessContext`). The associated types are mp-proc's.
macro_rules! primitives_of {
    ($inner:ident) => {
        type Queue<T: mp_proc::Payload> = mp_proc::Queue<T>;
        type JoinableQueue<T: mp_proc::Payload> = mp_proc::JoinableQueue<T>;
        type Lock = mp_proc::Lock;
        type RLock = mp_proc::RLock;
        type Condition = mp_proc::Condition;
        type Semaphore = mp_proc::Semaphore;
        type BoundedSemaphore = mp_proc::BoundedSemaphore;
        type Event = mp_proc::Event;
        type Barrier = mp_proc::Barrier;
        type Value<T: mp_proc::Shareable + mp_proc::Payload> = mp_proc::Value<T>;
        type Connection = mp_proc::Connection;

        fn queue<T: mp_proc::Payload>(&self) -> mp_proc::Result<mp_proc::Queue<T>> {
            self.$inner.queue()
        }
        fn queue_with_maxsize<T: mp_proc::Payload>(
            &self,
            maxsize: usize,
        ) -> mp_proc::Result<mp_proc::Queue<T>> {
            self.$inner.queue_with_maxsize(maxsize)
        }
        fn joinable_queue<T: mp_proc::Payload>(
            &self,
        ) -> mp_proc::Result<mp_proc::JoinableQueue<T>> {
            self.$inner.joinable_queue()
        }
        fn lock(&self) -> mp_proc::Result<mp_proc::Lock> {
            mp_proc::Context::lock(&self.$inner)
        }
        fn rlock(&self) -> mp_proc::Result<mp_proc::RLock> {
            self.$inner.rlock()
        }
        fn condition(&self, lock: Option<mp_proc::Lock>) -> mp_proc::Result<mp_proc::Condition> {
            self.$inner.condition(lock)
        }
        fn semaphore(&self, value: usize) -> mp_proc::Result<mp_proc::Semaphore> {
            self.$inner.semaphore(value)
        }
        fn bounded_semaphore(&self, value: usize) -> mp_proc::Result<mp_proc::BoundedSemaphore> {
            self.$inner.bounded_semaphore(value)
        }
        fn event(&self) -> mp_proc::Result<mp_proc::Event> {
            self.$inner.event()
        }
        fn barrier(
            &self,
            parties: usize,
            timeout: Option<std::time::Duration>,
        ) -> mp_proc::Result<mp_proc::Barrier> {
            self.$inner.barrier(parties, timeout)
        }
        fn value<T: mp_proc::Shareable + mp_proc::Payload>(
            &self,
            value: T,
        ) -> mp_proc::Result<mp_proc::Value<T>> {
            self.$inner.value(value)
        }
        fn pipe(
            &self,
            duplex: bool,
        ) -> mp_proc::Result<(mp_proc::Connection, mp_proc::Connection)> {
            mp_proc::Context::pipe(&self.$inner, duplex)
        }
        fn cpu_count(&self) -> usize {
            mp_proc::Context::cpu_count(&self.$inner)
        }
    };
}

mod api;
mod asyncs;
mod cancel;
mod conformance;
mod cpython_port;
mod crash;
mod drops;
mod faults;
mod handles;
mod hosts;
mod idle;
mod imap_window;
mod join_twice;
mod lazy;
mod lifetime;
mod memory;
mod replace;
mod review;
mod scenarios;
mod sizing;
mod start_failure;
mod timeout;

use mp_pool::{Pool, PoolBuilder};
use mp_proc::StartMethod;

/// A pool builder with `processes` workers started by `method`.
pub(crate) fn builder(method: StartMethod, processes: usize) -> PoolBuilder {
    Pool::builder()
        .processes(processes)
        .context(mp_proc::get_context(method))
}

/// A pool of two workers started by `method`.
pub(crate) fn pool(method: StartMethod) -> Pool {
    builder(method, 2).build().unwrap()
}

/// A pool whose workers hold `tasks::Gate` (given by the initializer, the
/// way handles reach pool workers).
pub(crate) fn gated(method: StartMethod, processes: usize) -> (Pool, tasks::Gate) {
    let gate = tasks::Gate {
        started: mp_proc::Queue::new().unwrap(),
        go: mp_proc::Event::new().unwrap(),
    };
    let pool = builder(method, processes)
        .initializer(tasks::install, gate.clone())
        .build()
        .unwrap();
    (pool, gate)
}

/// Tasks shared by the tests.
pub(crate) mod tasks {
    use std::sync::OnceLock;

    use serde::{Deserialize, Serialize};

    pub(crate) fn square(x: u64) -> u64 {
        x * x
    }

    pub(crate) fn add(a: u64, b: u64) -> u64 {
        a + b
    }

    /// The pid of the worker that runs it.
    pub(crate) fn pid(_: u64) -> u32 {
        std::process::id()
    }

    /// The name of the worker that runs it.
    pub(crate) fn name(_: ()) -> String {
        mp_proc::current_process().name().to_owned()
    }

    /// What blocked tasks report to and wait on.
    #[derive(Clone, Serialize, Deserialize)]
    pub(crate) struct Gate {
        /// Each task puts its worker's pid here when it starts.
        pub(crate) started: mp_proc::Queue<u32>,
        /// Tasks wait until it is set.
        pub(crate) go: mp_proc::Event,
    }

    static GATE: OnceLock<Gate> = OnceLock::new();

    /// The initializer of [`crate::gated`] pools.
    pub(crate) fn install(gate: Gate) {
        let _ = GATE.set(gate);
    }

    /// Reports its worker's pid, waits for the gate to open, returns `x`.
    pub(crate) fn gated(x: u64) -> u64 {
        let gate = GATE.get().expect("a gated pool");
        gate.started.put(std::process::id()).unwrap();
        gate.go.wait(None).unwrap();
        x
    }
}
