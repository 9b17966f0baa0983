//! A client that drips a handshake frame one byte at a time, forever (until
//! stopped): what holds a server whose handshake has no deadline.

use std::io::Write;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

/// Writes, on its own thread, a frame header that announces the longest
/// handshake answer (256 bytes), then its bytes, one every 20 ms, until
/// [`stop`](Dripper::stop) or a write fails (the server hung up).
#[derive(Debug)]
pub struct Dripper {
    stop: Arc<AtomicBool>,
    thread: JoinHandle<()>,
}

impl Dripper {
    /// Starts dripping on `stream` (a connected socket).
    pub fn start(mut stream: impl Write + Send + 'static) -> Dripper {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::spawn(move || {
            let bytes = [0u8, 0, 1, 0].into_iter().chain(std::iter::repeat(b'x'));
            for b in bytes {
                if flag.load(Ordering::Relaxed) || stream.write_all(&[b]).is_err() {
                    return;
                }
                // The drip's pace, not a synchronisation.
                std::thread::sleep(Duration::from_millis(20));
            }
        });
        Dripper { stop, thread }
    }

    /// Stops dripping and waits for the thread.
    pub fn stop(self) {
        self.stop.store(true, Ordering::Relaxed);
        self.thread.join().unwrap();
    }
}
