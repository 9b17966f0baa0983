//! The pool conformance suite (`mp_conformance::pool`), once per start
//! method; mp-dummy runs it on threads.

mod fork {
    mp_conformance::pool_conformance_tests!(
        mp_proc::get_context(mp_proc::StartMethod::Fork),
        mp_testkit::guard()
    );
}

mod spawn {
    mp_conformance::pool_conformance_tests!(
        mp_proc::get_context(mp_proc::StartMethod::Spawn),
        mp_testkit::guard()
    );
}

mod forkserver {
    mp_conformance::pool_conformance_tests!(
        mp_proc::get_context(mp_proc::StartMethod::Forkserver),
        mp_testkit::guard()
    );
}
