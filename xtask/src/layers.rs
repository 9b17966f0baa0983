//! The layer check (`cargo xtask layers`, a step of `cargo xtask test`): a
//! crate's modules sit in layers, each importing only from its own layer and
//! the ones below, and no two modules import each other, directly or round
//! a longer loop.
//!
//! It reads the sources (standard library only, no parser crate): every
//! `crate::` and `super::` path outside comments, string literals and
//! items under `#[cfg(test)]` or `#[cfg(loom)]` (tests and the loom model
//! may reach anything; so may files named `tests.rs`), `use` groups
//! included. A name that `lib.rs` re-exports (`crate::Payload`) counts as the
//! module it comes from. The unit of the loop check is a top-level module of
//! the crate (`process`, `connection`), or, in a layer that is one folder
//! (`rt/`), each module of that folder (`rt::runtime`, `rt::start`).
//!
//! For another crate, add a [`Crate`] to [`CRATES`]: its layers, lowest
//! first, then the edges it allows upwards, each with its reason.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::fmt::Write as _;
use std::path::Path;

/// One crate's layers.
pub(crate) struct Crate {
    /// The crate's `src` folder, from the workspace root.
    pub(crate) src: &'static str,
    /// Lowest first. A layer lists the top-level modules of the crate in it;
    /// `"*"` stands for every module no layer names (the top layer).
    pub(crate) layers: &'static [Layer],
    /// Edges allowed upwards: a module of `from` (a module path, `rt::child`)
    /// may import `to`. Each must still be used, none may close a loop, and
    /// `to` itself may import only from layers below `from`'s.
    pub(crate) exceptions: &'static [Exception],
}

/// A layer: its name (for messages) and its top-level modules.
pub(crate) struct Layer {
    pub(crate) name: &'static str,
    pub(crate) modules: &'static [&'static str],
}

/// An import allowed against the layers, and why.
pub(crate) struct Exception {
    pub(crate) from: &'static str,
    pub(crate) to: &'static str,
    pub(crate) why: &'static str,
}

/// The workspace's crates and their layers.
pub(crate) const CRATES: &[Crate] = &[
    Crate {
        src: "proc/src",
        layers: &[
            Layer {
                name: "the OS (sys/)",
                modules: &["sys"],
            },
            Layer {
                name: "the leaves (errors, start methods, mutex, spin)",
                modules: &["error", "method", "mutex", "spin"],
            },
            Layer {
                name: "the in-process primitives (local/, std only)",
                modules: &["local"],
            },
            Layer {
                name: "the wire (wire/)",
                modules: &["wire"],
            },
            Layer {
                name: "the runtime (rt/)",
                modules: &["rt"],
            },
            Layer {
                name: "the user API",
                modules: &["*"],
            },
        ],
        exceptions: &[],
    },
    Crate {
        src: "pool/src",
        layers: &[
            Layer {
                name: "the OS, errors and buffers",
                modules: &["sys", "error", "spare"],
            },
            Layer {
                name: "the wire, the job table, the workers' shared progress and the pool's limits",
                modules: &["codec", "job", "decode", "progress", "limits"],
            },
            Layer {
                name: "the workers' side",
                modules: &["worker", "local"],
            },
            Layer {
                name: "the transports",
                modules: &["scheduler", "transport"],
            },
            Layer {
                name: "the core",
                modules: &["core"],
            },
            Layer {
                name: "results",
                modules: &["result", "future", "imap"],
            },
            Layer {
                name: "the user API",
                modules: &["*"],
            },
        ],
        exceptions: &[],
    },
];

/// Checks every crate of [`CRATES`]; the error lists every violation.
pub(crate) fn check_all(root: &Path) -> Result<(), String> {
    let mut problems = String::new();
    for krate in CRATES {
        if let Err(e) = check(&root.join(krate.src), krate) {
            problems.push_str(&e);
        }
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(format!("layer check failed:\n{problems}"))
    }
}

/// A module path, from the crate root (`["rt", "start"]`).
type ModPath = Vec<String>;

/// Where an import is: file and line.
#[derive(Clone)]
struct At {
    file: String,
    line: usize,
}

/// Checks one crate whose sources are in `src`.
pub(crate) fn check(src: &Path, krate: &Crate) -> Result<(), String> {
    let mut files = Vec::new();
    rust_files(src, src, &mut files).map_err(|e| format!("{}: {e}\n", src.display()))?;
    let lib = std::fs::read_to_string(src.join("lib.rs"))
        .map_err(|e| format!("{}/lib.rs: {e}\n", src.display()))?;
    let lib = strip(&lib);
    let roots = root_modules(&lib);
    let reexports = reexports(&lib);
    let resolver = Resolver {
        src,
        krate,
        roots: &roots,
        reexports: &reexports,
    };

    let mut problems = String::new();
    let mut edges: BTreeMap<(String, String), At> = BTreeMap::new();
    let mut used = vec![false; krate.exceptions.len()];
    let mut layer_of: BTreeMap<String, usize> = BTreeMap::new();
    for (rel, module) in &files {
        if module.is_empty() || module.iter().any(|m| m == "tests") {
            continue; // lib.rs is the front door; test files may reach anything
        }
        let text = std::fs::read_to_string(src.join(rel)).map_err(|e| format!("{rel}: {e}\n"))?;
        let from = resolver.unit(module);
        let from_layer = resolver.layer(module);
        for (path, line) in references(&strip(&text), module) {
            let at = At {
                file: format!("{}/{rel}", krate.src),
                line,
            };
            let Some(target) = resolver.resolve(&path) else {
                if from_layer + 1 < krate.layers.len() {
                    let _ = writeln!(
                        problems,
                        "  {}:{}: `crate::{}` names no module this check knows; name the module \
                         it lives in",
                        at.file,
                        at.line,
                        path.join("::")
                    );
                }
                continue;
            };
            let to = resolver.unit(&target);
            if to == from {
                continue;
            }
            let to_layer = resolver.layer(&target);
            let (from_name, to_name) = (from.join("::"), to.join("::"));
            if to_layer > from_layer {
                let allowed = krate
                    .exceptions
                    .iter()
                    .position(|e| within(&from_name, e.from) && within(&target.join("::"), e.to));
                match allowed {
                    Some(i) => used[i] = true,
                    None => {
                        let _ = writeln!(
                            problems,
                            "  {}:{}: {from_name} ({}) imports {} ({}): a layer imports only \
                             from itself and below",
                            at.file,
                            at.line,
                            krate.layers[from_layer].name,
                            target.join("::"),
                            krate.layers[to_layer].name,
                        );
                        continue;
                    }
                }
            }
            layer_of.insert(from_name.clone(), from_layer);
            layer_of.insert(to_name.clone(), to_layer);
            edges.entry((from_name, to_name)).or_insert(at);
        }
    }
    // What an exception lets a module reach must itself stay below that
    // module's layer: else the exception would carry a whole layer upwards.
    for e in krate.exceptions {
        let from_layer = resolver.layer(&e.from.split("::").map(String::from).collect::<Vec<_>>());
        for ((a, b), at) in &edges {
            if within(a, e.to) && layer_of[b] >= from_layer {
                let _ = writeln!(
                    problems,
                    "  {}:{}: {a} imports {b}, not below {} ({}): the exception {} -> {} holds \
                     only while {} imports nothing from there up",
                    at.file, at.line, e.from, krate.layers[from_layer].name, e.from, e.to, e.to,
                );
            }
        }
    }
    for (e, used) in krate.exceptions.iter().zip(used) {
        if !used {
            let _ = writeln!(
                problems,
                "  the exception {} -> {} ({}) is used by no import any more: remove it",
                e.from, e.to, e.why
            );
        }
    }
    problems.push_str(&loops(&edges));
    if problems.is_empty() {
        Ok(())
    } else {
        Err(format!("{}:\n{problems}", krate.src))
    }
}

/// Whether module path `path` is `prefix` or inside it.
fn within(path: &str, prefix: &str) -> bool {
    path == prefix || path.starts_with(&format!("{prefix}::"))
}

/// Every loop of imports between units, each once, with where each of its
/// imports is.
fn loops(edges: &BTreeMap<(String, String), At>) -> String {
    let mut next: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for (from, to) in edges.keys() {
        next.entry(from).or_default().push(to);
    }
    let mut seen: BTreeSet<BTreeSet<&str>> = BTreeSet::new();
    let mut out = String::new();
    for (from, to) in edges.keys() {
        // The shortest way back from `to` to `from`, if any.
        let mut parent: BTreeMap<&str, &str> = BTreeMap::new();
        let mut queue = VecDeque::from([to.as_str()]);
        let mut found = to == from;
        while let Some(n) = queue.pop_front() {
            if n == from {
                found = true;
                break;
            }
            for &m in next.get(n).into_iter().flatten() {
                if m != to && !parent.contains_key(m) {
                    parent.insert(m, n);
                    queue.push_back(m);
                }
            }
        }
        if !found {
            continue;
        }
        let mut cycle = vec![from.as_str()];
        let mut n = from.as_str();
        while n != to {
            n = parent[n];
            cycle.push(n);
        }
        cycle.reverse(); // to ... from
        cycle.insert(0, from);
        cycle.pop(); // from, to, ..., (back to from)
        if !seen.insert(cycle.iter().copied().collect()) {
            continue;
        }
        let _ = writeln!(
            out,
            "  a loop of imports: {} -> {}",
            cycle.join(" -> "),
            from
        );
        for (i, a) in cycle.iter().enumerate() {
            let b = cycle.get(i + 1).copied().unwrap_or(from.as_str());
            let at = &edges[&(a.to_string(), b.to_string())];
            let _ = writeln!(out, "    {}:{}: {a} imports {b}", at.file, at.line);
        }
    }
    out
}

struct Resolver<'a> {
    src: &'a Path,
    krate: &'a Crate,
    roots: &'a BTreeSet<String>,
    reexports: &'a BTreeMap<String, ModPath>,
}

impl Resolver<'_> {
    /// The layer of a module path (the root, `lib.rs`, is the top).
    fn layer(&self, module: &[String]) -> usize {
        let top = self.krate.layers.len() - 1;
        let Some(first) = module.first() else {
            return top;
        };
        let named = self
            .krate
            .layers
            .iter()
            .position(|l| l.modules.contains(&first.as_str()));
        named
            .or_else(|| self.krate.layers.iter().position(|l| l.modules == ["*"]))
            .unwrap_or(top)
    }

    /// The unit of the loop check that a module path belongs to.
    fn unit(&self, module: &[String]) -> ModPath {
        let layer = &self.krate.layers[self.layer(module)];
        let one_folder = layer.modules.len() == 1 && layer.modules != ["*"];
        module[..module.len().min(if one_folder { 2 } else { 1 })].to_vec()
    }

    /// The module a path from the crate root points into (the deepest
    /// prefix that is a module file), or `None` for a name that is neither a
    /// module nor a re-export of `lib.rs`.
    fn resolve(&self, path: &[String]) -> Option<ModPath> {
        let first = path.first()?;
        let path: ModPath = if self.roots.contains(first) {
            path.to_vec()
        } else {
            let mut p = self.reexports.get(first)?.clone();
            p.extend_from_slice(&path[1..]);
            p
        };
        let mut module = vec![path[0].clone()];
        for seg in &path[1..] {
            let dir = module.join("/");
            let file = self.src.join(format!("{dir}/{seg}.rs"));
            let folder = self.src.join(format!("{dir}/{seg}/mod.rs"));
            if !(file.is_file() || folder.is_file()) {
                break;
            }
            module.push(seg.clone());
        }
        Some(module)
    }
}

/// Every `.rs` file under `dir`, as (path from `src`, module path).
fn rust_files(src: &Path, dir: &Path, out: &mut Vec<(String, ModPath)>) -> std::io::Result<()> {
    let mut entries: Vec<_> = std::fs::read_dir(dir)?.collect::<Result<_, _>>()?;
    entries.sort_by_key(|e| e.path());
    for entry in entries {
        let path = entry.path();
        if path.is_dir() {
            rust_files(src, &path, out)?;
        } else if path.extension().is_some_and(|e| e == "rs") {
            let rel = path.strip_prefix(src).expect("under src");
            let mut module: ModPath = rel
                .with_extension("")
                .iter()
                .map(|s| s.to_string_lossy().into_owned())
                .collect();
            if matches!(
                module.last().map(String::as_str),
                Some("mod" | "lib" | "main")
            ) {
                module.pop();
            }
            out.push((rel.to_string_lossy().into_owned(), module));
        }
    }
    Ok(())
}

/// The source without comments, without the contents of string and char
/// literals, and without `#[cfg(test)]` modules; lines are kept (blanked),
/// so that line numbers still hold.
fn strip(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut in_string = false;
    let mut block = 0usize;
    for line in text.lines() {
        let chars: Vec<char> = line.chars().collect();
        let mut i = 0;
        while i < chars.len() {
            let c = chars[i];
            let next = chars.get(i + 1).copied();
            if block > 0 {
                if c == '*' && next == Some('/') {
                    block -= 1;
                    i += 1;
                } else if c == '/' && next == Some('*') {
                    block += 1;
                    i += 1;
                }
            } else if in_string {
                if c == '\\' {
                    i += 1;
                } else if c == '"' {
                    in_string = false;
                    out.push('"');
                }
            } else if c == '/' && next == Some('/') {
                break;
            } else if c == '/' && next == Some('*') {
                block += 1;
                i += 1;
            } else if c == '"' {
                in_string = true;
                out.push('"');
            } else if c == '\''
                && chars.get(i + 2) == Some(&'\'')
                && next.is_some_and(|n| n != '\\')
            {
                i += 2; // a char literal such as '{'
            } else if c == '\'' && next == Some('\\') {
                // an escaped char literal: skip to its closing quote
                i += 2;
                while i < chars.len() && chars[i] != '\'' {
                    i += 1;
                }
            } else {
                out.push(c);
            }
            i += 1;
        }
        out.push('\n');
    }
    drop_test_modules(&out)
}

/// Blanks each item under `#[cfg(test)]` or `#[cfg(loom)]` (tests, and
/// the model of the futex protocols that only a loom build compiles): from
/// the attribute to the line where its brackets close on `;`, `,` or `}`.
/// The text is already without comments and strings, so brackets count true.
fn drop_test_modules(text: &str) -> String {
    let lines: Vec<&str> = text.lines().collect();
    let mut out = String::with_capacity(text.len());
    let mut i = 0;
    while i < lines.len() {
        if !matches!(lines[i].trim(), "#[cfg(test)]" | "#[cfg(loom)]") {
            out.push_str(lines[i]);
            out.push('\n');
            i += 1;
            continue;
        }
        out.push('\n');
        i += 1;
        let mut depth = 0i64;
        while i < lines.len() {
            for c in lines[i].chars() {
                match c {
                    '{' | '(' | '[' => depth += 1,
                    '}' | ')' | ']' => depth -= 1,
                    _ => {}
                }
            }
            let end = lines[i].trim_end().ends_with([';', ',', '}']);
            out.push('\n');
            i += 1;
            if depth <= 0 && end {
                break;
            }
        }
    }
    out
}

fn is_ident(c: char) -> bool {
    c.is_alphanumeric() || c == '_'
}

/// Every path from the crate root that `text` (stripped) names, with its
/// line: `crate::a::b`, `$crate::a`, `super::a` (from module `module`), and
/// each leaf of a `use crate::{a, b::{c, d}}` group.
fn references(text: &str, module: &[String]) -> Vec<(ModPath, usize)> {
    let chars: Vec<char> = text.chars().collect();
    let mut out = Vec::new();
    let mut line = 1;
    let mut i = 0;
    while i < chars.len() {
        if chars[i] == '\n' {
            line += 1;
            i += 1;
            continue;
        }
        let start_of_word = i == 0 || !is_ident(chars[i - 1]);
        if !start_of_word || !is_ident(chars[i]) {
            i += 1;
            continue;
        }
        let (word, end) = ident_at(&chars, i);
        let mut base: Option<ModPath> = None;
        let mut j = end;
        if word == "crate" && at_colons(&chars, j) {
            base = Some(Vec::new());
            j = skip_ws(&chars, j) + 2;
        } else if word == "super" && at_colons(&chars, j) {
            // A module file `a/b.rs` is module a::b, so `super` is `a`.
            let mut m = module.to_vec();
            m.pop();
            j = skip_ws(&chars, j) + 2;
            // `super::super::...`
            loop {
                let k = skip_ws(&chars, j);
                let (w, e) = ident_at(&chars, k);
                if w == "super" && at_colons(&chars, e) {
                    m.pop();
                    j = skip_ws(&chars, e) + 2;
                } else {
                    break;
                }
            }
            base = Some(m);
        }
        match base {
            Some(base) => {
                let mut leaves = Vec::new();
                let end = use_tree(&chars, j, base, &mut leaves);
                for (path, _) in leaves {
                    if !path.is_empty() {
                        out.push((path, line));
                    }
                }
                line += chars[i..end].iter().filter(|&&c| c == '\n').count();
                i = end;
            }
            None => i = end,
        }
    }
    out
}

/// The identifier at `i` (empty if none) and where it ends.
fn ident_at(chars: &[char], i: usize) -> (String, usize) {
    let mut end = i;
    while end < chars.len() && is_ident(chars[end]) {
        end += 1;
    }
    (chars[i.min(end)..end].iter().collect(), end)
}

fn skip_ws(chars: &[char], mut i: usize) -> usize {
    while i < chars.len() && chars[i].is_whitespace() {
        i += 1;
    }
    i
}

fn at_colons(chars: &[char], i: usize) -> bool {
    let i = skip_ws(chars, i);
    chars.get(i) == Some(&':') && chars.get(i + 1) == Some(&':')
}

/// Parses a use tree (or a plain path) at `i` under `prefix`; pushes each
/// leaf as (path, the name it is known by) and returns where it ends.
fn use_tree(chars: &[char], i: usize, prefix: ModPath, out: &mut Vec<(ModPath, String)>) -> usize {
    let mut i = skip_ws(chars, i);
    if chars.get(i) == Some(&'{') {
        i += 1;
        loop {
            i = skip_ws(chars, i);
            match chars.get(i) {
                None => return i,
                Some('}') => return i + 1,
                Some(',') => i += 1,
                _ => {
                    let before = i;
                    i = use_tree(chars, i, prefix.clone(), out);
                    if i == before {
                        i += 1; // something this parser does not know: step over it
                    }
                }
            }
        }
    }
    if chars.get(i) == Some(&'*') {
        let name = prefix.last().cloned().unwrap_or_default();
        out.push((prefix, name));
        return i + 1;
    }
    let (word, end) = ident_at(chars, i);
    if word.is_empty() {
        return i;
    }
    if at_colons(chars, end) {
        let mut p = prefix;
        if word != "self" {
            p.push(word);
        }
        return use_tree(chars, skip_ws(chars, end) + 2, p, out);
    }
    let mut path = prefix;
    let mut name = word.clone();
    if word == "self" {
        name = path.last().cloned().unwrap_or_default();
    } else {
        path.push(word);
    }
    let mut end = end;
    let k = skip_ws(chars, end);
    let (maybe_as, after_as) = ident_at(chars, k);
    if maybe_as == "as" {
        let (alias, e) = ident_at(chars, skip_ws(chars, after_as));
        name = alias;
        end = e;
    }
    out.push((path, name));
    end
}

/// The modules `lib.rs` declares (`mod a;`, `pub mod b { ... }`).
fn root_modules(lib: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for line in lib.lines() {
        let mut words = line.split_whitespace().skip_while(|w| w.starts_with("pub"));
        if words.next() == Some("mod")
            && let Some(name) = words.next()
        {
            out.insert(name.trim_end_matches([';', '{']).to_owned());
        }
    }
    out
}

/// What `lib.rs` re-exports with `use` at its top level: each name and the
/// path it stands for.
fn reexports(lib: &str) -> BTreeMap<String, ModPath> {
    let chars: Vec<char> = lib.chars().collect();
    let mut out = BTreeMap::new();
    let mut depth = 0usize; // `use` inside an inline module is not the root's
    let mut i = 0;
    while i < chars.len() {
        match chars[i] {
            '{' => depth += 1,
            '}' => depth = depth.saturating_sub(1),
            _ => {}
        }
        let (w, e) = ident_at(&chars, i);
        let start_of_word = i == 0 || !is_ident(chars[i - 1]);
        if start_of_word && w == "use" && depth == 0 {
            let mut leaves = Vec::new();
            let mut k = skip_ws(&chars, e);
            let (first, fe) = ident_at(&chars, k);
            if first == "crate" && at_colons(&chars, fe) {
                k = skip_ws(&chars, fe) + 2;
            }
            i = use_tree(&chars, k, Vec::new(), &mut leaves);
            for (path, name) in leaves {
                out.insert(name, path);
            }
        } else {
            i = e.max(i + 1);
        }
    }
    out
}

#[cfg(test)]
mod tests;
