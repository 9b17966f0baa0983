//! Errors say what happened: an `IndexError` or an `AttributeError` in the
//! server is `Error::Index` or `Error::Attribute` in the client, and
//! anything else the server reports is `Error::Remote`.

use mp_manager::{Args, BaseManager, BaseProxy, Error, Served, SyncManager, no_such_method, reply};
use mp_testkit::guard;

#[test]
fn an_index_out_of_range_is_an_index_error() {
    let _g = guard();
    let m = SyncManager::start().unwrap();
    let l = m.list::<u32>().unwrap();
    l.extend([1, 2, 3]).unwrap();
    for e in [l.get(3).unwrap_err(), l.set(7, 0).unwrap_err()] {
        assert!(
            matches!(
                e,
                Error::Index {
                    what: "list",
                    index: 3 | 7,
                    len: 3
                }
            ),
            "{e:?}"
        );
    }
    let a = m.array(&[1i32, 2]).unwrap();
    let e = a.set(usize::MAX, 0).unwrap_err();
    assert!(
        matches!(
            e,
            Error::Index {
                what: "Array",
                index: usize::MAX,
                len: 2
            }
        ),
        "{e:?}"
    );
    // The proxies go on.
    assert_eq!(l.get(2).unwrap(), 3);
    assert_eq!(a.to_vec().unwrap(), [1, 2]);
    m.shutdown().unwrap();
}

#[test]
fn a_missing_attribute_is_an_attribute_error() {
    let _g = guard();
    let m = SyncManager::start().unwrap();
    let ns = m.namespace().unwrap();
    let e = ns.get::<u32>("missing").unwrap_err();
    match e {
        Error::Attribute { object, name } => {
            assert_eq!((object, name.as_str()), ("Namespace", "missing"))
        }
        e => panic!("{e:?}"),
    }
    ns.set("there", &1u32).unwrap();
    assert_eq!(ns.get::<u32>("there").unwrap(), 1);
    m.shutdown().unwrap();
}

/// A type whose methods fail with an `IndexError` and a `ValueError`.
#[derive(Default)]
struct Picky;

impl Served for Picky {
    fn call_method(&mut self, method: &str, args: Args<'_>) -> mp_manager::Result<Vec<u8>> {
        match method {
            "at" => Err(Error::Index {
                what: "list",
                index: args.decode::<usize>()?,
                len: 0,
            }),
            "invalid" => Err(Error::Invalid {
                what: "invalid",
                reason: "never valid".into(),
            }),
            "ok" => reply(&()),
            _ => Err(no_such_method("Picky", method)),
        }
    }
}

#[test]
fn a_registered_methods_index_error_keeps_its_kind_and_others_are_remote() {
    let _g = guard();
    let m = BaseManager::builder()
        .register("Picky", Picky::default)
        .start()
        .unwrap();
    let p: BaseProxy = m.create("Picky").unwrap();
    let e = p.call_method::<usize, ()>("at", &4).unwrap_err();
    assert!(
        matches!(
            e,
            Error::Index {
                what: "list",
                index: 4,
                len: 0
            }
        ),
        "{e:?}"
    );
    for method in ["invalid", "nope"] {
        let e = p.call_method::<(), ()>(method, &()).unwrap_err();
        assert!(
            matches!(&e, Error::Remote { message } if message.contains(method)),
            "{e:?}"
        );
    }
    p.call_method::<(), ()>("ok", &()).unwrap();
    m.shutdown().unwrap();
}
