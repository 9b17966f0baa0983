//! The kinds of shared objects, one module each: its request type (`Op`),
//! its proxy, and its server side (a [`Handler`](crate::server::object::Handler)).
//! Adding a kind is a module here, a [`Kind`] (how it is made), a
//! [`Request`](crate::protocol::Request) variant (how its ops travel) and
//! a line in the server's dispatch.

use std::sync::Arc;

use crate::protocol::Kind;
use crate::server::object::Object;

pub(crate) mod barrier;
pub(crate) mod condition;
pub(crate) mod dict;
pub(crate) mod event;
pub(crate) mod list;
pub(crate) mod lock;
pub(crate) mod namespace;
#[cfg(feature = "pool")]
pub(crate) mod pool;
#[cfg(feature = "pool")]
pub(crate) mod pool_proxy;
pub(crate) mod queue;
pub(crate) mod registered;
pub(crate) mod semaphore;
pub(crate) mod set;
pub(crate) mod value;

/// A new object of a built-in kind, or why it cannot be made (a registered
/// type; a barrier of no parties, or whose action is refused).
pub(crate) fn make(kind: Kind) -> Result<Arc<dyn Object>, String> {
    Ok(match kind {
        Kind::Dict => Arc::new(dict::Dict::new()),
        Kind::List => Arc::new(list::List::new()),
        Kind::Array(items) => Arc::new(list::List::array(items)),
        Kind::Namespace => Arc::new(namespace::Namespace::new()),
        Kind::Value(v) => Arc::new(value::Value::new(v)),
        Kind::Queue { maxsize, joinable } => Arc::new(queue::Queue::new(maxsize, joinable)),
        Kind::Lock => Arc::new(lock::Lock::new(false)),
        Kind::RLock => Arc::new(lock::Lock::new(true)),
        Kind::Semaphore { value, bounded } => Arc::new(semaphore::Semaphore::new(value, bounded)),
        Kind::Condition => Arc::new(condition::new()),
        Kind::Event => Arc::new(event::Event::new()),
        Kind::Barrier { parties, timeout } => {
            Arc::new(barrier::Barrier::new(parties, timeout, None)?)
        }
        Kind::BarrierWithAction {
            parties,
            timeout,
            action,
        } => Arc::new(barrier::Barrier::new(parties, timeout, Some(&action))?),
        Kind::Set => Arc::new(set::Set::new()),
        #[cfg(feature = "pool")]
        Kind::Pool { processes, method } => pool::make(processes, method),
        Kind::Registered(_) | Kind::ConditionOver(_) => {
            return Err("not a kind of object that can be made alone".into());
        }
    })
}
