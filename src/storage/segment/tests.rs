//! Tests of one segment: append and stage, reopen and recover, failed and short writes,
//! damaged records and headers, file names.

use std::path::Path;

use super::*;
use crate::storage::frame::{self, RecordKind, HEADER_BYTES};

fn meta(seq: u64, bytes: u64) -> SegmentMeta {
    SegmentMeta {
        shard_id: 0,
        shard_count: 1,
        seq,
        created_unix_nanos: 42,
        file_bytes: bytes,
    }
}

fn records_of(seg: &mut Segment) -> (Vec<(u32, Vec<u8>)>, ScanReport) {
    let mut out = Vec::new();
    let report = seg.recover(|off, _, p| out.push((off, p.to_vec())));
    (out, report)
}

#[test]
fn append_reopen_and_read_back() {
    let dir = tempfile::tempdir().unwrap();
    let mut seg = Segment::create(dir.path(), meta(7, 4096)).unwrap();
    let a = seg.append(RecordKind::Spans, b"first record").unwrap();
    let b = seg.append(RecordKind::Logs, &[9u8; 100]).unwrap();
    assert_eq!(
        seg.read(a).unwrap(),
        (RecordKind::Spans, &b"first record"[..])
    );
    drop(seg);
    let mut seg = Segment::open(&dir.path().join(file_name(7)), true).unwrap();
    assert_eq!(seg.meta, meta(7, 4096));
    let (recs, report) = records_of(&mut seg);
    assert_eq!(
        recs,
        vec![(a, b"first record".to_vec()), (b, vec![9u8; 100])]
    );
    assert_eq!(
        report,
        ScanReport {
            records: 2,
            ..Default::default()
        }
    );
    // Appending continues after the last record.
    let c = seg.append(RecordKind::Spans, b"third").unwrap();
    assert!(c > b);
}

#[test]
fn torn_tail_is_truncated_and_corrupt_middle_is_skipped() {
    let dir = tempfile::tempdir().unwrap();
    let mut seg = Segment::create(dir.path(), meta(1, 8192)).unwrap();
    let offs: Vec<u32> = (0..4u8)
        .map(|i| seg.append(RecordKind::Spans, &[i + 1; 50]).unwrap())
        .collect();
    let path = seg.path.clone();
    drop(seg);
    let mut raw = std::fs::read(&path).unwrap();
    // Rot a byte inside record 1 (followed by intact records): corrupt, skipped.
    raw[offs[1] as usize + HEADER_BYTES + 3] ^= 0xff;
    // Tear the last record: half of its payload is gone.
    let last = offs[3] as usize;
    raw[last + HEADER_BYTES + 25..last + HEADER_BYTES + 50].fill(0);
    std::fs::write(&path, &raw).unwrap();

    let mut seg = Segment::open(&path, true).unwrap();
    let (recs, report) = records_of(&mut seg);
    assert_eq!(
        recs.iter().map(|r| r.0).collect::<Vec<_>>(),
        vec![offs[0], offs[2]]
    );
    assert_eq!(report.corrupt, 1);
    assert_eq!(report.records, 2);
    assert!(report.truncated_bytes > 0);
    assert_eq!(seg.write_pos(), offs[3] as usize);
    // The torn bytes are zeroed: a new append lands where the torn record was.
    assert_eq!(seg.append(RecordKind::Logs, b"after").unwrap(), offs[3]);
    assert!(
        seg.read(offs[1]).is_err(),
        "a corrupt record is never served"
    );
    // ... and zeroed in the file: the next recovery ends cleanly after the new record.
    drop(seg);
    let mut seg = Segment::open(&path, true).unwrap();
    let (recs, report) = records_of(&mut seg);
    assert_eq!(
        recs.iter().map(|r| r.0).collect::<Vec<_>>(),
        vec![offs[0], offs[2], offs[3]]
    );
    assert_eq!((report.corrupt, report.truncated_bytes), (1, 0));
}

#[test]
fn staged_records_are_served_only_once_flushed_in_one_write() {
    let dir = tempfile::tempdir().unwrap();
    let mut seg = Segment::create(dir.path(), meta(1, 8192)).unwrap();
    let a = seg.stage(RecordKind::Spans, b"first");
    let b = seg.stage(RecordKind::Logs, &[7u8; 100]);
    assert_eq!(a as usize, SEGMENT_HEADER_BYTES);
    assert_eq!(b as usize, a as usize + frame::frame_bytes(5));
    assert_eq!(seg.end(), b as usize + frame::frame_bytes(100));
    assert_eq!(seg.write_pos(), SEGMENT_HEADER_BYTES, "nothing written yet");
    assert!(!seg.is_empty());
    assert!(matches!(seg.read(a), Err(ReadError::OutOfRange(_))));
    // Nothing in the file either: a crash now leaves an empty segment.
    let raw = std::fs::read(&seg.path).unwrap();
    assert!(raw[SEGMENT_HEADER_BYTES..].iter().all(|&x| x == 0));

    assert_eq!(seg.flush().unwrap(), seg.end() - SEGMENT_HEADER_BYTES);
    assert_eq!((seg.write_pos(), seg.staged_bytes()), (seg.end(), 0));
    assert_eq!(seg.read(a).unwrap(), (RecordKind::Spans, &b"first"[..]));
    assert_eq!(seg.read(b).unwrap().1, &[7u8; 100][..]);
    assert_eq!(seg.flush().unwrap(), 0, "nothing staged: no write");
    let path = seg.path.clone();
    drop(seg);
    let mut seg = Segment::open(&path, true).unwrap();
    let (recs, _) = records_of(&mut seg);
    assert_eq!(recs.iter().map(|r| r.0).collect::<Vec<_>>(), vec![a, b]);
}

#[test]
fn a_failed_flush_drops_the_batch_and_the_write_position_stays() {
    let dir = tempfile::tempdir().unwrap();
    let mut seg = Segment::create(dir.path(), meta(1, 8192)).unwrap();
    let a = seg.append(RecordKind::Spans, b"kept").unwrap();
    let written = seg.write_pos();
    // Writes through a read-only descriptor fail (EBADF), like a dying disk would.
    let writable = seg.file();
    seg.fail_writes();
    let lost = seg.stage(RecordKind::Logs, b"lost");
    assert!(seg.flush().is_err());
    assert_eq!((seg.write_pos(), seg.end()), (written, written));
    seg.file = writable;
    // The next record takes the lost one's place.
    assert_eq!(seg.append(RecordKind::Logs, b"next").unwrap(), lost);
    assert_eq!(seg.read(lost).unwrap().1, b"next");
    assert_eq!(seg.read(a).unwrap().1, b"kept");
}

/// Where [`short_write_child`] writes its segment; set only for that child process.
const SHORT_WRITE_CHILD_ENV: &str = "GLUST_TEST_SHORT_WRITE_DIR";

#[test]
fn a_short_failed_write_is_zeroed_again() {
    // A real short write: the file size limit (RLIMIT_FSIZE) cuts a write that crosses it,
    // and the next write fails with EFBIG. The limit holds for the whole process, so that
    // part runs in a child process: this test binary, running `short_write_child` only.
    let dir = tempfile::tempdir().unwrap();
    let out = std::process::Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "storage::segment::tests::short_write_child"])
        .args(["--ignored", "--test-threads", "1"])
        .env(SHORT_WRITE_CHILD_ENV, dir.path())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && stdout.contains("1 passed"),
        "child: {stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Reopened, as recovery does: the record written before is there, and no record of the
    // failed batch, though two of them were whole in the file after the short write.
    let mut seg = Segment::open(&dir.path().join(file_name(1)), true).unwrap();
    let (recs, report) = records_of(&mut seg);
    let payloads: Vec<_> = recs.into_iter().map(|(_, p)| p).collect();
    assert_eq!(payloads, vec![b"kept".to_vec()], "{report:?}");
}

#[test]
#[ignore = "run by a_short_failed_write_is_zeroed_again, in a child process"]
fn short_write_child() {
    let Some(dir) = std::env::var_os(SHORT_WRITE_CHILD_ENV) else {
        return;
    };
    let mut seg = Segment::create(Path::new(&dir), meta(1, 64 << 10)).unwrap();
    seg.append(RecordKind::Spans, b"kept").unwrap();
    let written = seg.write_pos();
    // Three records in one batch; the limit falls inside the third.
    let payload = [7u8; 1000];
    for _ in 0..3 {
        seg.stage(RecordKind::Logs, &payload);
    }
    let limit = written + 2 * frame::frame_bytes(payload.len()) + 100;
    // SAFETY: this process runs this test alone; the limit and SIGXFSZ (whose default
    // kills the process, ignored so the write fails with EFBIG instead) are set before
    // any write crosses it.
    unsafe {
        libc::signal(libc::SIGXFSZ, libc::SIG_IGN);
        let lim = libc::rlimit {
            rlim_cur: limit as libc::rlim_t,
            rlim_max: libc::RLIM_INFINITY,
        };
        assert_eq!(libc::setrlimit(libc::RLIMIT_FSIZE, &lim), 0);
    }
    let err = seg.flush().unwrap_err();
    assert_eq!(err.raw_os_error(), Some(libc::EFBIG), "{err}");
    assert_eq!((seg.write_pos(), seg.end()), (written, written));
}

#[test]
fn garbage_header_ends_the_scan() {
    let dir = tempfile::tempdir().unwrap();
    let mut seg = Segment::create(dir.path(), meta(1, 4096)).unwrap();
    let a = seg.append(RecordKind::Spans, b"ok").unwrap();
    let path = seg.path.clone();
    drop(seg);
    let mut raw = std::fs::read(&path).unwrap();
    let next = a as usize + frame::frame_bytes(2);
    raw[next..next + 40].fill(0xAB);
    std::fs::write(&path, &raw).unwrap();
    let mut seg = Segment::open(&path, false).unwrap();
    let (recs, report) = records_of(&mut seg);
    assert_eq!(recs.len(), 1);
    assert_eq!(report.truncated_bytes, 40);
}

#[test]
fn a_damaged_header_in_the_middle_skips_one_record_not_the_rest() {
    let dir = tempfile::tempdir().unwrap();
    let mut seg = Segment::create(dir.path(), meta(1, 8192)).unwrap();
    let offs: Vec<u32> = (0..5u8)
        .map(|i| seg.append(RecordKind::Logs, &[i + 1; 70]).unwrap())
        .collect();
    let path = seg.path.clone();
    drop(seg);
    let mut raw = std::fs::read(&path).unwrap();
    raw[offs[1] as usize + 4] = 0xee; // an impossible kind in record 1's header
    raw[offs[3] as usize] ^= 0xff; // a wrong length in record 3's header
    std::fs::write(&path, &raw).unwrap();
    let mut seg = Segment::open(&path, true).unwrap();
    let (recs, report) = records_of(&mut seg);
    assert_eq!(
        recs.iter().map(|r| r.0).collect::<Vec<_>>(),
        vec![offs[0], offs[2], offs[4]]
    );
    assert_eq!(report.corrupt, 2);
    assert_eq!(report.truncated_bytes, 0);
}

#[test]
fn bad_segment_headers_are_reported() {
    let dir = tempfile::tempdir().unwrap();
    let seg = Segment::create(dir.path(), meta(3, 4096)).unwrap();
    let path = seg.path.clone();
    drop(seg);
    let mut raw = std::fs::read(&path).unwrap();
    raw[30] ^= 1;
    std::fs::write(&path, &raw).unwrap();
    assert!(matches!(
        Segment::open(&path, false),
        Err(SegmentError::HeaderChecksum { .. })
    ));
    std::fs::write(&path, b"tiny").unwrap();
    assert!(matches!(
        Segment::open(&path, false),
        Err(SegmentError::TooSmall(4))
    ));
}

#[test]
fn file_names_sort_and_parse() {
    assert_eq!(file_name(12), "seg-00000000000000000012.glust");
    assert_eq!(parse_file_name(&file_name(u64::MAX)), Some(u64::MAX));
    assert_eq!(parse_file_name("seg-12.glust"), None);
    assert_eq!(parse_file_name("other"), None);
}
