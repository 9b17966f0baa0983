//! Handles are capabilities (issue 13, finding 1): bytes that no process of
//! this tree made, bytes made for another type, and bytes changed by one bit
//! never become a function reference or a handle.

use mp_proc::codec;
use mp_proc::plumbing::Packed;
use mp_proc::{
    Array, Error, FnPointer, Function, Process, Queue, RawArray, SharedMemory, StartMethod, Value,
};
use serde::{Deserialize, Serialize};

use mp_testkit::guard;

fn seven() -> Vec<u8> {
    vec![7]
}

fn square(x: u64) -> u64 {
    x * x
}

fn is_decode_error<T: std::fmt::Debug>(r: &mp_proc::Result<T>, needle: &str) -> bool {
    match r {
        Err(Error::Decode(e)) => e.to_string().contains(needle),
        _ => false,
    }
}

#[test]
fn a_function_pointer_does_not_decode_as_another_type() {
    let bytes = codec::encode(&FnPointer::new(seven as fn() -> Vec<u8>)).unwrap();
    // Before: this decoded, `get()` returned Ok, and the call segfaulted.
    let retyped = codec::decode::<FnPointer<fn(u64) -> u64>>(&bytes);
    assert!(
        is_decode_error(&retyped, "another type"),
        "{:?}",
        retyped.map(|_| ())
    );
    let back = codec::decode::<FnPointer<fn() -> Vec<u8>>>(&bytes).unwrap();
    assert_eq!(back.get().unwrap()(), [7]);
}

/// Every one-bit change of `bytes` fails to decode as `T`.
fn every_bit_flip_fails<T: serde::de::DeserializeOwned>(bytes: &[u8]) {
    for bit in 0..bytes.len() * 8 {
        let mut edited = bytes.to_vec();
        edited[bit / 8] ^= 1 << (bit % 8);
        assert!(
            codec::decode::<T>(&edited).is_err(),
            "bit {bit} of {} flipped still decodes",
            bytes.len()
        );
    }
}

#[test]
fn function_references_edited_by_one_bit_do_not_decode() {
    // Before: an offset moved by 1 or 3 bytes passed `get()` (inside the
    // image), and calling it jumped into the middle of a function.
    let p = codec::encode(&FnPointer::new(square as fn(u64) -> u64)).unwrap();
    every_bit_flip_fails::<FnPointer<fn(u64) -> u64>>(&p);
    let f = codec::encode(&Function::new(square).erased()).unwrap();
    every_bit_flip_fails::<mp_proc::plumbing::ErasedFunction>(&f);
    assert!(codec::decode::<mp_proc::plumbing::ErasedFunction>(&f).is_ok());
}

/// The fields of an `ErasedFunction` as they go on the wire.
#[derive(Serialize, Deserialize)]
struct ErasedWire(i64, i64, (u64, u64, i64), [u8; 16]);

#[test]
fn an_erased_function_with_runner_and_target_swapped_does_not_decode() {
    let bytes = codec::encode(&Function::new(square).erased()).unwrap();
    let ErasedWire(runner, target, fp, tag) = codec::decode(&bytes).unwrap();
    // Before: this decoded and ran `square` as the runner, on a runner's
    // arguments.
    let swapped = codec::encode(&ErasedWire(target, runner, fp, tag)).unwrap();
    let r = codec::decode::<mp_proc::plumbing::ErasedFunction>(&swapped);
    assert!(
        is_decode_error(&r, "signature does not check"),
        "{:?}",
        r.map(|_| ())
    );
    // Nor with a tag of zeros, nor one from another function.
    let zero = codec::encode(&ErasedWire(target, runner, fp, [0; 16])).unwrap();
    assert!(codec::decode::<mp_proc::plumbing::ErasedFunction>(&zero).is_err());
}

/// Runs in a re-run of this binary (another process tree, another authkey):
/// prints the hex of a function pointer and an erased function made there.
pub(crate) fn print_foreign_handles() {
    let hex = |b: Vec<u8>| b.iter().map(|x| format!("{x:02x}")).collect::<String>();
    println!(
        "fnpointer={}",
        hex(codec::encode(&FnPointer::new(square as fn(u64) -> u64)).unwrap())
    );
    println!(
        "erased={}",
        hex(codec::encode(&Function::new(square).erased()).unwrap())
    );
}

fn unhex(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

#[test]
fn function_references_of_another_process_tree_do_not_decode() {
    let _g = guard();
    let out = mp_testkit::scenario("foreign_handles");
    let text = String::from_utf8(out.stdout).unwrap();
    let field = |name: &str| {
        text.split_whitespace()
            .find_map(|l| l.strip_prefix(&format!("{name}=")))
            .map(unhex)
            .unwrap_or_else(|| panic!("no {name} in {text}"))
    };
    // The same executable (same fingerprint, same offsets), another authkey.
    let p = codec::decode::<FnPointer<fn(u64) -> u64>>(&field("fnpointer"));
    assert!(is_decode_error(&p, "signature does not check"));
    let e = codec::decode::<mp_proc::plumbing::ErasedFunction>(&field("erased"));
    assert!(is_decode_error(&e, "signature does not check"));
    // Made here, the same function decodes.
    let here = codec::encode(&FnPointer::new(square as fn(u64) -> u64)).unwrap();
    assert!(codec::decode::<FnPointer<fn(u64) -> u64>>(&here).is_ok());
}

#[test]
fn a_packed_value_unpacks_only_as_the_type_it_was_packed_as() {
    let _g = guard();
    let v = Value::new(2u8).unwrap();
    let packed = Packed::pack(&v).unwrap();
    // Before: a Value<u8> holding 2 unpacked as a Value<bool> (a bool both
    // true and false).
    assert!(packed.unpack::<Value<bool>>().is_err());
    // Decoded by hand with the handles available (as a function's runner
    // decodes its arguments), the handle itself refuses the other type.
    let r = packed.with_handles(codec::decode::<Value<bool>>).unwrap();
    assert!(is_decode_error(&r, "another type"), "{:?}", r.map(|_| ()));
    let same = packed.unpack::<Value<u8>>().unwrap();
    same.set(3);
    assert_eq!(v.get(), 3);

    let a = Array::from_slice(&[1u32, 2]).unwrap();
    let packed = Packed::pack(&a).unwrap();
    let r = packed.with_handles(codec::decode::<Array<i32>>);
    assert!(r.unwrap().is_err());
    let r = packed.with_handles(codec::decode::<Queue<u32>>);
    assert!(r.unwrap().is_err());
}

#[test]
fn shared_memory_does_not_unpack_as_an_array() {
    let _g = guard();
    let block = SharedMemory::create(None, 4096).unwrap();
    // A header that, read as an array's, claims 2^63 items.
    block.write_at(64, &(1u64 << 63).to_le_bytes()).unwrap();
    block.write_at(72, &2u32.to_le_bytes()).unwrap();
    let packed = Packed::pack(&(block.clone(), String::from("x"))).unwrap();
    // Before: this gave a RawArray<u16> of len 2^63, and `set` wrote
    // anywhere in the process.
    let r = packed.with_handles(codec::decode::<(RawArray<u16>, String)>);
    assert!(
        is_decode_error(&r.unwrap(), "another type"),
        "a SharedMemory became an array"
    );
    block.unlink().unwrap();
}

fn check_value(v: Value<u8>) {
    assert_eq!(v.get(), 9);
    v.set(10);
}

mp_testkit::for_each_method!(handles_made_in_this_tree_still_reach_children);

fn handles_made_in_this_tree_still_reach_children(method: StartMethod) {
    let _g = guard();
    let v = Value::new(9u8).unwrap();
    let mut p = Process::new(check_value, v.clone()).start_method(method);
    p.start().unwrap();
    assert_eq!(p.join().unwrap(), 0);
    assert_eq!(v.get(), 10);
}

#[test]
fn handles_from_a_peer_are_errors_and_the_connection_goes_on() {
    let _g = guard();
    let (a, b) = mp_proc::pipe(true).unwrap();
    // What a peer can put in a frame: an index and a type number, as a
    // handle with a descriptor writes them, but no descriptor comes along.
    // (A handle's descriptor reference is an enum: variant 0 is an index
    // into a child's args, variant 1 an index among the descriptors that
    // came with the message, with a signature.)
    let ty_guess = 0u64;
    for _ in 0..4 {
        a.send(&(0u32, 0u32, ty_guess)).unwrap();
    }
    a.send(&(0u32, 0u32, ty_guess, String::from("psm_x")))
        .unwrap();
    a.send(&5u8).unwrap();
    assert!(matches!(b.recv::<Value<u8>>(), Err(Error::Decode(_))));
    assert!(matches!(b.recv::<Queue<u8>>(), Err(Error::Decode(_))));
    assert!(matches!(b.recv::<mp_proc::Lock>(), Err(Error::Decode(_))));
    assert!(matches!(b.recv::<mp_proc::Event>(), Err(Error::Decode(_))));
    assert!(matches!(b.recv::<SharedMemory>(), Err(Error::Decode(_))));
    assert_eq!(b.recv::<u8>().unwrap(), 5);
}

/// `handle_type("SharedMemory", 0)` as anyone with this executable can
/// compute it: the type number in a handle's bytes is no secret.
fn shared_memory_type_number() -> u64 {
    use std::hash::{Hash, Hasher};
    let mut h = std::hash::DefaultHasher::new();
    "SharedMemory".hash(&mut h);
    0u64.hash(&mut h);
    h.finish()
}

#[test]
fn bytes_cannot_say_what_a_descriptor_is() {
    let _g = guard();
    let lock = mp_proc::Lock::new().unwrap();
    let packed = Packed::pack(&lock).unwrap();
    // Bytes that name the lock's descriptor as a SharedMemory. Before: this
    // decoded, and writing the "block" overwrote the robust mutex's list
    // pointers, which glibc then followed on unlock (SIGSEGV).
    // (Variant 0 of a handle's descriptor reference: index 0 of a child's args.)
    let bytes = codec::encode(&(0u32, 0u32, shared_memory_type_number(), "x")).unwrap();
    let r = packed.with_handles(|_| codec::decode::<SharedMemory>(&bytes));
    assert!(
        is_decode_error(&r.unwrap(), "another type"),
        "a Lock's descriptor became a SharedMemory"
    );
    let _held = lock.acquire().unwrap();
}

#[test]
fn a_packed_value_from_a_peer_is_an_error() {
    let _g = guard();
    let (a, b) = mp_proc::pipe(true).unwrap();
    a.send(&(Vec::<u8>::new(), Vec::<u32>::new(), 0u64))
        .unwrap();
    let r = b.recv::<Packed>();
    assert!(is_decode_error(&r, "only inside a child's args"));
}
