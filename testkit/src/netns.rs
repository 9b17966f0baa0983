//! Hosts on one machine, for the tests of mp across hosts: Linux network
//! namespaces joined to the root namespace by veth pairs, made and removed
//! with the `ip` command (iproute2). Root only; without root (or without
//! `ip`, or where namespaces are not permitted) the tests skip with the
//! reason printed.
//!
//! Host `i` is the namespace [`Hosts::name`]`(i)`: `lo` up and `eth0`, the
//! namespace end of a veth pair whose root end carries
//! [`Hosts::parent_addr`]`(i)`, on a /30 of its own in 10.0.0.0/8. A process
//! in the namespace reaches a listener of the test (which stays in the root
//! namespace) bound to `parent_addr(i)`; the test reaches the namespace at
//! [`Hosts::addr`]`(i)`.
//!
//! ```no_run
//! // Needs root.
//! use std::net::TcpListener;
//! use std::process::Command;
//!
//! let Some(hosts) = mp_testkit::netns::hosts_or_skip(2) else { return };
//! let listener = TcpListener::bind((hosts.parent_addr(0), 0)).unwrap();
//! let port = listener.local_addr().unwrap().port();
//! let script = format!("echo hi >/dev/tcp/{}/{port}", hosts.parent_addr(0));
//! let status = Command::new("ip")
//!     .args(["netns", "exec", hosts.name(0), "bash", "-c", &script])
//!     .status()
//!     .unwrap();
//! assert!(status.success());
//! let (_conn, from) = listener.accept().unwrap();
//! assert_eq!(from.ip(), hosts.addr(0));
//! ```

use std::fmt;
use std::fs::File;
use std::net::{IpAddr, Ipv4Addr};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};

/// The prefix of every namespace and root-side veth name made here:
/// `mpt<pid>x<k>h<i>`, so that leftovers of a dead test process are found
/// by name.
const PREFIX: &str = "mpt";

/// The longest interface name Linux takes (IFNAMSIZ - 1).
const IFNAME_MAX: usize = 15;

/// Held while choosing subnets and making links, and while removing
/// leftovers: test processes running at once never pick the same subnet.
const LOCK_FILE: &str = "/run/mp-testkit-netns.lock";

/// Why the hosts (or an sshd) could not be made: the test skips, printing it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Skip {
    /// What is missing or refused, for the test's output.
    pub reason: String,
}

impl Skip {
    pub(crate) fn new(reason: impl Into<String>) -> Skip {
        Skip {
            reason: reason.into(),
        }
    }
}

impl fmt::Display for Skip {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.reason)
    }
}

impl std::error::Error for Skip {}

/// An `ip` command that failed (or could not run).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IpError {
    /// The command line, as typed.
    pub command: String,
    /// What went wrong: its standard error, or why it did not run.
    pub message: String,
}

impl fmt::Display for IpError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "`{}` failed: {}", self.command, self.message.trim())
    }
}

impl std::error::Error for IpError {}

/// Runs `ip args...` and returns its standard output.
pub(crate) fn ip(args: &[&str]) -> Result<String, IpError> {
    let command = format!("ip {}", args.join(" "));
    let out = Command::new("ip")
        .args(args)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| IpError {
            command: command.clone(),
            message: e.to_string(),
        })?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(IpError {
            command,
            message: format!("{}: {}", out.status, String::from_utf8_lossy(&out.stderr)),
        })
    }
}

/// `n` hosts (network namespaces), or `None` after printing
/// `skipped: <reason>` to stderr: the first line of a test that needs them.
///
/// ```no_run
/// let Some(hosts) = mp_testkit::netns::hosts_or_skip(2) else { return };
/// assert_eq!(hosts.len(), 2);
/// ```
pub fn hosts_or_skip(n: usize) -> Option<Hosts> {
    match Hosts::new(n) {
        Ok(hosts) => Some(hosts),
        Err(skip) => {
            eprintln!("skipped: {skip}");
            None
        }
    }
}

/// One namespace and its link to the root namespace.
#[derive(Debug)]
struct Link {
    /// The namespace's name, and the name of the veth's root end.
    name: String,
    /// The namespace end (`eth0` in the namespace).
    addr: Ipv4Addr,
    /// The root end.
    parent: Ipv4Addr,
}

/// Network namespaces with a veth link each to the root namespace, removed
/// on drop (a panicking test included). See the [module](self) docs.
#[derive(Debug)]
pub struct Hosts {
    links: Vec<Link>,
}

static MADE: AtomicU32 = AtomicU32::new(0);

impl Hosts {
    /// Makes `n` namespaces, each with `lo` up, a veth link to the root
    /// namespace on a /30 of its own, and a default route through it. It
    /// first removes what dead test processes left (namespaces and links
    /// named with this module's prefix and the pid of a process that is
    /// gone, and the processes still running in those namespaces).
    ///
    /// `Err(Skip)` when not root, when `ip` is missing, or when making a
    /// namespace or link is refused; what was made is removed then.
    ///
    /// ```no_run
    /// let hosts = mp_testkit::netns::Hosts::new(1).expect("root");
    /// println!("{} is at {}", hosts.name(0), hosts.addr(0));
    /// ```
    pub fn new(n: usize) -> Result<Hosts, Skip> {
        if !is_root() {
            return Err(Skip::new(
                "not root: network namespaces need root (CAP_SYS_ADMIN, CAP_NET_ADMIN)",
            ));
        }
        if let Err(e) = Command::new("ip")
            .arg("-V")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
        {
            return Err(Skip::new(format!(
                "the `ip` command (iproute2) cannot run: {e}"
            )));
        }
        let k = MADE.fetch_add(1, Ordering::Relaxed);
        let pid = std::process::id();
        let mut names = Vec::with_capacity(n);
        for i in 0..n {
            let name = format!("{PREFIX}{pid}x{}h{}", base36(k), base36(i as u32));
            if name.len() > IFNAME_MAX {
                return Err(Skip::new(format!(
                    "too many hosts: the name {name} is longer than an interface name may be"
                )));
            }
            names.push(name);
        }
        let lock = File::create(LOCK_FILE)
            .map_err(|e| Skip::new(format!("cannot open {LOCK_FILE}: {e}")))?;
        lock.lock()
            .map_err(|e| Skip::new(format!("cannot lock {LOCK_FILE}: {e}")))?;
        remove_leftovers();
        let mut hosts = Hosts { links: Vec::new() };
        let mut taken = used_prefixes().map_err(|e| Skip::new(e.to_string()))?;
        let mut block = start_block(pid, k);
        for name in names {
            block = free_block(block, &taken)
                .ok_or_else(|| Skip::new("no free /30 left in 10.0.0.0/8"))?;
            let net = 0x0A00_0000 | (block << 2);
            taken.push((net, 30));
            let link = Link {
                name,
                parent: Ipv4Addr::from(net + 1),
                addr: Ipv4Addr::from(net + 2),
            };
            // On an error `hosts` drops here and removes what was made.
            make(&link).map_err(|e| {
                Skip::new(format!(
                    "network namespaces are not permitted here (or iproute2 refused): {e}"
                ))
            })?;
            hosts.links.push(link);
        }
        Ok(hosts)
    }

    /// How many hosts.
    pub fn len(&self) -> usize {
        self.links.len()
    }

    /// Whether there are none (`Hosts::new(0)`).
    pub fn is_empty(&self) -> bool {
        self.links.is_empty()
    }

    /// Host `i`'s namespace name (for `ip netns exec`, `ip -n`). Panics if
    /// `i >= len()`, as indexing does.
    pub fn name(&self, i: usize) -> &str {
        &self.links[i].name
    }

    /// Host `i`'s address (in its namespace, on `eth0`).
    pub fn addr(&self, i: usize) -> IpAddr {
        IpAddr::V4(self.links[i].addr)
    }

    /// The root namespace's address on host `i`'s link: where a process in
    /// namespace `i` reaches a listener of the parent.
    pub fn parent_addr(&self, i: usize) -> IpAddr {
        IpAddr::V4(self.links[i].parent)
    }

    /// Host `i`'s link's network, `a.b.c.d/30` (both its ends).
    pub fn subnet(&self, i: usize) -> String {
        let net = u32::from(self.links[i].parent) & !0b11;
        format!("{}/30", Ipv4Addr::from(net))
    }

    /// The processes running in host `i`'s namespace (`ip netns pids`).
    ///
    /// ```no_run
    /// let hosts = mp_testkit::netns::Hosts::new(1).unwrap();
    /// assert_eq!(hosts.pids(0).unwrap(), Vec::<u32>::new());
    /// ```
    pub fn pids(&self, i: usize) -> Result<Vec<u32>, IpError> {
        Ok(ip(&["netns", "pids", &self.links[i].name])?
            .split_whitespace()
            .filter_map(|p| p.parse().ok())
            .collect())
    }

    /// `ip netns exec NAME`: the prefix of a command run on host `i`, for
    /// `mp_proc::Launcher::command`.
    pub fn exec_prefix(&self, i: usize) -> [String; 4] {
        [
            "ip".to_owned(),
            "netns".to_owned(),
            "exec".to_owned(),
            self.links[i].name.clone(),
        ]
    }

    /// The launcher that starts processes on host `i` through `ip netns
    /// exec`: `mp_proc::Launcher::command(`[`exec_prefix`](Hosts::exec_prefix)`(i))`.
    ///
    /// ```no_run
    /// let hosts = mp_testkit::netns::Hosts::new(1).unwrap();
    /// let mut p = mp_proc::Process::new(|()| {}, ()).launcher(hosts.launcher(0));
    /// p.start().unwrap();
    /// assert_eq!(p.join().unwrap(), 0);
    /// ```
    pub fn launcher(&self, i: usize) -> mp_proc::Launcher {
        mp_proc::Launcher::command(self.exec_prefix(i))
    }

    /// Takes host `i`'s link down (its root end): the host is cut off.
    pub fn link_down(&self, i: usize) -> Result<(), IpError> {
        ip(&["link", "set", "dev", &self.links[i].name, "down"]).map(drop)
    }

    /// Brings host `i`'s link back up.
    pub fn link_up(&self, i: usize) -> Result<(), IpError> {
        ip(&["link", "set", "dev", &self.links[i].name, "up"]).map(drop)
    }
}

impl Drop for Hosts {
    fn drop(&mut self) {
        for link in &self.links {
            remove(&link.name);
        }
    }
}

/// Makes one namespace and its link.
fn make(link: &Link) -> Result<(), IpError> {
    let name = link.name.as_str();
    ip(&["netns", "add", name])?;
    let parent = format!("{}/30", link.parent);
    let addr = format!("{}/30", link.addr);
    let parent_ip = link.parent.to_string();
    let steps: [&[&str]; 8] = [
        &[
            "link", "add", name, "type", "veth", "peer", "name", "eth0", "netns", name,
        ],
        &["addr", "add", &parent, "dev", name],
        &["link", "set", "dev", name, "up"],
        &["-n", name, "link", "set", "dev", "lo", "up"],
        &["-n", name, "addr", "add", &addr, "dev", "eth0"],
        &["-n", name, "link", "set", "dev", "eth0", "up"],
        &["-n", name, "route", "add", "default", "via", &parent_ip],
        &["-n", name, "link", "show", "dev", "eth0"],
    ];
    for step in steps {
        if let Err(e) = ip(step) {
            remove(name);
            return Err(e);
        }
    }
    Ok(())
}

/// Removes namespace `name`, the processes still in it, and its link.
/// Errors are ignored: what is already gone is fine.
fn remove(name: &str) {
    if let Ok(pids) = ip(&["netns", "pids", name]) {
        for pid in pids
            .split_whitespace()
            .filter_map(|p| p.parse::<i32>().ok())
        {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
    }
    let _ = ip(&["link", "del", "dev", name]);
    let _ = ip(&["netns", "del", name]);
}

/// Removes the namespaces and links whose name carries the pid of a
/// process that is gone (a test run that was killed).
fn remove_leftovers() {
    let mut names: Vec<String> = Vec::new();
    if let Ok(list) = ip(&["netns", "list"]) {
        names.extend(
            list.lines()
                .filter_map(|l| l.split_whitespace().next().map(str::to_owned)),
        );
    }
    if let Ok(links) = ip(&["-o", "link", "show"]) {
        // "12: mpt1x0h0@if2: <...": the second word, up to '@' or ':'.
        names.extend(links.lines().filter_map(|l| {
            let word = l.split_whitespace().nth(1)?;
            let end = word.find(['@', ':']).unwrap_or(word.len());
            Some(word[..end].to_owned())
        }));
    }
    names.sort();
    names.dedup();
    for name in names {
        if let Some(pid) = owner(&name)
            && !std::path::Path::new(&format!("/proc/{pid}")).exists()
        {
            remove(&name);
        }
    }
}

/// Removes the temp directories named `<prefix><pid>x...` of test
/// processes that are gone (an sshd's, an mpirun's).
pub(crate) fn remove_dead_dirs(prefix: &str) {
    let Ok(entries) = std::fs::read_dir(std::env::temp_dir()) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        // "<prefix><pid>x<k>" parses as a namespace's "mpt<pid>x..." once
        // the prefix goes.
        let Some(rest) = name.strip_prefix(prefix) else {
            continue;
        };
        if let Some(pid) = owner(&format!("{PREFIX}{rest}"))
            && !std::path::Path::new(&format!("/proc/{pid}")).exists()
        {
            let _ = std::fs::remove_dir_all(entry.path());
        }
    }
}

/// The pid in a name made here (`mpt<pid>x...`).
pub(crate) fn owner(name: &str) -> Option<u32> {
    let rest = name.strip_prefix(PREFIX)?;
    let (pid, _) = rest.split_once('x')?;
    pid.parse().ok()
}

/// Whether this process runs as root (effective uid 0).
pub(crate) fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status").is_ok_and(|s| {
        s.lines()
            .find_map(|l| l.strip_prefix("Uid:"))
            .and_then(|ids| ids.split_whitespace().nth(1))
            == Some("0")
    })
}

fn base36(mut n: u32) -> String {
    const DIGITS: &[u8; 36] = b"0123456789abcdefghijklmnopqrstuvwxyz";
    let mut out = Vec::new();
    loop {
        out.push(DIGITS[(n % 36) as usize]);
        n /= 36;
        if n == 0 {
            break;
        }
    }
    out.reverse();
    String::from_utf8_lossy(&out).into_owned()
}

/// How many /30 blocks 10.0.0.0/8 holds.
const BLOCKS: u32 = 1 << 22;

/// Where this process's `k`th hosts start looking for free /30s: spread
/// out, so that concurrent test processes seldom probe the same blocks
/// (the lock and [`used_prefixes`] make a collision impossible anyway).
fn start_block(pid: u32, k: u32) -> u32 {
    let mixed = (u64::from(pid) << 8 | u64::from(k & 0xff)).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    (mixed >> 42) as u32 % BLOCKS
}

/// The first block from `from` on (wrapping) whose /30 overlaps nothing in
/// `taken`.
fn free_block(from: u32, taken: &[(u32, u8)]) -> Option<u32> {
    (0..BLOCKS).map(|d| (from + d) % BLOCKS).find(|&b| {
        !taken
            .iter()
            .any(|&t| overlaps((0x0A00_0000 | (b << 2), 30), t))
    })
}

fn overlaps(a: (u32, u8), b: (u32, u8)) -> bool {
    let len = a.1.min(b.1);
    let mask = if len == 0 {
        0
    } else {
        u32::MAX << (32 - u32::from(len))
    };
    a.0 & mask == b.0 & mask
}

/// The IPv4 prefixes in use in the root namespace: its addresses and the
/// destinations of its routes (not the default route).
fn used_prefixes() -> Result<Vec<(u32, u8)>, IpError> {
    let mut out = Vec::new();
    for line in ip(&["-o", "-4", "addr", "show"])?.lines() {
        let mut words = line.split_whitespace();
        if words.any(|w| w == "inet")
            && let Some(p) = words.next().and_then(parse_prefix)
        {
            out.push(p);
        }
    }
    for line in ip(&["-4", "route", "show", "table", "all"])?.lines() {
        if line.starts_with("default") {
            continue;
        }
        if let Some(p) = line.split_whitespace().find_map(parse_prefix) {
            out.push(p);
        }
    }
    Ok(out)
}

/// `a.b.c.d/len` or `a.b.c.d` (a /32).
fn parse_prefix(s: &str) -> Option<(u32, u8)> {
    let (addr, len) = s.split_once('/').unwrap_or((s, "32"));
    let addr: Ipv4Addr = addr.parse().ok()?;
    let len: u8 = len.parse().ok().filter(|&l| l <= 32)?;
    Some((u32::from(addr), len))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_carry_the_pid_and_fit_an_interface_name() {
        let name = format!("{PREFIX}{}x{}h{}", 4_194_304, base36(1295), base36(35));
        assert_eq!(name, "mpt4194304xzzhz");
        assert_eq!(name.len(), IFNAME_MAX);
        assert_eq!(owner(&name), Some(4_194_304));
        assert_eq!(owner("mptx0h0"), None);
        assert_eq!(owner("eth0"), None);
    }

    #[test]
    fn a_block_that_overlaps_a_used_prefix_is_skipped() {
        let taken = [parse_prefix("10.0.0.0/29").unwrap()];
        assert_eq!(free_block(0, &taken), Some(2));
        assert_eq!(free_block(BLOCKS - 1, &taken), Some(BLOCKS - 1));
        let all = [parse_prefix("10.0.0.0/8").unwrap()];
        assert_eq!(free_block(0, &all), None);
        assert!(overlaps(
            (0x0A00_0004, 30),
            parse_prefix("0.0.0.0/0").unwrap()
        ));
        assert!(!overlaps(
            (0x0A00_0004, 30),
            parse_prefix("192.0.2.0/24").unwrap()
        ));
        assert_eq!(parse_prefix("10.1.2.3"), Some((0x0A01_0203, 32)));
        assert_eq!(parse_prefix("10.1.2.3/33"), None);
    }
}
