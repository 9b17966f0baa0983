//! A progress bar over a long pool job (`cargo run -q -p mp-pool --example progress`).
//!
//! `imap_unordered` yields each result as soon as its task is done, so the
//! bar (indicatif's) moves with the work, tqdm-style. On a terminal it draws
//! on stderr; without one (a pipe, CI) indicatif draws nothing, and the
//! final line printed below is all there is.

use indicatif::{ProgressBar, ProgressStyle};
use mp_pool::Pool;

/// How many tasks the job has.
const ITEMS: u64 = 2_000;

/// A small piece of work (a millisecond or so): the Collatz steps of the
/// thousand numbers after `n * 1000`.
fn steps(n: u64) -> u64 {
    (n * 1000 + 1..=n * 1000 + 1000)
        .map(|mut x| {
            let mut count = 0;
            while x != 1 {
                x = if x % 2 == 0 { x / 2 } else { 3 * x + 1 };
                count += 1;
            }
            count
        })
        .sum()
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let pool = Pool::new(None)?;
    let bar = ProgressBar::new(ITEMS);
    bar.set_style(ProgressStyle::with_template(
        "{bar:40} {pos}/{len} tasks, {per_sec}, {eta} left {msg}",
    )?);
    let mut total = 0;
    for result in pool.imap_unordered(steps, 0..ITEMS) {
        total += result?;
        bar.inc(1);
    }
    bar.finish_with_message("done");
    pool.close();
    pool.join()?;
    println!(
        "{} tasks on {} workers: {total} Collatz steps in all",
        bar.position(),
        pool.processes()
    );
    Ok(())
}
