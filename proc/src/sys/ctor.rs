//! Code that runs before `main`: an entry in the executable's `.init_array`,
//! which the C runtime calls before `main` (and the dynamic loader calls for
//! a shared object when it loads it).

/// Declares `static $name`, an `.init_array` entry that calls `$f` (an
/// `fn()`) before `main`. The layer above names its own function; this
/// module names nothing above it.
///
/// `$f` runs while the process has one thread (unless another constructor
/// started one), before `main` and before the Rust runtime's own set-up of
/// `main`'s thread: it must not panic (an `extern "C"` frame aborts the
/// process on a panic) and should do little besides reading the environment
/// and descriptors.
macro_rules! before_main {
    ($(#[$meta:meta])* static $name:ident = $f:path;) => {
        $(#[$meta])*
        #[used]
        #[allow(unsafe_code)]
        // SAFETY: the C runtime calls each `.init_array` entry once, before
        // `main`, as `fn(argc, argv, envp)`; an `extern "C" fn()` ignores
        // those arguments, which the C calling convention allows. The entry
        // is a plain function pointer, so nothing depends on the invoker.
        #[unsafe(link_section = ".init_array")]
        static $name: extern "C" fn() = {
            extern "C" fn constructor() {
                $f()
            }
            constructor
        };
    };
}

pub(crate) use before_main;
