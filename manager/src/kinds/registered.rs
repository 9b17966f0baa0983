//! Objects of types registered with a `BaseManager`: their request (a
//! method by name), their proxy and their server side.

use std::marker::PhantomData;
use std::sync::Arc;

use mp_proc::codec::decode;
use serde::Serialize;

use crate::Result;
use crate::link::unexpected;
use crate::protocol::{Bytes, Failure, Reply, Request};
use crate::proxy::{Reference, enc, proxy_handle};
use crate::served::{Args, Served};
use crate::server::object::{Call, Guarded, Handler, Object, fail};

/// A proxy to an object of a type registered with a
/// [`BaseManager`](crate::BaseManager): its methods are called by name
/// (Python's `BaseProxy._callmethod`).
///
/// ```
/// use mp_manager::{Args, BaseManager, BaseProxy, Served, no_such_method, reply};
///
/// #[derive(Default)]
/// struct Counter(u64);
///
/// impl Served for Counter {
///     fn call_method(&mut self, method: &str, args: Args<'_>) -> mp_manager::Result<Vec<u8>> {
///         match method {
///             "add" => {
///                 self.0 += args.decode::<u64>()?;
///                 reply(&self.0)
///             }
///             _ => Err(no_such_method("Counter", method)),
///         }
///     }
/// }
///
/// fn main() -> mp_manager::Result<()> {
///     mp_proc::init();
///     let m = BaseManager::builder()
///         .register::<Counter>("Counter", Counter::default)
///         .start()?;
///     let c: BaseProxy = m.create("Counter")?;
///     assert_eq!(c.call_method::<u64, u64>("add", &2)?, 2);
///     assert!(c.call_method::<(), ()>("nope", &()).is_err());
///     Ok(())
/// }
/// ```
pub struct BaseProxy {
    inner: Reference,
    _t: PhantomData<()>,
}

proxy_handle!(BaseProxy);

impl BaseProxy {
    /// Calls `method` with `args` (a tuple for several) and decodes its
    /// result. A method that fails or panics in the server is this call's
    /// error (an [`Error::Index`](crate::Error::Index) or an
    /// [`Error::Attribute`](crate::Error::Attribute) it returns keeps its
    /// kind; any other is [`Error::Remote`](crate::Error::Remote)); the
    /// object and the server go on.
    pub fn call_method<A: Serialize + ?Sized, R: serde::de::DeserializeOwned>(
        &self,
        method: &str,
        args: &A,
    ) -> Result<R> {
        let r = &self.inner;
        match r.call(&Request::Call(r.id, method.to_owned(), enc(args)?))? {
            Reply::Value(b) => decode(&b),
            r => Err(unexpected(r)),
        }
    }
}

/// An object of a registered type in the server; each call holds its lock.
pub(crate) struct Registered(Guarded<Box<dyn Served>>);

impl Registered {
    pub(crate) fn new(served: Box<dyn Served>) -> Registered {
        Registered(Guarded::new(served))
    }
}

impl Object for Registered {}

impl Handler<(String, Bytes)> for Registered {
    /// A method of a registered type; a panic in it is the call's error.
    fn serve(self: Arc<Self>, (method, args): (String, Bytes), _: &mut Call<'_>) -> Reply {
        let result = self
            .0
            .with(|served| quietly(|| served.call_method(&method, Args::new(&args))));
        match result {
            Ok(Ok(bytes)) => Reply::Value(Bytes::from(bytes)),
            Ok(Err(e)) => fail(Failure::of(&e)),
            Err(panic) => fail(Failure::Remote(format!(
                "method {method:?} panicked: {}",
                mp_proc::plumbing::panic_message(&*panic)
            ))),
        }
    }
}

thread_local! {
    /// This thread runs user code whose panic is its caller's error, sent
    /// back with its message: it is not printed here too.
    static QUIET: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Runs user code (a registered type's method or factory), catching a
/// panic without printing it: the client gets it as its call's error (as
/// CPython's server sends the exception back without a traceback).
pub(crate) fn quietly<T>(f: impl FnOnce() -> T) -> std::thread::Result<T> {
    static HOOK: std::sync::Once = std::sync::Once::new();
    HOOK.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if !QUIET.with(std::cell::Cell::get) {
                previous(info)
            }
        }));
    });
    QUIET.with(|q| q.set(true));
    let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(f));
    QUIET.with(|q| q.set(false));
    r
}
