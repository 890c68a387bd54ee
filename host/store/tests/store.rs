//! The sled store on a real disk: contract, group commit, reopening, damage.

use std::sync::Arc;

use allama_engine::{RunStore, RunSummary};
use allama_store::{OpenError, SledStore};

/// A blob name (a SHA-256 in hex).
const H1: &str = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08";

/// A sled database that says it is a store of schema `version`, written
/// with sled directly, as that version's code did.
fn store_of_version(dir: &std::path::Path, version: u32) -> sled::Db {
    let db = sled::open(dir).expect("sled");
    db.open_tree("meta")
        .unwrap()
        .insert("schema_version", &version.to_be_bytes())
        .unwrap();
    db
}

/// The schema version an open store records.
fn schema_version(s: &SledStore) -> Vec<u8> {
    let meta = s.db().open_tree("meta").unwrap();
    meta.get("schema_version").unwrap().unwrap().to_vec()
}

fn summary(id: &str, status: &str, started_at: u64) -> RunSummary {
    RunSummary {
        id: id.into(),
        playbook: "pb".into(),
        status: status.into(),
        started_at,
        finished_at: None,
        error: None,
        parent: None,
    }
}

#[tokio::test]
async fn histories_index_and_blobs_survive_reopening() {
    let dir = tempfile::tempdir().expect("tempdir");
    {
        let s = SledStore::open(dir.path()).expect("opens");
        s.append("r1", 0, &[b"zero".to_vec(), b"one".to_vec()])
            .expect("append");
        s.append("r1", 2, &[b"two".to_vec()]).expect("append");
        s.append("r10", 0, &[b"other run".to_vec()])
            .expect("append");
        s.put_summary(&summary("r1", "running", 1))
            .expect("summary");
        s.put_summary(&summary("r10", "succeeded", 2))
            .expect("summary");
        s.put_blob(H1, b"blob bytes").expect("blob");
        s.commit().await.expect("commit");
    }
    let s = SledStore::open(dir.path()).expect("reopens");
    assert_eq!(
        s.history("r1").expect("history"),
        [b"zero".to_vec(), b"one".to_vec(), b"two".to_vec()],
        "r1's history does not pick up r10's records"
    );
    assert_eq!(s.active().expect("active"), ["r1"]);
    let list = s.summaries(10).expect("list");
    assert_eq!(list.len(), 2);
    assert_eq!(
        s.get_blob(H1).expect("blob").as_deref(),
        Some(&b"blob bytes"[..])
    );
    assert_eq!(s.get_blob(&"0".repeat(64)).expect("blob"), None);
    // Blob names come from histories; a damaged or hostile one cannot reach
    // outside the blob directory.
    for bad in [
        "../../../etc/passwd",
        "abc",
        "",
        &"A".repeat(64),
        &format!("{}/x", "0".repeat(62)),
    ] {
        assert!(s.get_blob(bad).is_err(), "{bad:?}");
        assert!(s.put_blob(bad, b"x").is_err(), "{bad:?}");
    }
    // Written once: the same name again leaves the first bytes.
    s.put_blob(H1, b"other").expect("blob");
    assert_eq!(
        s.get_blob(H1).expect("blob").as_deref(),
        Some(&b"blob bytes"[..])
    );
    assert!(
        std::fs::read_dir(dir.path().join("payloads"))
            .expect("payloads")
            .all(|e| !e
                .expect("entry")
                .file_name()
                .to_string_lossy()
                .ends_with(".tmp")),
        "no temporary files left"
    );
    s.put_summary(&summary("r1", "failed", 1)).expect("summary");
    assert!(
        s.active().expect("active").is_empty(),
        "a finished run is not active"
    );
}

#[tokio::test]
async fn concurrent_commits_share_syncs() {
    let dir = tempfile::tempdir().expect("tempdir");
    let s = Arc::new(SledStore::open(dir.path()).expect("opens"));
    let before = s.commits();
    let mut tasks = Vec::new();
    for t in 0..64u64 {
        let s = s.clone();
        tasks.push(tokio::spawn(async move {
            for i in 0..20u64 {
                s.append(&format!("run{t}"), i, &[vec![b'x'; 200]])
                    .expect("append");
                s.commit().await.expect("commit");
            }
        }));
    }
    for t in tasks {
        t.await.expect("task");
    }
    let syncs = s.commits() - before;
    // 1,280 commit requests; group commit serves many with one sync.
    assert!(syncs < 1_280, "{syncs} syncs for 1,280 commits");
    assert!(syncs >= 1);
    for t in 0..64u64 {
        assert_eq!(s.history(&format!("run{t}")).expect("history").len(), 20);
    }
}

#[tokio::test]
async fn a_gap_in_a_history_is_reported_not_skipped() {
    let dir = tempfile::tempdir().expect("tempdir");
    let s = SledStore::open(dir.path()).expect("opens");
    s.append("r1", 0, &[b"a".to_vec()]).expect("append");
    s.append("r1", 2, &[b"c".to_vec()]).expect("append");
    let err = s.history("r1").expect_err("gap");
    assert!(err.to_string().contains("gap"), "{err}");
}

#[test]
fn run_ids_with_nul_bytes_are_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let s = SledStore::open(dir.path()).expect("opens");
    assert!(s.append("r\x001", 0, &[b"a".to_vec()]).is_err());
}

#[test]
fn a_store_from_a_newer_allama_is_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    {
        let s = SledStore::open(dir.path()).expect("opens");
        let meta = s.db().open_tree("meta").expect("meta");
        meta.insert("schema_version", &99u32.to_be_bytes())
            .expect("insert");
        s.sync_now().expect("sync");
    }
    match SledStore::open(dir.path()) {
        Err(e @ OpenError::TooNew { found: 99, .. }) => {
            assert!(e.to_string().contains("schema version 99"), "{e}")
        }
        Err(e) => panic!("unexpected error {e}"),
        Ok(_) => panic!("a newer store must be refused"),
    }
}

#[test]
fn corrupt_index_entries_are_typed_errors() {
    let dir = tempfile::tempdir().expect("tempdir");
    let s = SledStore::open(dir.path()).expect("opens");
    s.db()
        .open_tree("runs")
        .expect("runs")
        .insert("rbad", &b"{not json"[..])
        .expect("insert");
    let err = s.summary("rbad").expect_err("corrupt");
    assert!(err.to_string().contains("rbad"), "{err}");
    assert!(s.summaries(10).is_err());
}

/// A store as schema version 1 left it (written with sled directly, as the
/// version-1 code did: `runs`, `active`, `history`, no `runs_by_scope`)
/// opens migrated: every run is listed under its scope, newest first.
#[test]
fn a_version_1_store_is_migrated() {
    use allama_store::RunFilter;
    let dir = tempfile::tempdir().expect("tempdir");
    {
        let db = store_of_version(dir.path(), 1);
        let runs = db.open_tree("runs").unwrap();
        for (id, pb, status) in [
            ("r001", "soc/triage", "succeeded"),
            ("r002", "soc/triage", "running"),
            ("r003", "ir/contain", "failed"),
            ("r004", "local", "succeeded"),
            ("r005", "soc/enrich", "succeeded"),
        ] {
            let mut s = summary(id, status, 1);
            s.playbook = pb.into();
            runs.insert(id, serde_json::to_vec(&s).unwrap()).unwrap();
        }
        db.open_tree("active").unwrap().insert("r002", &[]).unwrap();
        db.flush().unwrap();
    }
    let s = SledStore::open(dir.path()).expect("migrates");
    let ids = |scope: &str, f: &RunFilter, n: usize| {
        let (runs, more) = s.runs_in(scope, f, n).unwrap();
        (runs.into_iter().map(|r| r.id).collect::<Vec<_>>(), more)
    };
    let all = RunFilter::default();
    assert_eq!(
        ids("soc", &all, 10),
        (vec!["r005".into(), "r002".into(), "r001".into()], false)
    );
    assert_eq!(ids("ir", &all, 10).0, ["r003"]);
    assert_eq!(ids("", &all, 10).0, ["r004"]);
    // Pages: the last id is the cursor.
    assert_eq!(
        ids("soc", &all, 2),
        (vec!["r005".into(), "r002".into()], true)
    );
    let next = RunFilter {
        before: Some("r002".into()),
        ..RunFilter::default()
    };
    assert_eq!(ids("soc", &next, 2), (vec!["r001".into()], false));
    let running = RunFilter {
        status: Some("running".into()),
        ..RunFilter::default()
    };
    assert_eq!(ids("soc", &running, 10).0, ["r002"]);
    assert_eq!(s.active().unwrap(), ["r002"]);
    assert_eq!(
        schema_version(&s),
        allama_store::SCHEMA_VERSION.to_be_bytes()
    );
    // New runs join the index as they are written.
    let mut r = summary("r006", "running", 2);
    r.playbook = "soc/triage".into();
    s.put_summary(&r).unwrap();
    assert_eq!(ids("soc", &all, 1).0, ["r006"]);
    drop(s);
    // Reopening a migrated store changes nothing.
    let s = SledStore::open(dir.path()).expect("reopens");
    assert_eq!(s.runs_in("soc", &all, 10).unwrap().0.len(), 4);
}

/// A damaged run index entry stops the migration with the run named, and
/// the store keeps saying version 1 so the next start tries again.
#[test]
fn a_failed_migration_names_the_entry_and_can_be_retried() {
    let dir = tempfile::tempdir().expect("tempdir");
    {
        let db = store_of_version(dir.path(), 1);
        db.open_tree("runs")
            .unwrap()
            .insert("rbad", &b"{oops"[..])
            .unwrap();
        db.flush().unwrap();
    }
    let e = SledStore::open(dir.path()).err().expect("refused");
    assert!(matches!(e, OpenError::Migration { from: 1, .. }), "{e}");
    assert!(e.to_string().contains("rbad"), "{e}");
    let db = sled::open(dir.path()).expect("sled");
    let v = db
        .open_tree("meta")
        .unwrap()
        .get("schema_version")
        .unwrap()
        .unwrap();
    assert_eq!(v.as_ref(), &1u32.to_be_bytes());
}

/// A store as schema version 2 left it (one record a `history` value) opens
/// as version 3 with its histories intact, and appends after it group.
#[tokio::test]
async fn a_version_2_store_is_migrated() {
    let dir = tempfile::tempdir().expect("tempdir");
    {
        let db = store_of_version(dir.path(), 2);
        let history = db.open_tree("history").unwrap();
        for seq in 0..3u64 {
            let mut k = b"r1\0".to_vec();
            k.extend_from_slice(&seq.to_be_bytes());
            history
                .insert(k, format!("{{\"n\":{seq}}}").into_bytes())
                .unwrap();
        }
        let mut s = summary("r1", "running", 1);
        s.playbook = "soc/triage".into();
        db.open_tree("runs")
            .unwrap()
            .insert("r1", serde_json::to_vec(&s).unwrap())
            .unwrap();
        db.open_tree("active").unwrap().insert("r1", &[]).unwrap();
        let mut done = summary("r0", "succeeded", 0);
        done.playbook = "soc/triage".into();
        db.open_tree("runs")
            .unwrap()
            .insert("r0", serde_json::to_vec(&done).unwrap())
            .unwrap();
        for k in [&b"soc\0r0"[..], b"soc\0r1"] {
            db.open_tree("runs_by_scope")
                .unwrap()
                .insert(k, &[])
                .unwrap();
        }
        db.flush().unwrap();
    }
    let s = SledStore::open(dir.path()).expect("migrates");
    let n = |i: u64| format!("{{\"n\":{i}}}").into_bytes();
    assert_eq!(s.history("r1").unwrap(), [n(0), n(1), n(2)]);
    // Version 4: the running run's entry is in `runs`, with a marker in
    // `active` (version 3 had moved it to `active`).
    let runs = s.db().open_tree("runs").unwrap();
    assert!(runs.get("r1").unwrap().is_some());
    assert_eq!(
        s.db()
            .open_tree("active")
            .unwrap()
            .get("r1")
            .unwrap()
            .as_deref(),
        Some(&[][..])
    );
    drop(runs);
    assert_eq!(s.summary("r1").unwrap().unwrap().status, "running");
    assert_eq!(s.summary("r0").unwrap().unwrap().status, "succeeded");
    let listed: Vec<String> = s.summaries(10).unwrap().into_iter().map(|r| r.id).collect();
    assert_eq!(listed, ["r1", "r0"]);
    let (in_soc, _) = s
        .runs_in("soc", &allama_store::RunFilter::default(), 10)
        .unwrap();
    assert_eq!(in_soc.len(), 2);
    s.append("r1", 3, &[n(3), n(4)]).unwrap();
    s.commit().await.unwrap();
    assert_eq!(s.active().unwrap(), ["r1"]);
    assert_eq!(schema_version(&s), 4u32.to_be_bytes());
    drop(s);
    let s = SledStore::open(dir.path()).expect("reopens");
    assert_eq!(s.history("r1").unwrap(), (0..5).map(n).collect::<Vec<_>>());
    assert_eq!(s.active().unwrap(), ["r1"]);
    // Older code must not misread grouped values: it finds a newer version.
    assert_eq!(allama_store::SCHEMA_VERSION, 4);
}

/// A grouped history value that was cut short or overlaps the next append
/// is a typed error naming the run, not a panic or a silent gap.
#[test]
fn damaged_grouped_histories_are_typed_errors() {
    let dir = tempfile::tempdir().expect("tempdir");
    let s = SledStore::open(dir.path()).expect("opens");
    s.append("rg", 0, &[b"{\"a\":1}".to_vec(), b"{\"b\":2}".to_vec()])
        .unwrap();
    s.append("rg", 2, &[b"{\"c\":3}".to_vec()]).unwrap();
    assert_eq!(s.history("rg").unwrap().len(), 3);
    let tree = s.db().open_tree("history").unwrap();
    let mut k0 = b"rg\0".to_vec();
    k0.extend_from_slice(&0u64.to_be_bytes());
    let whole = tree.get(&k0).unwrap().unwrap();
    tree.insert(&k0, &whole[..whole.len() - 3]).unwrap();
    let e = s.history("rg").expect_err("cut short");
    assert!(e.to_string().contains("rg"), "{e}");
    // A value of one record where three were, then one at seq 3: a gap.
    tree.insert(&k0, &b"{\"a\":1}"[..]).unwrap();
    let mut k3 = b"rg\0".to_vec();
    k3.extend_from_slice(&3u64.to_be_bytes());
    tree.insert(&k3, &b"{\"d\":4}"[..]).unwrap();
    let e = s.history("rg").expect_err("gap");
    assert!(e.to_string().contains("gap"), "{e}");
}

/// Appends extend a run's last value up to a size, then start a new one:
/// a long history is a few values, read back whole and in order, and runs
/// whose ids share a prefix never extend each other's.
#[tokio::test]
async fn appends_extend_the_last_value_up_to_a_size() {
    let dir = tempfile::tempdir().expect("tempdir");
    let s = SledStore::open(dir.path()).expect("opens");
    let record = |i: usize| format!("{{\"i\":{i},\"pad\":\"{}\"}}", "x".repeat(90)).into_bytes();
    for i in 0..200 {
        s.append("rlong", i as u64, &[record(i)]).unwrap();
        s.append("rlong2", i as u64, &[record(1000 + i)]).unwrap();
    }
    s.commit().await.unwrap();
    assert_eq!(
        s.history("rlong").unwrap(),
        (0..200).map(record).collect::<Vec<_>>()
    );
    assert_eq!(
        s.history("rlong2").unwrap(),
        (1000..1200).map(record).collect::<Vec<_>>()
    );
    let values = s
        .db()
        .open_tree("history")
        .unwrap()
        .scan_prefix(b"rlong\0")
        .count();
    // ~20 KB of records in values of at most 4 KiB.
    assert!((5..=10).contains(&values), "{values} values");
    drop(s);
    let s = SledStore::open(dir.path()).expect("reopens");
    assert_eq!(s.history("rlong").unwrap().len(), 200);
}

/// A run's index entry moves from `active` to `runs` as it ends; a crash
/// between the two writes leaves both, and the finished entry wins
/// everywhere. The index lists running and finished runs together.
#[test]
fn a_runs_entry_moves_when_it_ends_and_the_end_wins() {
    let dir = tempfile::tempdir().expect("tempdir");
    let s = SledStore::open(dir.path()).expect("opens");
    for id in ["r1", "r2", "r3"] {
        s.put_summary(&summary(id, "running", 1)).unwrap();
    }
    s.put_summary(&summary("r2", "succeeded", 1)).unwrap();
    assert_eq!(s.active().unwrap(), ["r1", "r3"]);
    let ids = |s: &SledStore| -> Vec<(String, String)> {
        s.summaries(10)
            .unwrap()
            .into_iter()
            .map(|r| (r.id, r.status))
            .collect()
    };
    assert_eq!(
        ids(&s),
        [
            ("r3".into(), "running".into()),
            ("r2".into(), "succeeded".into()),
            ("r1".into(), "running".into())
        ]
    );
    assert_eq!(s.summaries(1).unwrap().len(), 1);
    // The crash window: r3's end written, its running entry still there.
    s.db()
        .open_tree("runs")
        .unwrap()
        .insert(
            "r3",
            serde_json::to_vec(&summary("r3", "failed", 1)).unwrap(),
        )
        .unwrap();
    assert_eq!(s.summary("r3").unwrap().unwrap().status, "failed");
    assert_eq!(ids(&s)[0], ("r3".to_string(), "failed".to_string()));
    assert_eq!(ids(&s).len(), 3);
    // Each run is listed under its scope once.
    let (listed, _) = s
        .runs_in("", &allama_store::RunFilter::default(), 10)
        .unwrap();
    assert_eq!(listed.len(), 3);
}

/// A version-3 store: running runs' summaries in `active`, finished ones in
/// `runs`, and one run caught between its two end writes (both entries).
#[test]
fn a_version_3_store_is_migrated() {
    let dir = tempfile::tempdir().expect("tempdir");
    {
        let db = store_of_version(dir.path(), 3);
        let active = db.open_tree("active").unwrap();
        let runs = db.open_tree("runs").unwrap();
        for (id, status) in [("r1", "running"), ("r3", "running")] {
            active
                .insert(id, serde_json::to_vec(&summary(id, status, 1)).unwrap())
                .unwrap();
        }
        for (id, status) in [("r2", "succeeded"), ("r3", "failed")] {
            runs.insert(id, serde_json::to_vec(&summary(id, status, 1)).unwrap())
                .unwrap();
        }
        db.flush().unwrap();
    }
    let s = SledStore::open(dir.path()).expect("migrates");
    assert_eq!(schema_version(&s), 4u32.to_be_bytes());
    assert_eq!(s.active().unwrap(), ["r1"]);
    let status = |id: &str| s.summary(id).unwrap().unwrap().status;
    assert_eq!(status("r1"), "running");
    assert_eq!(status("r2"), "succeeded");
    assert_eq!(status("r3"), "failed", "the end wins");
    let active = s.db().open_tree("active").unwrap();
    assert_eq!(active.iter().keys().count(), 1);
    assert!(active.get("r1").unwrap().unwrap().is_empty());
    // The migration is idempotent: migrating again changes nothing.
    drop(active);
    drop(s);
    {
        let db = sled::open(dir.path()).unwrap();
        db.open_tree("meta")
            .unwrap()
            .insert("schema_version", &3u32.to_be_bytes())
            .unwrap();
        db.flush().unwrap();
    }
    let s = SledStore::open(dir.path()).expect("migrates again");
    assert_eq!(s.active().unwrap(), ["r1"]);
    assert_eq!(s.summaries(10).unwrap().len(), 3);
}

/// Runs that finish young never touch `active`, a restart finds the
/// unfinished ones above the mark, and a run whose id sorts below the mark
/// is marked at once. (Moving the mark is tested beside the code.)
#[tokio::test]
async fn young_runs_skip_the_active_tree_and_survive_a_restart() {
    let dir = tempfile::tempdir().expect("tempdir");
    let now = allama_engine::driver::now_ms();
    let id_at = |ms: u64, n: u32| {
        format!(
            "{}{n:04x}000000000000",
            allama_engine::driver::first_run_id_at(ms)
        )
    };
    // Ids a minute ahead stay above the mark through the whole test.
    let (quick, slow) = (id_at(now + 60_000, 1), id_at(now + 60_000, 2));
    let active_keys = |s: &SledStore| -> Vec<String> {
        s.db()
            .open_tree("active")
            .unwrap()
            .iter()
            .keys()
            .map(|k| String::from_utf8(k.unwrap().to_vec()).unwrap())
            .collect()
    };
    {
        let s = SledStore::open(dir.path()).expect("opens");
        for id in [&quick, &slow] {
            s.put_summary(&summary(id, "running", now)).unwrap();
        }
        s.put_summary(&summary(&quick, "succeeded", now)).unwrap();
        s.commit().await.unwrap();
        assert!(active_keys(&s).is_empty(), "young runs have no markers");
        assert_eq!(s.active().unwrap(), [slow.clone()]);
        assert_eq!(s.summary(&slow).unwrap().unwrap().status, "running");
        assert_eq!(s.summaries(10).unwrap().len(), 2);
    }
    let s = SledStore::open(dir.path()).expect("reopens");
    assert_eq!(s.active().unwrap(), [slow.clone()]);
    let old_child = format!("{}~1", id_at(now - 3_600_000, 0));
    s.put_summary(&summary(&old_child, "running", now)).unwrap();
    assert_eq!(active_keys(&s), [old_child.clone()]);
    assert_eq!(s.active().unwrap(), [old_child.clone(), slow.clone()]);
    s.put_summary(&summary(&slow, "failed", now)).unwrap();
    s.put_summary(&summary(&old_child, "succeeded", now))
        .unwrap();
    assert!(s.active().unwrap().is_empty());
    assert!(active_keys(&s).is_empty(), "markers are removed at the end");
    drop(s);
    let s = SledStore::open(dir.path()).expect("reopens");
    assert!(s.active().unwrap().is_empty());
    assert_eq!(s.summary(&slow).unwrap().unwrap().status, "failed");
}
