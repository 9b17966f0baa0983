//! `ShareableList`: CPython's layout both ways with a real `python3`,
//! CPython's own `ShareableList` tests ported, the list as a handle in a
//! child's args, and blocks that do not follow the layout.

use std::io::{BufRead, BufReader, Write};
use std::process::{Child, ChildStdout, Command, Stdio};

use mp_proc::{
    Connection, Error, Process, ShareableItem as I, ShareableList, SharedMemory, StartMethod, pipe,
};
use mp_testkit::guard;

mp_testkit::for_each_method!(
    a_list_in_a_childs_args_is_the_same_list,
    a_corrupt_list_in_a_childs_args_is_refused_on_arrival,
);

/// `python3 -c script args..` with piped stdio, or `None` if there is no
/// `python3` (then the test passes vacuously; CI has one).
fn python(script: &str, args: &[&str]) -> Option<(Child, BufReader<ChildStdout>)> {
    let probe = Command::new("python3")
        .args(["-c", "import multiprocessing.shared_memory"])
        .output()
        .ok();
    let Some(probe) = probe else {
        eprintln!("no python3: skipped");
        return None;
    };
    assert!(
        probe.status.success(),
        "python3 cannot import shared_memory"
    );
    let mut child = Command::new("python3")
        .arg("-c")
        .arg(script)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let out = BufReader::new(child.stdout.take().unwrap());
    Some((child, out))
}

fn line(out: &mut BufReader<ChildStdout>) -> String {
    let mut l = String::new();
    out.read_line(&mut l).unwrap();
    l.trim_end().to_string()
}

/// Waits for python3 and asserts it succeeded; returns the rest of stdout.
fn finish(mut child: Child, mut out: BufReader<ChildStdout>) -> String {
    drop(child.stdin.take());
    let mut rest = String::new();
    std::io::Read::read_to_string(&mut out, &mut rest).unwrap();
    let mut err = String::new();
    std::io::Read::read_to_string(child.stderr.as_mut().unwrap(), &mut err).unwrap();
    let status = child.wait().unwrap();
    assert!(status.success(), "python3 failed: {err}");
    rest
}

fn every_kind() -> Vec<I> {
    vec![
        "howdy".into(),
        I::Bytes(b"HoWdY".to_vec()),
        (-273.154).into(),
        100.into(),
        I::None,
        true.into(),
        42.into(),
        "encodés".into(),
        "".into(),
        I::Bytes(vec![]),
        i64::MIN.into(),
        i64::MAX.into(),
        false.into(),
        "ñ中ñ中ñ中".into(),
    ]
}

/// mp creates; python3 attaches by name, finds every item, writes some
/// (changing their types); mp sees the writes.
#[test]
fn python3_attaches_to_a_list_made_here() {
    let _g = guard();
    let script = r#"
import sys
from multiprocessing import shared_memory, resource_tracker
sl = shared_memory.ShareableList(name=sys.argv[1])
# 3.11 registers attached blocks too: its tracker must not unlink ours.
resource_tracker.unregister(sl.shm._name, "shared_memory")
want = ['howdy', b'HoWdY', -273.154, 100, None, True, 42, 'encodés', '', b'',
        -2**63, 2**63 - 1, False, 'ñ中ñ中ñ中']
assert list(sl) == want, list(sl)
assert sl.format == '8s8sdqxxxxxx?xxxxxxxx?q8s8s8sqqxxxxxxx?16s', sl.format
sl[0] = 'bye'
sl[1] = None
sl[3] = True
sl[4] = b'data'
sl[5] = 1.5
sl[6] = '中'
sl[13] = 'x' * 16
print('ok', flush=True)
sl.shm.close()
"#;
    let list = ShareableList::create(None, &every_kind()).unwrap();
    let Some((child, mut out)) = python(script, &[list.name()]) else {
        list.shm().unlink().unwrap();
        return;
    };
    assert_eq!(line(&mut out), "ok");
    finish(child, out);
    let mut want = every_kind();
    want[0] = "bye".into();
    want[1] = I::None;
    want[3] = true.into();
    want[4] = I::Bytes(b"data".to_vec());
    want[5] = 1.5.into();
    want[6] = "中".into();
    want[13] = "x".repeat(16).into();
    assert_eq!(list.to_vec().unwrap(), want);
    assert_eq!(
        list.format().unwrap(),
        "8sxxxxxx?xdxxxxxxx?8sd8s8s8s8sqqxxxxxxx?16s"
    );
    list.shm().unlink().unwrap();
}

/// python3 creates (and keeps it alive); mp attaches by name, reads every
/// item, writes some; python3 sees the writes.
#[test]
fn a_list_made_by_python3_is_attached_here() {
    let _g = guard();
    let script = r#"
import sys
from multiprocessing import shared_memory
sl = shared_memory.ShareableList(['howdy', b'HoWdY', -273.154, 100, None, True, 42, 'ñ'])
print(sl.shm.name, flush=True)
sys.stdin.readline()
print(list(sl) == ['bye', b'', 7, 'str!', False, None, 2.25, b'\xff'] or list(sl), flush=True)
sl.shm.close()
sl.shm.unlink()
"#;
    let Some((mut child, mut out)) = python(script, &[]) else {
        return;
    };
    let name = line(&mut out);
    let list = ShareableList::attach(&name).unwrap();
    assert_eq!(list.len(), 8);
    assert_eq!(
        list.to_vec().unwrap(),
        vec![
            "howdy".into(),
            I::Bytes(b"HoWdY".to_vec()),
            (-273.154).into(),
            100.into(),
            I::None,
            true.into(),
            42.into(),
            "ñ".into(),
        ]
    );
    assert_eq!(list.format().unwrap(), "8s8sdqxxxxxx?xxxxxxxx?q8s");
    let writes: Vec<I> = vec![
        "bye".into(),
        I::Bytes(vec![]),
        7.into(),
        "str!".into(),
        false.into(),
        I::None,
        2.25.into(),
        I::Bytes(vec![0xff]),
    ];
    for (i, item) in writes.into_iter().enumerate() {
        list.set(i, item).unwrap();
    }
    child.stdin.as_mut().unwrap().write_all(b"go\n").unwrap();
    assert_eq!(line(&mut out), "True");
    finish(child, out);
    drop(list);
    assert!(ShareableList::attach(&name).is_err(), "python3 unlinked it");
}

/// CPython's `test_shared_memory_ShareableList_basics`, same inputs and
/// assertions (indexes from the end written as `len - k`).
#[test]
fn cpython_basics() {
    let _g = guard();
    let items: Vec<I> = vec![
        "howdy".into(),
        I::Bytes(b"HoWdY".to_vec()),
        (-273.154).into(),
        100.into(),
        I::None,
        true.into(),
        42.into(),
    ];
    let sl = ShareableList::create(None, &items).unwrap();
    // __repr__
    let repr = format!("{sl:?}");
    assert!(repr.contains(sl.name()), "{repr}");
    assert!(repr.contains(&format!("{items:?}")), "{repr}");
    // Index out of range (get, set).
    assert!(matches!(
        sl.get(7),
        Err(Error::Index {
            index: 7,
            len: 7,
            ..
        })
    ));
    assert!(matches!(sl.set(7, 2.into()), Err(Error::Index { .. })));
    // Assign without format change (str -> str).
    let current = sl.format().unwrap();
    sl.set(0, "howdy".into()).unwrap();
    assert_eq!(sl.format().unwrap(), current);
    assert_eq!(sl.format().unwrap(), "8s8sdqxxxxxx?xxxxxxxx?q");
    assert_eq!(sl.len(), 7);
    assert!(matches!(
        sl.index(&"100".into()),
        Err(Error::Invalid { .. })
    ));
    assert_eq!(sl.index(&100.into()).unwrap(), 3);
    assert_eq!(sl.get(0).unwrap(), "howdy".into());
    assert_eq!(sl.get(sl.len() - 2).unwrap(), true.into());
    assert_eq!(sl.to_vec().unwrap(), items);
    // Modifying items.
    sl.set(3, 42.into()).unwrap();
    assert_eq!(sl.get(3).unwrap(), 42.into());
    sl.set(4, "some".into()).unwrap(); // a change of type
    assert_eq!(sl.get(4).unwrap(), "some".into());
    assert_eq!(sl.format().unwrap(), "8s8sdq8sxxxxxxx?q");
    let whole = |sl: &ShareableList| {
        let mut all = vec![0u8; sl.shm().size()];
        sl.shm().read_at(0, &mut all).unwrap();
        all
    };
    let before = whole(&sl);
    let err = sl.set(4, "far too many".into()).unwrap_err();
    assert!(matches!(err, Error::Invalid { .. }), "{err}");
    assert!(
        err.to_string().contains("exceeds available storage"),
        "{err}"
    );
    assert_eq!(whole(&sl), before, "a refused set changes nothing");
    assert_eq!(sl.get(4).unwrap(), "some".into());
    sl.set(0, "encodés".into()).unwrap(); // exactly 8 bytes of UTF-8
    assert_eq!(sl.get(0).unwrap(), "encodés".into());
    assert_eq!(
        sl.get(1).unwrap(),
        I::Bytes(b"HoWdY".to_vec()),
        "no spillage"
    );
    let err = sl.set(0, "encodées".into()).unwrap_err(); // 9 bytes
    assert!(
        err.to_string().contains("exceeds available storage"),
        "{err}"
    );
    assert_eq!(sl.get(1).unwrap(), I::Bytes(b"HoWdY".to_vec()));
    let err = sl.set(1, I::Bytes(b"123456789".to_vec())).unwrap_err();
    assert!(
        err.to_string().contains("exceeds available storage"),
        "{err}"
    );
    assert_eq!(sl.get(1).unwrap(), I::Bytes(b"HoWdY".to_vec()));
    // count()
    assert_eq!(sl.count(&42.into()).unwrap(), 2);
    assert_eq!(sl.count(&I::Bytes(b"HoWdY".to_vec())).unwrap(), 1);
    assert_eq!(sl.count(&I::Bytes(b"adios".to_vec())).unwrap(), 0);
    // A duplicate under a given name.
    let dup_name = format!("psm_{}_test03_duplicate", std::process::id());
    let copy = ShareableList::create(Some(&dup_name), &sl.to_vec().unwrap()).unwrap();
    assert_ne!(sl.name(), copy.name());
    assert_eq!(copy.name(), dup_name);
    assert_eq!(sl.to_vec().unwrap(), copy.to_vec().unwrap());
    assert_eq!(sl.format().unwrap(), copy.format().unwrap());
    copy.set(copy.len() - 1, 77.into()).unwrap();
    assert_eq!(copy.get(copy.len() - 1).unwrap(), 77.into());
    assert_ne!(sl.get(sl.len() - 1).unwrap(), 77.into());
    copy.shm().unlink().unwrap();
    drop(copy);
    // A second handle on the same list.
    let tethered = ShareableList::attach(sl.name()).unwrap();
    assert_eq!(sl.name(), tethered.name());
    tethered.set(tethered.len() - 1, 880.into()).unwrap();
    assert_eq!(sl.get(sl.len() - 1).unwrap(), 880.into());
    drop(tethered);
    sl.shm().unlink().unwrap();
    // An empty list.
    let empty = ShareableList::create(None, &[]).unwrap();
    assert_eq!(empty.len(), 0);
    assert!(empty.is_empty());
    assert_eq!(empty.format().unwrap(), "");
    assert_eq!(empty.count(&"any".into()).unwrap(), 0);
    assert!(matches!(empty.index(&I::None), Err(Error::Invalid { .. })));
    empty.shm().unlink().unwrap();
}

fn change_and_check((sl, conn): (ShareableList, Connection)) {
    assert_eq!(sl.get(sl.len() - 1).unwrap(), 9.into());
    sl.set(4, "changed".into()).unwrap();
    conn.send(&()).unwrap();
    let () = conn.recv().unwrap();
    assert_eq!(sl.get(3).unwrap(), "newvalue".into());
}

/// CPython's `test_shared_memory_ShareableList_pickling`: the list as a
/// handle in a child's args is the same list, both ways.
fn a_list_in_a_childs_args_is_the_same_list(method: StartMethod) {
    let _g = guard();
    let items: Vec<I> = (0..10).map(I::Int).collect();
    let sl = ShareableList::create(None, &items).unwrap();
    let (here, there) = pipe(true).unwrap();
    let mut p = Process::new(change_and_check, (sl.clone(), there)).start_method(method);
    p.start().unwrap();
    let () = here.recv().unwrap();
    assert_eq!(sl.get(4).unwrap(), "changed".into());
    sl.set(3, "newvalue".into()).unwrap();
    here.send(&()).unwrap();
    assert_eq!(p.join().unwrap(), 0);
    sl.shm().unlink().unwrap();
}

fn first_item(sl: ShareableList) -> I {
    sl.get(0).unwrap()
}

/// The child checks the header again on arrival: a list whose block was
/// damaged after the parent attached is `Error::Decode` from the child's
/// arguments, not a panic in the child.
fn a_corrupt_list_in_a_childs_args_is_refused_on_arrival(method: StartMethod) {
    let _g = guard();
    let sl = ShareableList::create(None, &[1.into(), 2.into()]).unwrap();
    let ok = mp_proc::get_context(method)
        .spawn(first_item, sl.clone())
        .unwrap();
    assert_eq!(ok.join().unwrap(), 1.into());
    sl.shm().write_at(0, &(-5i64).to_ne_bytes()).unwrap();
    let refused = mp_proc::get_context(method)
        .spawn(first_item, sl.clone())
        .unwrap();
    match refused.join() {
        Err(Error::Decode(e)) => {
            assert!(e.to_string().contains("not a valid ShareableList"), "{e}")
        }
        other => panic!("a corrupt list arrived: {other:?}"),
    }
    sl.shm().unlink().unwrap();
}

/// CPython's `test_shared_memory_ShareableList_pickling_dead_object`: once
/// unlinked, the list cannot be attached by name.
#[test]
fn an_unlinked_list_cannot_be_attached() {
    let _g = guard();
    let items: Vec<I> = (0..10).map(I::Int).collect();
    let sl = ShareableList::create(None, &items).unwrap();
    let name = sl.name().to_string();
    sl.shm().unlink().unwrap();
    drop(sl);
    match ShareableList::attach(&name) {
        Err(Error::Os { source, .. }) => {
            assert_eq!(source.kind(), std::io::ErrorKind::NotFound)
        }
        other => panic!("attached a dead list: {other:?}"),
    }
}

/// python3 writes what its own ShareableList cannot read back: a `str`
/// longer than its slot (CPython sizes slots by characters and cuts the
/// UTF-8 short), and a format larger than the slot. Each is a clear error
/// here; the other items still read.
#[test]
fn a_python3_list_with_a_string_longer_than_its_slot_is_an_error() {
    let _g = guard();
    let script = r#"
import sys
from multiprocessing import shared_memory
sl = shared_memory.ShareableList(['中中中中', 'ok', 7])
off = sl._offset_packing_formats + 2 * 8
sl.shm.buf[off:off + 8] = b'64s\0\0\0\0\0'
sl.shm.buf[sl._offset_back_transform_codes + 2] = 1
print(sl.shm.name, flush=True)
sys.stdin.readline()
sl.shm.close()
sl.shm.unlink()
"#;
    let Some((child, mut out)) = python(script, &[]) else {
        return;
    };
    let name = line(&mut out);
    let sl = ShareableList::attach(&name).unwrap();
    let err = sl.get(0).unwrap_err();
    assert!(matches!(err, Error::Decode(_)), "{err}");
    assert!(err.to_string().contains("not UTF-8"), "{err}");
    assert_eq!(sl.get(1).unwrap(), "ok".into());
    let err = sl.get(2).unwrap_err();
    assert!(matches!(err, Error::Decode(_)), "{err}");
    assert!(err.to_string().contains("larger than its slot"), "{err}");
    // A write repairs it.
    sl.set(0, "中中".into()).unwrap();
    assert_eq!(sl.get(0).unwrap(), "中中".into());
    drop(sl);
    finish(child, out);
}

/// A block whose header or items were overwritten: every one a clear
/// `Error::Decode` on attach or on get, nothing else.
#[test]
fn corrupt_blocks_are_errors() {
    let _g = guard();
    let decode = |r: Result<ShareableList, Error>| match r {
        Err(Error::Decode(e)) => e.to_string(),
        other => panic!("not a Decode error: {other:?}"),
    };
    // Too short for a header.
    let tiny = SharedMemory::create(None, 4).unwrap();
    let msg = decode(ShareableList::attach(tiny.name()));
    assert!(msg.contains("too short"), "{msg}");
    tiny.unlink().unwrap();

    let items: Vec<I> = vec!["howdy".into(), 1.into(), I::Bytes(b"ab".to_vec())];
    let sl = ShareableList::create(None, &items).unwrap();
    let shm = sl.shm();
    let word = |at: usize, v: i64| shm.write_at(at, &v.to_ne_bytes()).unwrap();
    // Header: length, offsets.
    for (at, v) in [
        (0, -1),
        (0, i64::MAX),
        (0, 1000),
        (8, 8),        // the first offset is not 0
        (24, 0),       // decreasing offsets
        (32, 1 << 40), // the data ends past the block
        (32, -8),
    ] {
        let mut saved = [0u8; 8];
        shm.read_at(at, &mut saved).unwrap();
        word(at, v);
        let msg = decode(ShareableList::attach(sl.name()));
        assert!(msg.contains("not a valid ShareableList"), "{msg}");
        shm.write_at(at, &saved).unwrap();
        ShareableList::attach(sl.name()).unwrap();
    }
    // Items: format, kind, bytes.
    let data = 5 * 8;
    let formats = data + 8 + 8 + 8;
    let kinds = formats + 3 * 8;
    let get_err = |i: usize| match sl.get(i) {
        Err(Error::Decode(e)) => e.to_string(),
        other => panic!("not a Decode error: {other:?}"),
    };
    shm.write_at(formats, b"zz\0\0\0\0\0\0").unwrap();
    assert!(get_err(0).contains("unknown"));
    assert!(sl.format().is_err());
    shm.write_at(formats, b"16s\0\0\0\0\0").unwrap();
    assert!(get_err(0).contains("larger than its slot"));
    shm.write_at(formats, b"8s\0\0\0\0\0\0").unwrap();
    shm.write_at(kinds, &[9]).unwrap();
    assert!(get_err(0).contains("kind 9"));
    shm.write_at(kinds + 1, &[1]).unwrap(); // a str kind on a `q`
    assert!(get_err(1).contains("kind 1"));
    shm.write_at(kinds, &[1]).unwrap();
    shm.write_at(data, b"\xff\xfe").unwrap();
    assert!(get_err(0).contains("not UTF-8"));
    // Set still works on a damaged item, and repairs it.
    sl.set(0, "fine".into()).unwrap();
    sl.set(1, 1.into()).unwrap();
    assert_eq!(sl.get(0).unwrap(), "fine".into());
    assert_eq!(sl.get(1).unwrap(), 1.into());
    sl.shm().unlink().unwrap();
}

/// Any bytes anywhere in a list's block: attach, get, set, format and
/// Debug return (Ok or Err), never panic.
#[test]
fn any_damage_is_an_error_at_worst() {
    use proptest::prelude::*;
    let _g = guard();
    let mut runner = proptest::test_runner::TestRunner::new(ProptestConfig::with_cases(128));
    let writes = proptest::collection::vec((0usize..200, any::<u8>()), 1..12);
    runner
        .run(&writes, |writes| {
            let items: Vec<I> = vec![
                "howdy".into(),
                1.into(),
                I::None,
                I::Bytes(vec![1; 9]),
                2.5.into(),
            ];
            let sl = ShareableList::create(None, &items).unwrap();
            let size = sl.shm().size();
            for (at, b) in writes {
                sl.shm().write_at(at % size, &[b]).unwrap();
            }
            if let Ok(other) = ShareableList::attach(sl.name()) {
                for i in 0..other.len() + 1 {
                    let _ = other.get(i);
                    let _ = other.set(i, "x".into());
                }
                let _ = other.format();
                let _ = format!("{other:?}");
            }
            sl.shm().unlink().unwrap();
            Ok(())
        })
        .unwrap();
}
