//! The conformance suite (`mp_proc::conformance`), once per start method.

mod fork {
    mp_proc::conformance_tests!(
        mp_proc::get_context(mp_proc::StartMethod::Fork),
        mp_testkit::guard()
    );
}

mod spawn {
    mp_proc::conformance_tests!(
        mp_proc::get_context(mp_proc::StartMethod::Spawn),
        mp_testkit::guard()
    );
}

mod forkserver {
    mp_proc::conformance_tests!(
        mp_proc::get_context(mp_proc::StartMethod::Forkserver),
        mp_testkit::guard()
    );
}
