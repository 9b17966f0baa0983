//! The fuzz target of the link to a process on another host.

use std::io::Write;
use std::time::Duration;

use crate::StartMethod;
use crate::rt::dial::WireAddress;
use crate::rt::link::{self, Down, Up};

/// The link of a process on another host: `data[0]` picks the side (even:
/// the agent reading what a parent sent, its bootstrap first, then its
/// messages; odd: the parent reading what an agent sent), the rest is the
/// byte stream, then end of file.
pub fn link(data: &[u8]) {
    let Some((&side, stream)) = data.split_first() else {
        return;
    };
    let Ok((r, w)) = crate::sys::fd::pipe() else {
        return;
    };
    let mut reader = link::Reader::new(r);
    let read = |reader: &mut link::Reader| {
        if side % 2 == 0 {
            if let Ok(received) = crate::rt::agent::receive(reader, Duration::from_secs(60)) {
                let _ = received.boot.becoming();
            }
            while let Ok(Some(_)) = reader.next::<Down>(link::MAX_MESSAGE, None) {}
        } else {
            while let Ok(Some(_)) = reader.next::<Up>(link::MAX_MESSAGE, None) {}
        }
    };
    // What fits the pipe is written at once, the rest from a thread (as
    // `fed` does for the other targets).
    if stream.len() <= 16 << 10 {
        let _ = std::fs::File::from(w).write_all(stream);
        read(&mut reader);
        return;
    }
    std::thread::scope(|s| {
        s.spawn(move || {
            let _ = std::fs::File::from(w).write_all(stream);
        });
        read(&mut reader);
        // What the reader left, drained so that the writer ends.
        let _ = std::io::copy(
            &mut std::fs::File::from(reader.into_fd()),
            &mut std::io::sink(),
        );
    });
}

/// Real link traffic: a parent's bootstrap and messages (this build's and
/// another's), an agent's answers, and their usual corruptions.
pub(super) fn seeds() -> Vec<Vec<u8>> {
    fn framed<T: serde::Serialize>(message: &T) -> Vec<u8> {
        link::framed(message).unwrap_or_default()
    }
    let mut seeds = Vec::new();
    for (i, method) in StartMethod::ALL.into_iter().enumerate() {
        let boot = || Box::new(super::sample_bootstrap(i, method));
        let build = crate::sys::image::build_identity();
        let down = [
            framed(&Down::Boot {
                boot: boot(),
                build,
                keepalive: Duration::from_secs(10),
                forward: vec![
                    WireAddress::Tcp(([127, 0, 0, 1], 5000 + i as u16).into()),
                    WireAddress::Unix("/tmp/mp-listener".into()),
                    WireAddress::Abstract("mp-manager".into()),
                ],
            }),
            framed(&Down::Opened { ch: 4 }),
            framed(&Down::Data {
                ch: 0,
                bytes: vec![i as u8; 100],
            }),
            framed(&Down::Signal(15)),
            framed(&Down::Ping),
            framed(&Down::OpenFailed {
                ch: 5,
                reason: "connection refused".into(),
            }),
            framed(&Down::Eof { ch: 1 }),
            framed(&Down::Eof { ch: 4 }),
        ]
        .concat();
        seeds.push([&[0u8][..], &down].concat());
        seeds.push([&[0u8][..], &down[..down.len() / 2]].concat());
        let other = framed(&Down::Boot {
            boot: boot(),
            build: b"gnu-build-id:another".to_vec(),
            forward: Vec::new(),
            keepalive: Duration::ZERO,
        });
        seeds.push([&[2u8][..], &other].concat());
    }
    seeds.push([&[0u8][..], &framed(&Down::Eof { ch: 0 })].concat());
    let up = [
        framed(&Up::Started { pid: 77 }),
        framed(&Up::Open { ch: 3, address: 0 }),
        framed(&Up::Ping),
        framed(&Up::Stdout(b"hello\n".to_vec())),
        framed(&Up::Data {
            ch: 3,
            bytes: b"\0\0\0\x14#CHALLENGE#".to_vec(),
        }),
        framed(&Up::Open {
            ch: u32::MAX - 1,
            address: 99,
        }),
        framed(&Up::Data {
            ch: 0,
            bytes: vec![9; 70_000],
        }),
        framed(&Up::Eof { ch: 0 }),
        framed(&Up::Exited(-9)),
    ]
    .concat();
    seeds.push([&[1u8][..], &up].concat());
    seeds.push([&[1u8][..], &up[..up.len() - 3]].concat());
    seeds.push([&[1u8][..], &framed(&Up::Refused("not the build".into()))].concat());
    seeds.push(vec![1, 0xff, 0xff, 0xff, 0xff, 0, 0, 0, 0, 1, 2]);
    seeds
}
