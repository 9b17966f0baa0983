//! The conformance suite (`mp_conformance::proc`), once per start method.

mod fork {
    mp_conformance::conformance_tests!(
        mp_proc::get_context(mp_proc::StartMethod::Fork),
        mp_testkit::guard()
    );
}

mod spawn {
    mp_conformance::conformance_tests!(
        mp_proc::get_context(mp_proc::StartMethod::Spawn),
        mp_testkit::guard()
    );
}

mod forkserver {
    mp_conformance::conformance_tests!(
        mp_proc::get_context(mp_proc::StartMethod::Forkserver),
        mp_testkit::guard()
    );
}
