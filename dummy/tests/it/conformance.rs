//! The conformance suites of mp-proc (lifecycle, queues, primitives) and
//! mp-pool, on threads; mp-proc and mp-pool run them for fork, spawn and
//! forkserver.

mod threads {
    mp_proc::conformance_tests!(mp_dummy::ThreadContext, mp_testkit::guard());
    mp_pool::pool_conformance_tests!(mp_dummy::ThreadContext, mp_testkit::guard());
}
