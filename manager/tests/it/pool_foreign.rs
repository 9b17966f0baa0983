//! A manager's pool refuses the functions of another process tree: a
//! client that knows the manager's key but is another run of the program
//! (its own authkey, so its function references are signed under another
//! key) gets a clear error, and the server goes on. The client is a re-run
//! of this test binary, selected by [`CLIENT`].

use std::process::{Command, Stdio};

use mp_manager::SyncManager;
use mp_proc::StartMethod;
use mp_testkit::guard;

/// The env var that makes a re-run of this binary the foreign client: the
/// manager's address and its key, in hex, as `address key`.
const CLIENT: &str = "MP_TEST_FOREIGN_POOL_CLIENT";

mp_testkit::for_each_method!(a_client_of_another_process_tree_is_refused_and_the_server_goes_on);

fn sqr(x: u64) -> u64 {
    x * x
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex(text: &str) -> Vec<u8> {
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&text[i..i + 2], 16).expect("hex"))
        .collect()
}

/// Not a test of its own: the foreign client, in a re-run with [`CLIENT`] set.
#[test]
fn foreign_client() {
    let Ok(given) = std::env::var(CLIENT) else {
        return;
    };
    let (address, key) = given.split_once(' ').expect("address and key");
    let key = unhex(key);
    assert_ne!(
        mp_proc::current_process().authkey(),
        &key[..],
        "the re-run is another process tree"
    );
    let m = SyncManager::connect(&address.parse().unwrap(), &key).unwrap();
    let pool = m.pool(Some(1)).unwrap();
    match pool.apply(sqr, 5) {
        Err(mp_pool::Error::InvalidArgument { what }) => println!("refused: {what}"),
        other => println!("accepted: {other:?}"),
    }
    match pool.map_async(sqr, [1, 2]).get() {
        Err(mp_pool::Error::InvalidArgument { .. }) => println!("refused again"),
        other => println!("accepted: {other:?}"),
    }
}

fn a_client_of_another_process_tree_is_refused_and_the_server_goes_on(method: StartMethod) {
    let _g = guard();
    let m = SyncManager::start_with(method).unwrap();
    let pool = m.pool(Some(1)).unwrap();
    let key = hex(mp_proc::current_process().authkey());
    let out = Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "pool_foreign::foreign_client",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CLIENT, format!("{} {key}", m.address()))
        .env("RUST_BACKTRACE", "0")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let refused = stdout
        .lines()
        .find_map(|l| l.split_once("refused: ").map(|(_, r)| r))
        .unwrap_or_else(|| panic!("not refused: {stdout}"));
    assert!(refused.contains("process tree"), "{refused}");
    assert!(stdout.contains("refused again"), "{stdout}");
    // The server and its pool go on for this tree's clients.
    assert_eq!(pool.apply(sqr, 5).unwrap(), 25);
    assert_eq!(m.number_of_objects().unwrap(), 1);
    drop(pool);
    m.shutdown().unwrap();
}
