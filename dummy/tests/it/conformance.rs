//! The conformance suites of mp-proc (lifecycle, queues, primitives) and
//! mp-pool, on threads; mp-proc and mp-pool run them for fork, spawn and
//! forkserver.

mod threads {
    mp_conformance::conformance_tests!(mp_dummy::ThreadContext, mp_testkit::guard());
    mp_conformance::pool_conformance_tests!(mp_dummy::ThreadContext, mp_testkit::guard());
}
