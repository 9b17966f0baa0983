//! CPython's documented remote-queue example ("Using a remote manager"),
//! in Rust. One process serves a queue on TCP with a key; other processes
//! connect by address and share it.
//!
//! With no arguments, it runs the whole story: a server process, a client
//! process that puts, and one that gets:
//!
//! ```text
//! cargo run -q -p mp-manager --example remote_queue
//! ```
//!
//! Or run each part in its own terminal, as in Python's documentation:
//!
//! ```text
//! cargo run -q -p mp-manager --example remote_queue -- serve 50000
//! cargo run -q -p mp-manager --example remote_queue -- put 127.0.0.1:50000 hello
//! cargo run -q -p mp-manager --example remote_queue -- get 127.0.0.1:50000
//! ```

use mp_manager::{BaseManager, Builtin, QueueProxy, Result};
use mp_proc::Process;
use mp_proc::connection::Address;

const KEY: &[u8] = b"abracadabra";

/// Python's `QueueManager(address=(host, port), authkey=b'abracadabra')`.
fn queue_manager() -> mp_manager::BaseManagerBuilder {
    BaseManager::builder()
        .authkey(KEY)
        .share("get_queue", Builtin::Queue { maxsize: 0 })
}

fn put(address: String, message: String) -> Result<()> {
    let m = queue_manager().address(address.parse()?).connect()?;
    let queue: QueueProxy<String> = m.create("get_queue")?;
    queue.put(message)
}

fn get(address: String) -> Result<String> {
    let m = queue_manager().address(address.parse()?).connect()?;
    let queue: QueueProxy<String> = m.create("get_queue")?;
    queue.get()
}

fn put_child((address, message): (String, String)) {
    put(address, message).expect("put");
}

fn get_child(address: String) {
    println!("got {:?}", get(address).expect("get"));
}

fn main() -> Result<()> {
    mp_proc::init();
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.iter().map(String::as_str).collect::<Vec<_>>()[..] {
        ["serve", port] => {
            let port = port.parse().map_err(|_| bad_usage())?;
            let address = Address::Tcp(([0, 0, 0, 0], port).into());
            println!("serving on {address}");
            queue_manager().address(address).serve_forever()
        }
        ["put", address, message] => put(address.into(), message.into()),
        ["get", address] => {
            println!("{}", get(address.into())?);
            Ok(())
        }
        [] => {
            // The server: its own process, on the loopback interface.
            let server = queue_manager().tcp(0).start()?;
            let address = server.address().to_string();
            println!("serving on {address}");
            let mut putter = Process::new(put_child, (address.clone(), "hello".to_owned()));
            putter.start()?;
            putter.join()?;
            let mut getter = Process::new(get_child, address);
            getter.start()?;
            getter.join()?;
            server.shutdown()
        }
        _ => Err(bad_usage()),
    }
}

fn bad_usage() -> mp_manager::Error {
    mp_manager::Error::Invalid {
        what: "usage",
        reason: "remote_queue [serve PORT | put HOST:PORT MESSAGE | get HOST:PORT]".into(),
    }
}
