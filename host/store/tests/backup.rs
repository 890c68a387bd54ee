//! Backups of a real store on disk: what goes in comes back, a backup taken
//! while writers run is one instant, and damaged or hostile files are
//! refused without leaving anything behind.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use allama_engine::{RunStore, RunSummary};
use allama_store::SledStore;
use allama_store::audit::{AuditEntry, AuditLog};
use allama_store::backup::{self, BackupError};

const H1: &str = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08";

fn summary(id: &str) -> RunSummary {
    RunSummary {
        id: id.into(),
        playbook: "soc/triage".into(),
        status: "succeeded".into(),
        started_at: 1,
        finished_at: Some(2),
        error: None,
        parent: None,
    }
}

fn entry(n: u32) -> AuditEntry {
    AuditEntry {
        actor: "user:ana".into(),
        action: "playbook.create".into(),
        target: format!("pb-{n} ☕"),
        denied: false,
        detail: serde_json::json!({ "n": n }),
    }
}

/// A store with runs, a blob, an audit chain and a tree of its own.
async fn filled(dir: &Path) -> SledStore {
    let s = SledStore::open(dir).unwrap();
    for i in 0..50 {
        let run = format!("run-{i:03}");
        s.append(
            &run,
            0,
            &[format!("event of {run}").into_bytes(), vec![0, 255, 7]],
        )
        .unwrap();
        s.put_summary(&summary(&run)).unwrap();
    }
    s.put_blob(H1, &vec![42u8; 300_000]).unwrap();
    let log = AuditLog::open(s.db()).unwrap();
    log.append("soc", &(0..20).map(entry).collect::<Vec<_>>())
        .unwrap();
    let other = s.db().open_tree("packages").unwrap();
    other
        .insert(b"soc\0slack", &b"{\"granted\":true}"[..])
        .unwrap();
    s.commit().await.unwrap();
    s
}

fn backup_bytes(s: &SledStore) -> (Vec<u8>, backup::BackupSummary) {
    let mut out = Vec::new();
    let sum = s.backup(&mut out).unwrap();
    assert_eq!(
        sum.bytes,
        out.len() as u64,
        "the summary counts the bytes written"
    );
    (out, sum)
}

#[tokio::test]
async fn what_goes_in_comes_back() {
    let d = tempfile::tempdir().unwrap();
    let s = filled(&d.path().join("data")).await;
    let (bytes, sum) = backup_bytes(&s);
    assert!(sum.entries >= 50 * 2 + 50 + 20, "{sum:?}");
    assert_eq!(sum.blobs, 1);
    assert_eq!(backup::check(&bytes[..]).unwrap(), sum);

    let target = d.path().join("restored");
    let restored_sum = backup::restore(&bytes[..], &target).unwrap();
    assert_eq!(restored_sum, sum);
    let r = SledStore::open(&target).unwrap();
    for i in [0, 17, 49] {
        let run = format!("run-{i:03}");
        assert_eq!(r.history(&run).unwrap(), s.history(&run).unwrap());
        assert_eq!(r.summary(&run).unwrap(), s.summary(&run).unwrap());
    }
    let (page, more) = r.runs_in("soc", &Default::default(), 100).unwrap();
    assert_eq!(
        (page.len(), more),
        (50, false),
        "the scope index came along"
    );
    assert_eq!(r.get_blob(H1).unwrap(), Some(vec![42u8; 300_000]));
    let log = AuditLog::open(r.db()).unwrap();
    assert_eq!(log.verify("soc").unwrap().records, 20);
    assert_eq!(
        log.verify("soc").unwrap().head,
        AuditLog::open(s.db()).unwrap().verify("soc").unwrap().head,
        "the same chain, to the same head"
    );
    assert_eq!(
        r.db()
            .open_tree("packages")
            .unwrap()
            .get(b"soc\0slack")
            .unwrap()
            .as_deref(),
        Some(&b"{\"granted\":true}"[..])
    );
    // A backup of the restore is the same file.
    drop((r, log));
    let again = SledStore::open(&target).unwrap();
    let (bytes2, _) = backup_bytes(&again);
    assert!(bytes2 == bytes, "a backup of the restore is byte-identical");
}

/// Two trees written in turn — `first[i]`, then `second[i]` — hold
/// `first` = `second` or `second` + 1 entries at every instant. A backup
/// that read the trees at different instants would break that (in either
/// order it reads them); one taken behind the gate cannot.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backup_taken_while_writers_run_is_one_instant() {
    let d = tempfile::tempdir().unwrap();
    let s = Arc::new(SledStore::open(&d.path().join("data")).unwrap());
    let (first, second) = (
        s.db().open_tree("first").unwrap(),
        s.db().open_tree("second").unwrap(),
    );
    // Bulk, so reading a tree takes long enough for writes to land during it.
    for t in [&first, &second] {
        let mut b = allama_store::gate::Batch::default();
        for i in 0..30_000u32 {
            b.insert(format!("bulk-{i:06}").as_bytes(), &[7u8; 64][..]);
        }
        t.apply_batch(b).unwrap();
    }
    let stop = Arc::new(AtomicBool::new(false));
    let writer = std::thread::spawn({
        let (first, second, stop) = (first.clone(), second.clone(), stop.clone());
        move || {
            let mut i = 0u64;
            while !stop.load(Ordering::Relaxed) {
                let k = format!("pair-{i:010}");
                first.insert(k.as_bytes(), &[][..]).unwrap();
                second.insert(k.as_bytes(), &[][..]).unwrap();
                i += 1;
            }
            i
        }
    });
    let mut files = Vec::new();
    for _ in 0..6 {
        let mut out = Vec::new();
        s.backup(&mut out).unwrap();
        files.push(out);
    }
    stop.store(true, Ordering::Relaxed);
    let written = writer.join().unwrap();
    assert!(written > 0, "the writer ran");
    let mut seen_progress = std::collections::BTreeSet::new();
    for (n, bytes) in files.iter().enumerate() {
        let target = d.path().join(format!("r{n}"));
        backup::restore(&bytes[..], &target).unwrap();
        let r = SledStore::open(&target).unwrap();
        let count = |name: &str| {
            r.db()
                .open_tree(name)
                .unwrap()
                .scan_prefix(b"pair-")
                .count()
        };
        let (a, b) = (count("first"), count("second"));
        assert!(
            a == b || a == b + 1,
            "backup {n} holds {a} of the first tree's pairs and {b} of the second's: not one instant"
        );
        seen_progress.insert(a);
    }
    assert!(
        seen_progress.len() > 1,
        "the writer wrote between backups: {seen_progress:?}"
    );
}

fn restore_err(bytes: &[u8], target: &Path) -> BackupError {
    let e = backup::restore(bytes, target).expect_err("refused");
    assert!(!target.exists(), "a refused restore leaves no target: {e}");
    let leftovers: Vec<_> = std::fs::read_dir(target.parent().unwrap())
        .unwrap()
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with(".allama-restoring"))
        .collect();
    assert!(leftovers.is_empty(), "staging left behind: {leftovers:?}");
    e
}

fn invalid(e: &BackupError) -> (u64, &str) {
    match e {
        BackupError::Invalid { offset, message } => (*offset, message.as_str()),
        other => panic!("not an Invalid error: {other}"),
    }
}

#[tokio::test]
async fn damaged_and_hostile_files_are_refused_and_leave_nothing() {
    let d = tempfile::tempdir().unwrap();
    let s = filled(&d.path().join("data")).await;
    let (good, _) = backup_bytes(&s);
    let target = d.path().join("out").join("restored");

    // Not a backup at all.
    let e = restore_err(b"{\"json\": true}", &target);
    assert!(e.to_string().contains("not an Allama backup"), "{e}");
    let e = restore_err(b"", &target);
    assert!(invalid(&e).1.contains("cut short"), "{e}");

    // Cut short anywhere: header, a tree name, an entry, a blob, the digest.
    for cut in [
        10,
        20,
        40,
        good.len() / 2,
        good.len() - 300_000,
        good.len() - 1,
    ] {
        let e = restore_err(&good[..cut], &target);
        let (offset, message) = invalid(&e);
        assert!(message.contains("cut short"), "cut at {cut}: {e}");
        assert!(offset <= cut as u64, "cut at {cut}: offset {offset}");
    }

    // One byte changed inside an entry's value: the digest says so.
    let mut flipped = good.clone();
    let at = good.len() - 300_000 - 200;
    flipped[at] ^= 0x01;
    let e = restore_err(&flipped, &target);
    assert!(
        e.to_string().contains("digest") || e.to_string().contains("tag"),
        "{e}"
    );

    // A later version of the format.
    let mut newer = good.clone();
    newer[14..18].copy_from_slice(&2u32.to_be_bytes());
    assert!(
        restore_err(&newer, &target)
            .to_string()
            .contains("format 2")
    );

    // Hand-made files: a lying length, an entry with no tree, a blob name
    // that walks out of the blob directory, an unknown tag, trailing bytes.
    let header = |rest: &[u8]| {
        let mut v = b"ALLAMA-BACKUP\n".to_vec();
        v.extend_from_slice(&1u32.to_be_bytes());
        v.extend_from_slice(rest);
        v
    };
    let mut huge = b"T".to_vec();
    huge.extend_from_slice(&3u32.to_be_bytes());
    huge.extend_from_slice(b"abc");
    huge.push(b'E');
    huge.extend_from_slice(&u32::MAX.to_be_bytes());
    let e = restore_err(&header(&huge), &target);
    assert!(invalid(&e).1.contains("at most"), "{e}");

    let mut orphan = b"E".to_vec();
    orphan.extend_from_slice(&1u32.to_be_bytes());
    orphan.push(b'k');
    let e = restore_err(&header(&orphan), &target);
    assert!(invalid(&e).1.contains("before any tree"), "{e}");

    let mut escape = b"B".to_vec();
    escape.extend_from_slice(format!("{:.<64}", "../../../../etc/cron.d/x").as_bytes());
    escape.extend_from_slice(&3u64.to_be_bytes());
    escape.extend_from_slice(b"pwn");
    let e = restore_err(&header(&escape), &target);
    assert!(invalid(&e).1.contains("64 lowercase hex"), "{e}");

    let e = restore_err(&header(b"\xff"), &target);
    assert!(invalid(&e).1.contains("unknown record tag 0xff"), "{e}");

    let mut twice = b"T".to_vec();
    twice.extend_from_slice(&1u32.to_be_bytes());
    twice.push(b'a');
    let twice = [twice.clone(), twice].concat();
    let e = restore_err(&header(&twice), &target);
    assert!(invalid(&e).1.contains("appears twice"), "{e}");

    let mut trailing = good.clone();
    trailing.push(0);
    let e = restore_err(&trailing, &target);
    assert!(invalid(&e).1.contains("after the trailer"), "{e}");

    // check() says the same without a directory.
    assert!(backup::check(&flipped[..]).is_err());
    assert!(backup::check(&good[..good.len() - 1]).is_err());
}

#[tokio::test]
async fn a_restore_never_overwrites_a_data_directory() {
    let d = tempfile::tempdir().unwrap();
    let s = filled(&d.path().join("data")).await;
    let (good, _) = backup_bytes(&s);
    let busy = d.path().join("busy");
    std::fs::create_dir_all(&busy).unwrap();
    std::fs::write(busy.join("keep.txt"), b"mine").unwrap();
    let e = backup::restore(&good[..], &busy).unwrap_err();
    assert!(matches!(e, BackupError::NotEmpty { .. }), "{e}");
    assert_eq!(std::fs::read(busy.join("keep.txt")).unwrap(), b"mine");
    assert_eq!(std::fs::read_dir(&busy).unwrap().count(), 1);
    // An empty directory is taken.
    let empty = d.path().join("empty");
    std::fs::create_dir_all(&empty).unwrap();
    backup::restore(&good[..], &empty).unwrap();
    assert!(SledStore::open(&empty).is_ok());
}
