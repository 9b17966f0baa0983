//! The same names on threads: every public method of an mp-proc type has a
//! twin of the same name on its mp-dummy type, and every free function of
//! mp-proc one in mp-dummy, except the few below that cannot exist on
//! threads. Read from the sources (std only): `impl` blocks, and the
//! `impl $ty` blocks of `macro_rules!` applied to each type by name. Every
//! file under `proc/src` and `dummy/src` is read, wherever it sits.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// The mp-proc types with a thread twin of the same name.
const TWINS: &[&str] = &[
    "Process",
    "Queue",
    "SimpleQueue",
    "JoinableQueue",
    "Lock",
    "RLock",
    "Semaphore",
    "BoundedSemaphore",
    "Condition",
    "Event",
    "Barrier",
    "Value",
    "Array",
    "AnyLock",
];

/// Methods that cannot exist on threads: `(type, method, why)`.
const NOT_ON_THREADS: &[(&str, &str, &str)] = &[
    // Threads share one process image: there is nothing to start them with.
    ("Process", "start_method", "how a process starts"),
    // A process's exit is a file descriptor to poll; a thread has none.
    ("Process", "sentinel", "a process's file descriptor"),
    // A thread runs in this process, on this host: no launcher starts it.
    ("Process", "launcher", "which host a process starts on"),
    ("Process", "set_launcher", "which host a process starts on"),
    ("Process", "get_launcher", "which host a process starts on"),
    // A thread's value is behind a Mutex (Rust's aliasing rules): there is
    // no unsynchronised view of it to hand out (CPython's dummy has none).
    (
        "Value",
        "get_obj",
        "an unsynchronised view of shared memory",
    ),
    (
        "Array",
        "get_obj",
        "an unsynchronised view of shared memory",
    ),
];

/// Free functions that cannot exist on threads: `(function, why)`.
const FREE_NOT_ON_THREADS: &[(&str, &str)] = &[
    ("exit", "ends a child process with a code"),
    ("init", "the bootstrap of a spawned process image"),
    (
        "spawn",
        "a process returning a value (std::thread::spawn on threads)",
    ),
    ("parent_process", "a thread has no parent process"),
    ("get_context", "start methods are for processes"),
    ("get_start_method", "start methods are for processes"),
    ("set_start_method", "start methods are for processes"),
    ("set_forkserver_preload", "start methods are for processes"),
    (
        "set_handshake",
        "the loom model's switch (--cfg loom builds only)",
    ),
];

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let mut entries: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .collect();
    entries.sort();
    for p in entries {
        if p.is_dir() {
            rust_files(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

/// `src` with comments removed and string and char literals blanked, so
/// that only code is left (byte offsets kept).
fn code_only(src: &str) -> Vec<u8> {
    let b = src.as_bytes();
    let mut out = b.to_vec();
    let mut i = 0;
    let blank = |out: &mut Vec<u8>, from: usize, to: usize| {
        for c in &mut out[from..to.min(b.len())] {
            if *c != b'\n' {
                *c = b' ';
            }
        }
    };
    while i < b.len() {
        match b[i] {
            b'/' if b.get(i + 1) == Some(&b'/') => {
                let end = b[i..]
                    .iter()
                    .position(|&c| c == b'\n')
                    .map_or(b.len(), |n| i + n);
                blank(&mut out, i, end);
                i = end;
            }
            b'/' if b.get(i + 1) == Some(&b'*') => {
                let end = src[i + 2..].find("*/").map_or(b.len(), |n| i + 2 + n + 2);
                blank(&mut out, i, end);
                i = end;
            }
            b'r' if (b.get(i + 1) == Some(&b'"') || b.get(i + 1) == Some(&b'#'))
                && (i == 0 || !(b[i - 1].is_ascii_alphanumeric() || b[i - 1] == b'_')) =>
            {
                let hashes = b[i + 1..].iter().take_while(|&&c| c == b'#').count();
                if b.get(i + 1 + hashes) != Some(&b'"') {
                    i += 1;
                    continue;
                }
                let close = format!("\"{}", "#".repeat(hashes));
                let start = i + 2 + hashes;
                let end = src[start..]
                    .find(&close)
                    .map_or(b.len(), |n| start + n + close.len());
                blank(&mut out, i, end);
                i = end;
            }
            b'"' => {
                let mut j = i + 1;
                while j < b.len() && b[j] != b'"' {
                    j += if b[j] == b'\\' { 2 } else { 1 };
                }
                blank(&mut out, i, j + 1);
                i = j + 1;
            }
            // A char literal ('x', '\n'), not a lifetime ('a).
            b'\'' if b.get(i + 1) == Some(&b'\\') || b.get(i + 2) == Some(&b'\'') => {
                let end = b[i + 1..]
                    .iter()
                    .enumerate()
                    .skip(1)
                    .find(|&(_, &c)| c == b'\'')
                    .map_or(b.len(), |(n, _)| i + 1 + n + 1);
                blank(&mut out, i, end);
                i = end;
            }
            _ => i += 1,
        }
    }
    out
}

fn is_ident(c: u8) -> bool {
    c.is_ascii_alphanumeric() || c == b'_'
}

/// Whether the word `w` starts at `i` (not inside a longer identifier).
fn word_at(s: &[u8], i: usize, w: &str) -> bool {
    s[i..].starts_with(w.as_bytes())
        && (i == 0 || !is_ident(s[i - 1]))
        && s.get(i + w.len()).is_none_or(|&c| !is_ident(c))
}

fn skip_ws(s: &[u8], mut i: usize) -> usize {
    while i < s.len() && s[i].is_ascii_whitespace() {
        i += 1;
    }
    i
}

/// The identifier (with a leading `$`) at `i`, and where it ends.
fn ident(s: &[u8], i: usize) -> (String, usize) {
    let mut j = i;
    if s.get(j) == Some(&b'$') {
        j += 1;
    }
    while j < s.len() && is_ident(s[j]) {
        j += 1;
    }
    (String::from_utf8_lossy(&s[i..j]).into_owned(), j)
}

/// The end (exclusive) of the bracketed group opening at `open`.
fn group_end(s: &[u8], open: usize) -> usize {
    let mut depth = 0usize;
    for (k, &c) in s.iter().enumerate().skip(open) {
        match c {
            b'{' | b'(' | b'[' => depth += 1,
            b'}' | b')' | b']' => {
                depth -= 1;
                if depth == 0 {
                    return k + 1;
                }
            }
            _ => {}
        }
    }
    s.len()
}

/// A `macro_rules!`: its range, the methods of its `impl $ty` blocks, and
/// its `pub fn`s outside any impl.
type Macro = (std::ops::Range<usize>, BTreeSet<String>, BTreeSet<String>);

/// An `impl` block: its type (`$ty` inside a macro) and its range.
struct Impl {
    ty: String,
    body: std::ops::Range<usize>,
}

/// The inherent `impl` blocks of `s` (trait impls are not public API of
/// their own).
fn impls(s: &[u8]) -> Vec<Impl> {
    let mut out = Vec::new();
    for i in 0..s.len() {
        if !word_at(s, i, "impl") {
            continue;
        }
        // An item, not `impl Trait` in a type: after `}`, `;`, `{`, `]`, `)`
        // (an attribute or a macro matcher), `unsafe`, or at the start.
        let before = s[..i].iter().rposition(|c| !c.is_ascii_whitespace());
        let item = match before {
            None => true,
            Some(p) => b"};{])>".contains(&s[p]) || (p >= 5 && word_at(s, p - 5, "unsafe")),
        };
        if !item {
            continue;
        }
        let mut j = skip_ws(s, i + 4);
        if s.get(j) == Some(&b'<') {
            let mut depth = 0;
            while j < s.len() {
                match s[j] {
                    b'<' => depth += 1,
                    b'>' => {
                        depth -= 1;
                        if depth == 0 {
                            j += 1;
                            break;
                        }
                    }
                    _ => {}
                }
                j += 1;
            }
        }
        let Some(open) = s[j..].iter().position(|&c| c == b'{' || c == b';') else {
            continue;
        };
        let open = j + open;
        if s[open] == b';' {
            continue;
        }
        let header = String::from_utf8_lossy(&s[j..open]).into_owned();
        if header.split_whitespace().any(|w| w == "for") {
            continue;
        }
        let path = header.trim().split('<').next().unwrap_or("").trim();
        let ty = path.rsplit("::").next().unwrap_or("").to_owned();
        out.push(Impl {
            ty,
            body: open..group_end(s, open),
        });
    }
    out
}

/// The names after `pub fn` (or `pub unsafe fn`) in `s[range]`, and the
/// macros it invokes.
fn fns_and_calls(s: &[u8], range: std::ops::Range<usize>) -> (BTreeSet<String>, BTreeSet<String>) {
    let (mut fns, mut calls) = (BTreeSet::new(), BTreeSet::new());
    let mut i = range.start;
    while i < range.end {
        if word_at(s, i, "pub") {
            let mut j = skip_ws(s, i + 3);
            if word_at(s, j, "unsafe") {
                j = skip_ws(s, j + 6);
            }
            if word_at(s, j, "fn") {
                fns.insert(ident(s, skip_ws(s, j + 2)).0);
            }
        } else if (i == 0 || !is_ident(s[i - 1]) && s[i - 1] != b'$') && is_ident(s[i]) {
            let (name, end) = ident(s, i);
            if s.get(end) == Some(&b'!') {
                calls.insert(name);
            }
            i = end;
            continue;
        }
        i += 1;
    }
    (fns, calls)
}

/// The public methods of each type in the files under `dir` (`skip`: a
/// folder left out), and the file-level `pub fn`s of `lib.rs`.
fn methods(dir: &Path, skip: Option<&str>) -> BTreeMap<String, BTreeSet<String>> {
    let mut files = Vec::new();
    rust_files(dir, &mut files);
    let mut by_type: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for file in files {
        if skip.is_some_and(|d| file.strip_prefix(dir).unwrap().starts_with(d)) {
            continue;
        }
        let s = code_only(&std::fs::read_to_string(&file).unwrap());
        // Each macro_rules!: its range, the methods of its `impl $ty`
        // blocks, and its `pub fn`s outside any impl (spliced into the
        // impl that invokes it).
        let mut macros: BTreeMap<String, Macro> = BTreeMap::new();
        for i in 0..s.len() {
            if word_at(&s, i, "macro_rules") {
                let (name, end) = ident(&s, skip_ws(&s, skip_ws(&s, i + 11) + 1));
                let open = skip_ws(&s, end);
                macros.insert(
                    name,
                    (open..group_end(&s, open), BTreeSet::new(), BTreeSet::new()),
                );
            }
        }
        let impls = impls(&s);
        for (range, in_impls, loose) in macros.values_mut() {
            let inside: Vec<&Impl> = impls
                .iter()
                .filter(|im| range.contains(&im.body.start))
                .collect();
            for im in &inside {
                in_impls.extend(fns_and_calls(&s, im.body.clone()).0);
            }
            let mut all = fns_and_calls(&s, range.clone()).0;
            for im in &inside {
                for f in fns_and_calls(&s, im.body.clone()).0 {
                    all.remove(&f);
                }
            }
            loose.extend(all);
        }
        let in_macro = |at: usize| macros.values().any(|(r, ..)| r.contains(&at));
        for im in impls.iter().filter(|im| !in_macro(im.body.start)) {
            let (fns, calls) = fns_and_calls(&s, im.body.clone());
            let entry = by_type.entry(im.ty.clone()).or_default();
            entry.extend(fns);
            for c in calls {
                if let Some((_, _, loose)) = macros.get(&c) {
                    entry.extend(loose.iter().cloned());
                }
            }
        }
        // `m!(Type, ...)` outside macros and impls: Type gets m's methods.
        for (name, (_, in_impls, _)) in &macros {
            if in_impls.is_empty() {
                continue;
            }
            let call = format!("{name}!");
            for i in 0..s.len() {
                if !word_at(&s, i, name) || !s[i..].starts_with(call.as_bytes()) || in_macro(i) {
                    continue;
                }
                let mut j = skip_ws(&s, i + call.len());
                if !b"({[".contains(&s[j]) {
                    continue;
                }
                j = skip_ws(&s, j + 1);
                // Attributes (`#[doc = ...]`) before the type's name.
                while s.get(j) == Some(&b'#') {
                    j = skip_ws(&s, group_end(&s, skip_ws(&s, j + 1)));
                }
                let ty = ident(&s, j).0;
                by_type
                    .entry(ty)
                    .or_default()
                    .extend(in_impls.iter().cloned());
            }
        }
    }
    by_type
}

/// The free functions a crate's `lib.rs` exports: `pub use` items in lower
/// case and its own `pub fn`s.
fn free_functions(lib: &Path) -> BTreeSet<String> {
    let s = code_only(&std::fs::read_to_string(lib).unwrap());
    let text = String::from_utf8_lossy(&s).into_owned();
    let mut out = BTreeSet::new();
    // `pub use` at the top level only (not inside `pub mod codec { .. }`).
    // Braces of a block (true) or of a `use a::{b, c}` group (false).
    let mut open: Vec<bool> = Vec::new();
    let mut at = 0;
    let mut statements = Vec::new();
    for (i, c) in text.char_indices() {
        let depth = open.iter().filter(|&&block| block).count();
        match c {
            '{' => open.push(!text[..i].trim_end().ends_with("::")),
            '}' => {
                // A block ending at the top level ends an item (`pub mod m { .. }`).
                let block = open.pop() == Some(true);
                at = if block && depth == 1 { i + 1 } else { at };
            }
            ';' if depth == 0 => {
                statements.push(&text[at..i]);
                at = i + 1;
            }
            _ => {}
        }
    }
    for stmt in statements {
        let stmt = stmt.trim();
        let Some(at) = stmt.find("pub use ") else {
            continue;
        };
        let items = &stmt[at + 8..];
        let items = match items.find('{') {
            Some(b) => items[b + 1..].trim_end_matches('}').to_owned(),
            None => items.rsplit("::").next().unwrap_or("").to_owned(),
        };
        for item in items.split(',') {
            let name = item.split(" as ").last().unwrap_or("").trim();
            if name.starts_with(|c: char| c.is_ascii_lowercase()) {
                out.insert(name.to_owned());
            }
        }
    }
    let top_level = impls(&s);
    let (fns, _) = fns_and_calls(&s, 0..s.len());
    for f in fns {
        let inside = top_level.iter().any(|im| {
            let t = String::from_utf8_lossy(&s[im.body.clone()]).into_owned();
            t.contains(&format!("fn {f}"))
        });
        if !inside {
            out.insert(f);
        }
    }
    out
}

fn crate_dir(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join(name)
}

#[test]
fn every_mp_proc_method_has_a_thread_twin() {
    // The sources are read under the guard: another test's check of leaked
    // descriptors must not see this test's open files (it once did).
    let _g = mp_testkit::guard();
    // `local/` holds the in-process primitives both backends build on, with
    // the same type names but an owner and a `Wait` in every call.
    let procs = methods(&crate_dir("proc").join("src"), Some("local"));
    let dummies = methods(&crate_dir("dummy").join("src"), None);
    let mut missing = Vec::new();
    for ty in TWINS {
        let theirs = procs
            .get(*ty)
            .unwrap_or_else(|| panic!("no `impl {ty}` in proc/src"));
        let ours = dummies.get(*ty).cloned().unwrap_or_default();
        for m in theirs {
            let allowed = NOT_ON_THREADS.iter().any(|(t, n, _)| t == ty && n == m);
            if !ours.contains(m) && !allowed {
                missing.push(format!("{ty}::{m}"));
            }
        }
    }
    assert!(
        missing.is_empty(),
        "mp-dummy lacks the thread twins of: {missing:?}"
    );
    // The list of exceptions does not rot.
    for (ty, m, why) in NOT_ON_THREADS {
        assert!(
            procs[*ty].contains(*m),
            "mp-proc no longer has {ty}::{m} ({why})"
        );
        assert!(
            !dummies.get(*ty).is_some_and(|d| d.contains(*m)),
            "mp-dummy now has {ty}::{m}"
        );
    }
}

#[test]
fn every_mp_proc_function_has_a_thread_twin() {
    // The sources are read under the guard: another test's check of leaked
    // descriptors must not see this test's open files.
    let _g = mp_testkit::guard();
    let procs = free_functions(&crate_dir("proc").join("src/lib.rs"));
    let dummies = free_functions(&crate_dir("dummy").join("src/lib.rs"));
    assert!(
        procs.contains("pipe") && procs.contains("current_process"),
        "{procs:?}"
    );
    let missing: Vec<&String> = procs
        .iter()
        .filter(|f| !dummies.contains(*f) && !FREE_NOT_ON_THREADS.iter().any(|(n, _)| n == f))
        .collect();
    assert!(
        missing.is_empty(),
        "mp-dummy lacks the thread twins of: {missing:?}"
    );
    for (f, why) in FREE_NOT_ON_THREADS {
        assert!(procs.contains(*f), "mp-proc no longer has {f} ({why})");
        assert!(!dummies.contains(*f), "mp-dummy now has {f}");
    }
}

/// The scanner itself: what it reads from a file of each shape it meets.
#[test]
fn the_scanner_reads_impls_and_macros() {
    // Its files are written and read under the guard (see above).
    let _g = mp_testkit::guard();
    let dir = std::env::temp_dir().join(format!("mp-names-{}", std::process::id()));
    std::fs::create_dir_all(dir.join("deep/er")).unwrap();
    std::fs::write(
        dir.join("deep/er/a.rs"),
        r#"
        // pub fn in_a_comment() {}
        macro_rules! made { ($ty:ident, $what:literal) => {
            impl $ty { pub fn from_macro(&self) -> impl Fn() { || () } }
        }; }
        macro_rules! spliced { () => { pub fn spliced_in() {} }; }
        made!(
            /// Docs before the name.
            A, "A"
        );
        pub struct A; pub struct B<T>(T);
        impl A { pub fn plain(&self, x: impl Into<String>) -> &'static str { let _ = x; "pub fn not_this() {}" } fn private() {} }
        impl<T: Clone> B<T> { spliced!(); pub(crate) fn hidden() {} }
        impl std::fmt::Debug for A { fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result { Ok(()) } }
        "#,
    )
    .unwrap();
    let m = methods(&dir, None);
    std::fs::remove_dir_all(&dir).unwrap();
    let names = |t: &str| m.get(t).map(|s| s.iter().cloned().collect::<Vec<_>>());
    assert_eq!(names("A"), Some(vec!["from_macro".into(), "plain".into()]));
    assert_eq!(names("B"), Some(vec!["spliced_in".into()]));
}

/// mp-manager's proxies with a thread twin in mp-dummy's `Manager`:
/// `(proxy types, twin)` (a `ListProxy` has its `ArrayProxy`'s methods too).
const MANAGER_TWINS: &[(&[&str], &str)] = &[
    (&["SyncManager"], "Manager"),
    (&["ListProxy", "ArrayProxy"], "List"),
    (&["DictProxy"], "Dict"),
    (&["NamespaceProxy"], "Namespace"),
    (&["SetProxy"], "Set"),
    (&["QueueProxy"], "Queue"),
    (&["QueueProxy", "JoinableQueueProxy"], "JoinableQueue"),
];

/// Manager methods that cannot exist on threads: `(type, method, why)`.
const NOT_IN_THE_THREAD_MANAGER: &[(&str, &str, &str)] = &[
    ("SyncManager", "start", "starts a server process"),
    ("SyncManager", "start_with", "starts a server process"),
    ("SyncManager", "connect", "connects to a server process"),
    ("SyncManager", "address", "a server process's address"),
    ("SyncManager", "shutdown", "stops a server process"),
    (
        "SyncManager",
        "builder",
        "the options of a server process (its start method, an initializer run in it); mp-dummy's Manager has no builder",
    ),
    (
        "SyncManager",
        "number_of_objects",
        "the objects a server process holds",
    ),
    (
        "SyncManager",
        "pool_with",
        "chooses the start method of a process pool's workers",
    ),
];

#[test]
fn every_manager_proxy_method_has_a_thread_twin() {
    // The sources are read under the guard: another test's check of leaked
    // descriptors must not see this test's open files.
    let _g = mp_testkit::guard();
    let proxies = methods(&crate_dir("manager").join("src"), None);
    let dummies = methods(&crate_dir("dummy").join("src"), None);
    let mut missing = Vec::new();
    for (theirs, ours) in MANAGER_TWINS {
        let twin = dummies.get(*ours).cloned().unwrap_or_default();
        for ty in *theirs {
            let names = proxies
                .get(*ty)
                .unwrap_or_else(|| panic!("no `impl {ty}` in manager/src"));
            for m in names {
                let allowed = NOT_IN_THE_THREAD_MANAGER
                    .iter()
                    .any(|(t, n, _)| t == ty && n == m);
                if !twin.contains(m) && !allowed {
                    missing.push(format!("{ty}::{m} (as {ours}::{m})"));
                }
            }
        }
    }
    assert!(
        missing.is_empty(),
        "mp-dummy lacks the thread twins of: {missing:?}"
    );
    for (ty, m, why) in NOT_IN_THE_THREAD_MANAGER {
        assert!(
            proxies[*ty].contains(*m),
            "mp-manager no longer has {ty}::{m} ({why})"
        );
    }
}
