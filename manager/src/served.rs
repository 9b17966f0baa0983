//! User types served by a manager (CPython's `BaseManager.register`).

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::Result;
use crate::protocol::Bytes;

/// A type whose objects live in a manager's server and are used from other
/// processes through a [`BaseProxy`](crate::BaseProxy) (CPython's
/// `BaseManager.register(typeid, callable)` with its exposed methods).
///
/// `call_method` runs the method named `method` with its encoded
/// arguments and returns its encoded result; each call holds the object's
/// lock, so methods of one object never run at once. A method that panics
/// fails that call only. An unknown method should return
/// [`no_such_method`].
///
/// ```
/// use mp_manager::{Args, Served, no_such_method, reply};
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
///             "get" => reply(&self.0),
///             _ => Err(no_such_method("Counter", method)),
///         }
///     }
/// }
/// ```
pub trait Served: Send + 'static {
    /// Runs `method` (see the trait's documentation).
    fn call_method(&mut self, method: &str, args: Args<'_>) -> Result<Vec<u8>>;
}

/// The encoded arguments of a call to a [`Served`] object.
#[derive(Debug, Clone, Copy)]
pub struct Args<'a>(&'a [u8]);

impl<'a> Args<'a> {
    pub(crate) fn new(bytes: &'a [u8]) -> Args<'a> {
        Args(bytes)
    }

    /// The arguments as an `A` (a tuple for several).
    pub fn decode<A: DeserializeOwned>(&self) -> Result<A> {
        mp_proc::codec::decode(self.0)
    }

    /// The encoded bytes.
    pub fn bytes(&self) -> &'a [u8] {
        self.0
    }
}

/// Encodes a method's result, for [`Served::call_method`] to return.
pub fn reply<R: Serialize + ?Sized>(r: &R) -> Result<Vec<u8>> {
    mp_proc::codec::encode(r)
}

/// The error for a method a type does not have (Python's
/// `AttributeError`, which CPython's manager reports as "method ... of
/// ... object is not in exposed").
pub fn no_such_method(type_name: &str, method: &str) -> crate::Error {
    crate::link::remote(format!(
        "method {method:?} of {type_name:?} object is not exposed"
    ))
}

/// Makes an object of a registered type from its encoded factory.
pub(crate) type Maker = fn(Bytes) -> Result<Box<dyn Served>>;

/// A registered type id, as it travels to the server process.
#[derive(serde::Serialize, serde::Deserialize)]
pub(crate) struct Registration {
    pub(crate) typeid: String,
    pub(crate) what: What,
    /// One object for every client (CPython's `callable=lambda: obj`).
    pub(crate) shared: bool,
    /// Checks the factory of a user type (in the process that registered it).
    #[serde(skip)]
    pub(crate) check_factory: Option<FactoryCheck>,
}

#[derive(serde::Serialize, serde::Deserialize)]
pub(crate) enum What {
    /// A user type: a monomorphized maker and the user's `fn() -> T`.
    Served {
        make: mp_proc::FnPointer<Maker>,
        factory: Bytes,
    },
    /// A built-in kind.
    Builtin(crate::protocol::Kind),
}

impl Registration {
    pub(crate) fn of<T: Served>(typeid: &str, factory: fn() -> T, shared: bool) -> Result<Self> {
        Ok(Registration {
            typeid: typeid.to_owned(),
            what: What::Served {
                make: mp_proc::FnPointer::new(make::<T> as Maker),
                factory: Bytes::from(mp_proc::codec::encode(&mp_proc::FnPointer::new(factory))?),
            },
            shared,
            check_factory: Some(check_factory::<T>),
        })
    }

    /// Checks that a server started with `method` can call the factory.
    pub(crate) fn check(&self, method: mp_proc::StartMethod) -> Result<()> {
        if let What::Served { make, factory } = &self.what {
            make.check(method, &self.typeid)?;
            if let Some(check) = self.check_factory {
                check(factory, method, &self.typeid)?;
            }
        }
        Ok(())
    }
}

/// What checks a registered factory: `(encoded factory, method, typeid)`.
pub(crate) type FactoryCheck = fn(&[u8], mp_proc::StartMethod, &str) -> Result<()>;

/// Checks that a server started with `method` can call the factory of `T`
/// (decoded as the type it was made as).
fn check_factory<T: Served>(
    factory: &[u8],
    method: mp_proc::StartMethod,
    typeid: &str,
) -> Result<()> {
    let f: mp_proc::FnPointer<fn() -> T> = mp_proc::codec::decode(factory)?;
    f.check(method, typeid)
}

fn make<T: Served>(factory: Bytes) -> Result<Box<dyn Served>> {
    let f: mp_proc::FnPointer<fn() -> T> = mp_proc::codec::decode(&factory)?;
    Ok(Box::new(f.get()?()))
}
