//! Damaged segments: a record that fails its CRC is never served, a torn or truncated tail is
//! cut, an unreadable segment is left alone; everything intact is still served.

mod common;

use std::path::PathBuf;

use common::*;
use glust::storage::frame::{frame_bytes, HEADER_BYTES};
use glust::storage::segment::SEGMENT_HEADER_BYTES;

/// Offsets and payload lengths of the records of a segment file.
fn records(path: &PathBuf) -> Vec<(usize, usize)> {
    let raw = std::fs::read(path).unwrap();
    let mut out = Vec::new();
    let mut pos = SEGMENT_HEADER_BYTES;
    while pos + HEADER_BYTES <= raw.len() {
        let len = u32::from_le_bytes(raw[pos..pos + 4].try_into().unwrap()) as usize;
        if len == 0 {
            break;
        }
        out.push((pos, len));
        pos += frame_bytes(len);
    }
    out
}

fn segments(server: &Server) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(server.data_dir().join("0"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    v.sort();
    v
}

fn served_traces(server: &Server) -> Vec<String> {
    let json = server.get_json("/api/v1/traces?limit=1000");
    let mut ids: Vec<String> = json["traces"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["traceId"].as_str().unwrap().to_owned())
        .collect();
    ids.sort();
    ids
}

/// One request per trace, so one record per trace: trace `n` is record `n - 1`.
fn fill(server: &Server, traces: u64) {
    for t in 1..=traces {
        assert_eq!(
            server.post_traces(&traces_request("svc", t, 1, 3)).status,
            200
        );
    }
}

#[test]
fn a_corrupt_record_is_skipped_and_the_rest_served() {
    let mut server = Server::start(1);
    fill(&server, 10);
    assert_eq!(server.stop(), 0);
    let seg = segments(&server)[0].clone();
    let recs = records(&seg);
    assert_eq!(recs.len(), 10);
    let mut raw = std::fs::read(&seg).unwrap();
    let (off, len) = recs[4];
    raw[off + HEADER_BYTES + len / 2] ^= 0x40; // rot one bit inside record 5's payload
    std::fs::write(&seg, &raw).unwrap();

    server.spawn();
    let served = served_traces(&server);
    assert_eq!(served.len(), 9);
    assert!(
        !served.contains(&hex(&trace_id(5))),
        "the corrupt record is never served"
    );
    assert_eq!(
        server
            .get(&format!("/api/v1/traces/{}", hex(&trace_id(5))))
            .status,
        404
    );
    assert_eq!(
        server
            .get(&format!("/api/v1/traces/{}", hex(&trace_id(6))))
            .status,
        200
    );
    assert!(
        server.log().contains("corrupt_records=1"),
        "log:\n{}",
        server.log()
    );
    // Writing goes on after the last intact record; the next restart still sees everything.
    fill(&server, 0);
    assert_eq!(
        server.post_traces(&traces_request("svc", 11, 1, 3)).status,
        200
    );
    server.restart();
    assert_eq!(served_traces(&server).len(), 10);
}

#[test]
fn a_torn_tail_is_cut_and_appends_continue_after_it() {
    let mut server = Server::start(1);
    fill(&server, 6);
    assert_eq!(server.stop(), 0);
    let seg = segments(&server)[0].clone();
    let recs = records(&seg);
    let mut raw = std::fs::read(&seg).unwrap();
    let (off, len) = recs[5];
    // The last record's second half never reached the disk.
    raw[off + HEADER_BYTES + len / 2..off + HEADER_BYTES + len].fill(0);
    std::fs::write(&seg, &raw).unwrap();

    server.spawn();
    assert_eq!(served_traces(&server).len(), 5);
    assert!(
        server.log().contains("truncated_bytes="),
        "log:\n{}",
        server.log()
    );
    assert_eq!(
        server.post_traces(&traces_request("svc", 7, 1, 3)).status,
        200
    );
    server.restart();
    let served = served_traces(&server);
    assert_eq!(served.len(), 6);
    assert!(served.contains(&hex(&trace_id(7))));
    assert_eq!(
        records(&seg).len(),
        6,
        "the new record took the torn one's place"
    );
}

#[test]
fn a_truncated_segment_file_keeps_its_intact_prefix() {
    let mut server = Server::start(1);
    fill(&server, 8);
    assert_eq!(server.stop(), 0);
    let seg = segments(&server)[0].clone();
    let recs = records(&seg);
    let (off, len) = recs[6];
    let f = std::fs::OpenOptions::new().write(true).open(&seg).unwrap();
    f.set_len((off + HEADER_BYTES + len / 3) as u64).unwrap(); // cut inside record 7
    drop(f);

    server.spawn();
    assert_eq!(served_traces(&server).len(), 6);
    // The short segment fills up and rolls over; nothing is lost.
    fill(&server, 0);
    for t in 100..140 {
        assert_eq!(
            server.post_traces(&traces_request("svc", t, 1, 3)).status,
            200
        );
    }
    server.restart();
    assert_eq!(served_traces(&server).len(), 46);
}

#[test]
fn an_unreadable_segment_is_left_in_place_and_the_others_served() {
    let mut server = Server::start(1);
    // Enough to fill more than one 256 KiB segment.
    for t in 0..60u64 {
        assert_eq!(
            server
                .post_traces(&traces_request("svc", t * 10, 10, 2))
                .status,
            200
        );
    }
    assert_eq!(server.stop(), 0);
    let segs = segments(&server);
    assert!(segs.len() >= 2);
    let first_records = records(&segs[0]).len();
    assert!(first_records > 0);
    let mut raw = std::fs::read(&segs[0]).unwrap();
    raw[0..8].copy_from_slice(b"NOTGLUST");
    std::fs::write(&segs[0], &raw).unwrap();

    server.spawn();
    let served = served_traces(&server).len();
    assert!(served > 0 && served < 600, "served {served}");
    assert!(
        server.log().contains("not readable"),
        "log:\n{}",
        server.log()
    );
    assert!(
        segs[0].exists(),
        "the damaged file is kept for an operator to look at"
    );
}
