//! The compiled-code cache: restart does not recompile; a corrupt entry is
//! detected and rebuilt.

use allama_runtime::RuntimeConfig;
use allama_runtime::cache::CacheOutcome;

use crate::support::Host;

fn host_with_cache(dir: &std::path::Path) -> Host {
    Host::with_config(RuntimeConfig {
        cache_dir: Some(dir.to_path_buf()),
        max_concurrent_steps: 8,
        ..RuntimeConfig::default()
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restart_loads_from_cache_and_corruption_is_rebuilt() {
    let dir = tempfile::tempdir().unwrap();
    let wasm = std::fs::read(allama_guests::CAPS).unwrap();
    let first = host_with_cache(dir.path())
        .runtime
        .load("caps", &wasm)
        .unwrap();
    assert_eq!(first.cache, CacheOutcome::Compiled);

    // A new runtime (new engine, as after a restart) hits the cache.
    let second = host_with_cache(dir.path());
    let c = second.runtime.load("caps", &wasm).unwrap();
    assert_eq!(c.cache, CacheOutcome::Hit);
    let p = second.package("caps", "", &[]);
    assert!(
        crate::support::run(&p, "echo", serde_json::json!({"a": 1}))
            .await
            .outcome
            .is_ok()
    );

    // Flip one byte in the middle of the entry: detected, rebuilt, still runs.
    let entry = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.extension().is_some_and(|e| e == "cwasm"))
        .unwrap();
    let mut bytes = std::fs::read(&entry).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0xff;
    std::fs::write(&entry, &bytes).unwrap();
    let third = host_with_cache(dir.path());
    assert_eq!(
        third.runtime.load("caps", &wasm).unwrap().cache,
        CacheOutcome::Rebuilt
    );
    assert_eq!(
        host_with_cache(dir.path())
            .runtime
            .load("caps", &wasm)
            .unwrap()
            .cache,
        CacheOutcome::Hit
    );

    // A truncated entry, and a missing checksum, are rebuilt too.
    std::fs::write(&entry, &bytes[..100]).unwrap();
    assert_eq!(
        host_with_cache(dir.path())
            .runtime
            .load("caps", &wasm)
            .unwrap()
            .cache,
        CacheOutcome::Rebuilt
    );
    std::fs::remove_file(entry.with_extension("sha256")).unwrap();
    assert_eq!(
        host_with_cache(dir.path())
            .runtime
            .load("caps", &wasm)
            .unwrap()
            .cache,
        CacheOutcome::Rebuilt
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn different_components_get_different_entries() {
    let dir = tempfile::tempdir().unwrap();
    let host = host_with_cache(dir.path());
    host.runtime
        .load("caps", &std::fs::read(allama_guests::CAPS).unwrap())
        .unwrap();
    host.runtime
        .load("bench", &std::fs::read(allama_guests::BENCH).unwrap())
        .unwrap();
    let entries = std::fs::read_dir(dir.path())
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .unwrap()
                .path()
                .extension()
                .is_some_and(|x| x == "cwasm")
        })
        .count();
    assert_eq!(entries, 2);
}
