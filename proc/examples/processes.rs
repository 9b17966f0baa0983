//! Processes, pipes and logging under every start method: the README's first
//! command (`cargo run -q -p mp-proc --example processes`).
//!
//! A parent starts one worker per start method, talks to each over a duplex
//! pipe, runs a function in a child for its return value, and shows a
//! child's panic coming back as an error. With `log_to_stderr`, every process
//! logs its lifecycle under its own name, as CPython's children do.

use mp_logging::{Level, log_to_stderr};
use mp_proc::{Connection, Process, StartMethod, current_process, get_context, pipe};

/// Squares what it receives until the parent hangs up.
fn square_server(conn: Connection) {
    let log = mp_logging::get_logger();
    while let Ok(n) = conn.recv::<u64>() {
        log.debug(format_args!("squaring {n}"));
        conn.send(&(n * n)).expect("the parent went away");
    }
    log.info(format_args!(
        "{} saw the parent hang up",
        current_process().name()
    ));
}

/// Returns the sum of the squares below `n`, run with `spawn`.
fn sum_of_squares(n: u64) -> u64 {
    (0..n).map(|i| i * i).sum()
}

/// Fails on purpose.
fn unlucky(number: u32) -> u32 {
    panic!("{number} is an unlucky number")
}

fn main() -> mp_proc::Result<()> {
    mp_proc::init();
    let logger = log_to_stderr(Some(Level::Info));
    logger.warning("doomed");

    for method in StartMethod::ALL {
        let (parent_end, child_end) = pipe(true)?;
        let mut worker = Process::new(square_server, child_end)
            .name(format!("Squarer-{method}"))
            .start_method(method);
        worker.start()?;
        let squares: Vec<u64> = (1..=5)
            .map(|n| {
                parent_end.send(&n)?;
                parent_end.recv::<u64>()
            })
            .collect::<mp_proc::Result<_>>()?;
        drop(parent_end); // the worker's recv sees end of file and returns
        let code = worker.join()?;
        println!(
            "{method:>10}: {} squared 1..=5 into {squares:?} and exited with {code}",
            worker.get_name()
        );

        let total = get_context(method).spawn(sum_of_squares, 1000)?.join()?;
        println!("{method:>10}: a spawned child returned {total}");
    }

    match get_context(StartMethod::Forkserver)
        .spawn(unlucky, 13)?
        .join()
    {
        Err(e) => println!("a child's panic came back as: {e}"),
        Ok(n) => println!("unexpected: {n}"),
    }
    println!(
        "{} has {} CPUs and no children left: {:?}",
        current_process().name(),
        mp_proc::cpu_count(),
        mp_proc::active_children()
    );
    Ok(())
}
