//! A manager's pool against hostile requests (raw, past the proxy): a
//! forged function reference, items that do not decode, another session's
//! or an unknown result, a pool too large; each is an error, and the
//! server and the pool go on.

use super::tests::{call, start};
use std::time::Duration;

use super::*;
use crate::kinds::pool::{Answer, Fault, MAX_PROCESSES, Op};

fn sqr(x: u64) -> u64 {
    x * x
}

fn answer(r: Reply) -> Answer {
    match r {
        Reply::Value(b) => mp_proc::codec::decode(&b).unwrap(),
        r => panic!("{r:?}"),
    }
}

fn submit(func: &[u8], items: Vec<Bytes>, wait: bool) -> Op {
    Op::Submit {
        func: Bytes::from(func.to_vec()),
        items,
        chunksize: None,
        wait,
    }
}

fn enc(v: u64) -> Bytes {
    Bytes::from(mp_proc::codec::encode(&v).unwrap())
}

#[test]
fn forged_functions_bad_items_and_foreign_results_are_errors_and_the_pool_goes_on() {
    let _g = mp_testkit::guard();
    let s = start();
    let (a, _) = s.session();
    let (b, _) = s.session();
    let kind = Kind::Pool {
        processes: Some(1),
        method: None,
    };
    let Reply::Id(pool) = call(&a, &Request::Create(kind)) else {
        panic!("no pool")
    };
    let func = mp_proc::codec::encode(&mp_proc::Function::new(sqr).erased()).unwrap();
    let pool_call = |c: &Connection, op| call(c, &Request::Pool(pool, op));

    // A forged (changed) function reference: refused, with why.
    let mut forged = func.clone();
    let last = forged.len() - 1;
    forged[last] ^= 1;
    match answer(pool_call(&a, submit(&forged, vec![enc(3)], true))) {
        Err(Fault::InvalidArgument(m)) => assert!(m.contains("process tree"), "{m}"),
        other => panic!("{other:?}"),
    }
    // Garbage as a function: the same.
    assert!(matches!(
        answer(pool_call(&a, submit(b"junk", vec![], false))),
        Err(Fault::InvalidArgument(_))
    ));
    // Items that do not decode as the function's argument: that item's
    // error; the worker goes on.
    let items = vec![Bytes::from(vec![0xff; 11]), enc(4)];
    match answer(pool_call(&a, submit(&func, items, true))) {
        Ok(outcomes) => {
            assert!(
                matches!(outcomes[0], Err(Fault::Encoding(_))),
                "{outcomes:?}"
            );
            assert!(matches!(&outcomes[1], Ok(b) if b[..] == enc(16)[..]));
        }
        other => panic!("{other:?}"),
    }
    // Unknown results, and another session's: errors, nothing taken.
    let Reply::Id(job) = pool_call(&a, submit(&func, vec![enc(5)], false)) else {
        panic!("not submitted")
    };
    for (c, j) in [(&a, job + 100), (&b, job)] {
        let get = Op::Get {
            job: j,
            wait: Some(Duration::MAX),
            take: true,
        };
        assert!(matches!(
            answer(pool_call(c, get)),
            Err(Fault::InvalidArgument(_))
        ));
        assert!(matches!(pool_call(c, Op::Forget(j)), Reply::Ok));
    }
    let get = Op::Get {
        job,
        wait: Some(Duration::MAX),
        take: true,
    };
    assert!(matches!(&answer(pool_call(&a, get)).unwrap()[..], [Ok(b)] if b[..] == enc(25)[..]));
    // A pool op on an object of another kind, and a pool too large.
    let Reply::Id(dict) = call(&a, &Request::Create(Kind::Dict)) else {
        panic!("no dict")
    };
    assert!(matches!(
        call(&a, &Request::Pool(dict, Op::Processes)),
        Reply::Fail(_)
    ));
    let huge = Kind::Pool {
        processes: Some(MAX_PROCESSES as u64 + 1),
        method: None,
    };
    let Reply::Id(big) = call(&a, &Request::Create(huge)) else {
        panic!("no object")
    };
    assert!(matches!(
        answer(call(&a, &Request::Pool(big, Op::Processes))),
        Err(Fault::InvalidArgument(_))
    ));
    // The server and the pool go on.
    assert!(matches!(call(&b, &Request::Ping), Reply::Ok));
    assert!(matches!(pool_call(&b, Op::Processes), Reply::Count(1)));
    drop((a, b));
    s.stop();
}
