//! mp-logging's integration tests. Each scenario that touches the process-wide
//! logger runs in a fresh copy of this test binary (`run_scenario`), so tests
//! cannot disturb each other and stderr can be checked byte for byte.

use std::cell::Cell;
use std::fmt;
use std::io::Read;
use std::process::{Command, Output, Stdio};

use mp_logging::{Level, get_logger, log_to_stderr, set_process_name};

const SCENARIO: &str = "MP_LOGGING_TEST_SCENARIO";

/// Runs `scenario` in a child copy of this binary and returns its output.
fn run_scenario(scenario: &str) -> Output {
    let out = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "scenario", "--nocapture", "--test-threads=1"])
        .env(SCENARIO, scenario)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(out.status.success(), "scenario {scenario} failed: {out:?}");
    out
}

/// The records (lines that start with `[`) a scenario wrote to stderr.
fn records(out: &Output) -> Vec<String> {
    String::from_utf8_lossy(&out.stderr)
        .lines()
        .filter(|l| l.starts_with('['))
        .map(str::to_owned)
        .collect()
}

/// Not a test of its own: the body of the scenarios above, selected by env var.
#[test]
fn scenario() {
    let Ok(name) = std::env::var(SCENARIO) else {
        return;
    };
    match name.as_str() {
        "format" => {
            let logger = log_to_stderr(Some(Level::Debug));
            logger.warning("doomed");
            logger.info(format_args!("{} + {} = {}", 1, 2, 3));
            logger.sub_debug("below the level");
            set_process_name("Process-3:1");
            logger.error("named");
        }
        "twice" => {
            log_to_stderr(Some(Level::Info));
            let logger = log_to_stderr(None);
            assert_eq!(logger.level(), Level::Info);
            logger.warning("once");
        }
        "levels" => {
            let logger = log_to_stderr(Some(Level::SubDebug));
            for level in Level::ALL {
                logger.log(level, level as u8);
            }
            logger.set_level(Level::SubWarning);
            for level in Level::ALL {
                logger.log(level, level as u8);
            }
        }
        "notset" => {
            let logger = log_to_stderr(Some(Level::NotSet));
            assert_eq!(logger.level(), Level::NotSet);
            assert_eq!(
                logger.effective_level(),
                Level::Warning,
                "the root's default"
            );
            logger.info("dropped: the root level is WARNING");
            mp_logging::set_root_level(Level::Info);
            assert_eq!(mp_logging::root_level(), Level::Info);
            logger.info("the root decides");
            logger.debug("dropped: below the root level");
            logger.set_level(Level::Error);
            logger.warning("dropped: the logger's own level decides");
        }
        "no_handler" => {
            let logger = get_logger();
            logger.set_level(Level::SubDebug);
            logger.critical("nobody hears this");
        }
        "env_logger_first" => {
            env_logger::Builder::new()
                .filter_level(log::LevelFilter::Info)
                .target(env_logger::Target::Stderr)
                .format(|buf, r| {
                    use std::io::Write;
                    writeln!(buf, "user-log {} {}: {}", r.level(), r.target(), r.args())
                })
                .init();
            log::info!(target: "app", "before");
            let logger = log_to_stderr(Some(Level::Info));
            logger.info("mp record");
            log::warn!(target: "app", "after");
            logger.set_propagate(true);
            logger.warning("propagated");
        }
        "env_logger_after" => {
            let logger = log_to_stderr(Some(Level::Info));
            logger.info("mp first");
            let installed = env_logger::Builder::new()
                .filter_level(log::LevelFilter::Info)
                .format(|buf, r| {
                    use std::io::Write;
                    writeln!(buf, "user-log {}", r.args())
                })
                .try_init();
            assert!(installed.is_ok(), "mp-logging took the global logger");
            log::info!("user second");
            logger.info("mp third");
        }
        "spam" => {
            let id: usize = std::env::var("SPAM_ID").unwrap().parse().unwrap();
            set_process_name(format!("Spammer-{id}"));
            let logger = log_to_stderr(Some(Level::Info));
            let body = id.to_string().repeat(SPAM_LEN);
            for _ in 0..SPAM_LINES {
                logger.info(&body);
            }
        }
        other => panic!("unknown scenario {other}"),
    }
}

const SPAM_LEN: usize = 2000;
const SPAM_LINES: usize = 300;

#[test]
fn record_format_is_level_slash_process_name() {
    let out = run_scenario("format");
    assert_eq!(
        records(&out),
        [
            "[WARNING/MainProcess] doomed",
            "[INFO/MainProcess] 1 + 2 = 3",
            "[ERROR/Process-3:1] named"
        ]
    );
}

#[test]
fn log_to_stderr_twice_installs_one_handler() {
    assert_eq!(
        records(&run_scenario("twice")),
        ["[WARNING/MainProcess] once"]
    );
}

#[test]
fn all_seven_levels_print_with_python_names_and_filter_by_number() {
    let got = records(&run_scenario("levels"));
    let expected: Vec<String> = [
        "SUBDEBUG/MainProcess] 5",
        "DEBUG/MainProcess] 10",
        "INFO/MainProcess] 20",
        "SUBWARNING/MainProcess] 25",
        "WARNING/MainProcess] 30",
        "ERROR/MainProcess] 40",
        "CRITICAL/MainProcess] 50",
        "SUBWARNING/MainProcess] 25",
        "WARNING/MainProcess] 30",
        "ERROR/MainProcess] 40",
        "CRITICAL/MainProcess] 50",
    ]
    .iter()
    .map(|s| format!("[{s}"))
    .collect();
    assert_eq!(got, expected);
}

#[test]
fn without_a_handler_nothing_is_printed() {
    let out = run_scenario("no_handler");
    assert!(records(&out).is_empty(), "{out:?}");
    assert!(!String::from_utf8_lossy(&out.stderr).contains("nobody hears this"));
}

#[test]
fn works_beside_env_logger_installed_first() {
    let out = run_scenario("env_logger_first");
    let err = String::from_utf8_lossy(&out.stderr);
    let lines: Vec<&str> = err
        .lines()
        .filter(|l| l.starts_with('[') || l.starts_with("user-log"))
        .collect();
    assert_eq!(
        lines,
        [
            "user-log INFO app: before",
            "[INFO/MainProcess] mp record",
            "user-log WARN app: after",
            "[WARNING/MainProcess] propagated",
            "user-log WARN multiprocessing: propagated",
        ]
    );
}

#[test]
fn does_not_steal_the_global_logger() {
    let out = run_scenario("env_logger_after");
    let err = String::from_utf8_lossy(&out.stderr);
    let lines: Vec<&str> = err
        .lines()
        .filter(|l| l.starts_with('[') || l.starts_with("user-log"))
        .collect();
    assert_eq!(
        lines,
        [
            "[INFO/MainProcess] mp first",
            "user-log user second",
            "[INFO/MainProcess] mp third"
        ]
    );
}

#[test]
fn records_from_concurrent_processes_never_mix() {
    let (mut reader, writer) = std::io::pipe().unwrap();
    let children: Vec<_> = (0..4)
        .map(|id| {
            Command::new(std::env::current_exe().unwrap())
                .args(["--exact", "scenario", "--nocapture", "--test-threads=1"])
                .env(SCENARIO, "spam")
                .env("SPAM_ID", id.to_string())
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(writer.try_clone().unwrap())
                .spawn()
                .unwrap()
        })
        .collect();
    drop(writer);
    let mut all = String::new();
    reader.read_to_string(&mut all).unwrap();
    for mut child in children {
        assert!(child.wait().unwrap().success());
    }
    let mut per_child = [0usize; 4];
    for line in all.lines().filter(|l| l.starts_with('[')) {
        let (head, body) = line.split_once("] ").expect(line);
        let id: usize = head
            .strip_prefix("[INFO/Spammer-")
            .expect(line)
            .parse()
            .expect(line);
        assert_eq!(
            body,
            id.to_string().repeat(SPAM_LEN),
            "a record was split or mixed"
        );
        per_child[id] += 1;
    }
    assert_eq!(per_child, [SPAM_LINES; 4]);
}

/// Counts how often it is formatted.
struct Counted<'a>(&'a Cell<usize>);

impl fmt::Display for Counted<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.set(self.0.get() + 1);
        f.write_str("counted")
    }
}

#[test]
fn messages_below_the_level_are_never_formatted() {
    // The default level is WARNING and this process never changes it.
    let formatted = Cell::new(0);
    let logger = get_logger();
    logger.debug(Counted(&formatted));
    logger.info(Counted(&formatted));
    assert_eq!(formatted.get(), 0);
}

/// `logging.NOTSET`: the logger defers to the root level
/// (`_TestLogging.test_level`'s second half, in one process).
#[test]
fn a_notset_logger_logs_at_the_root_level() {
    assert_eq!(
        records(&run_scenario("notset")),
        ["[INFO/MainProcess] the root decides"]
    );
}

#[test]
fn notset_parses_and_is_not_a_record_level() {
    assert_eq!("NOTSET".parse::<Level>(), Ok(Level::NotSet));
    assert_eq!("0".parse::<Level>(), Ok(Level::NotSet));
    assert_eq!(Level::from_number(0), Some(Level::NotSet));
    assert_eq!(Level::NotSet.to_string(), "NOTSET");
    assert!(Level::NotSet < Level::SubDebug);
    assert!(!Level::ALL.contains(&Level::NotSet));
}

#[test]
fn levels_parse_and_order_like_python() {
    assert_eq!("subwarning".parse::<Level>(), Ok(Level::SubWarning));
    assert_eq!("5".parse::<Level>(), Ok(Level::SubDebug));
    assert!("VERBOSE".parse::<Level>().is_err());
    assert!("7".parse::<Level>().is_err());
    let numbers: Vec<u8> = Level::ALL.iter().map(|l| *l as u8).collect();
    assert_eq!(numbers, [5, 10, 20, 25, 30, 40, 50]);
    let mut sorted = Level::ALL;
    sorted.sort();
    assert_eq!(sorted, Level::ALL);
    assert_eq!(Level::Critical.to_string(), "CRITICAL");
}
