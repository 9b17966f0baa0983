//! The conformance suite (`mp_proc::conformance`), once per start method.

mod fork {
    mp_proc::conformance_tests!(
        mp_proc::get_context(mp_proc::StartMethod::Fork),
        crate::util::guard()
    );
}

mod spawn {
    mp_proc::conformance_tests!(
        mp_proc::get_context(mp_proc::StartMethod::Spawn),
        crate::util::guard()
    );
}

mod forkserver {
    mp_proc::conformance_tests!(
        mp_proc::get_context(mp_proc::StartMethod::Forkserver),
        crate::util::guard()
    );
}
