//! `allama backup` (from a running server, or a data directory no server
//! holds) and `allama restore` (into a new data directory).

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;

use crate::admin_cmd::{refused, server_and_token, verify_chains};

/// Arguments of `allama backup`.
#[derive(clap::Args)]
pub struct BackupArgs {
    /// The backup file to write (it is checked before it gets this name).
    #[arg(long, short)]
    to: PathBuf,
    /// The running server. Default: $ALLAMA_URL, else http://127.0.0.1:8080.
    #[arg(long)]
    url: Option<String>,
    /// A system administrator's token. Default: $ALLAMA_TOKEN.
    #[arg(long)]
    token: Option<String>,
    /// Back up this data directory instead of asking a server (no server
    /// may hold it).
    #[arg(long, conflicts_with_all = ["url", "token"])]
    data_dir: Option<PathBuf>,
}

/// Arguments of `allama restore`.
#[derive(clap::Args)]
pub struct RestoreArgs {
    /// The backup file.
    file: PathBuf,
    /// The new data directory (must not exist, or be empty).
    #[arg(long)]
    data_dir: PathBuf,
    /// The master key file in use when the backup was taken: copied into
    /// the new data directory as `master.key`. Without it, give the server
    /// the key yourself (`--master-key`, or ALLAMA_MASTER_KEY).
    #[arg(long)]
    master_key: Option<PathBuf>,
}

fn summary(s: &allama_store::backup::BackupSummary) -> String {
    format!(
        "{} trees, {} entries, {} blobs, {} bytes",
        s.trees, s.entries, s.blobs, s.bytes
    )
}

/// Writes through `<to>.partial`, checks it, then renames it to `to`.
fn write_checked(
    to: &Path,
    fill: impl FnOnce(&mut std::fs::File) -> anyhow::Result<()>,
) -> anyhow::Result<allama_store::backup::BackupSummary> {
    let mut partial = to.as_os_str().to_owned();
    partial.push(".partial");
    let partial = PathBuf::from(partial);
    let result = (|| {
        let mut f = open_private(&partial)?;
        fill(&mut f)?;
        f.flush()?;
        f.sync_all()?;
        let sum = allama_store::backup::check(std::fs::File::open(&partial)?)
            .context("checking the backup that was written")?;
        std::fs::rename(&partial, to)
            .with_context(|| format!("renaming {} to {}", partial.display(), to.display()))?;
        Ok(sum)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&partial);
    }
    result
}

/// A new file only its owner can read: a backup holds the audit log and
/// (encrypted) secrets.
fn open_private(path: &Path) -> anyhow::Result<std::fs::File> {
    let mut o = std::fs::OpenOptions::new();
    o.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut o, 0o600);
    o.open(path)
        .with_context(|| format!("creating {}", path.display()))
}

/// Entry point of `allama backup`.
pub fn backup(args: BackupArgs) -> anyhow::Result<ExitCode> {
    let sum = if let Some(dir) = &args.data_dir {
        let store = allama_store::SledStore::open(dir)
            .with_context(|| "opening the data directory (is a server running on it? then back up through it: --url)")?;
        write_checked(&args.to, |f| {
            store.backup(f)?;
            Ok(())
        })?
    } else {
        let (url, token) = server_and_token(args.url, args.token)
            .map_err(|e| anyhow::anyhow!("{e}, or --data-dir for a stopped server"))?;
        let endpoint = format!("{url}/api/v1/backup");
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        write_checked(&args.to, |f| {
            rt.block_on(async {
                let mut resp = reqwest::Client::new()
                    .get(&endpoint)
                    .bearer_auth(&token)
                    .send()
                    .await
                    .with_context(|| format!("GET {endpoint}"))?;
                let status = resp.status();
                if !status.is_success() {
                    let body: serde_json::Value =
                        serde_json::from_str(&resp.text().await.unwrap_or_default())
                            .unwrap_or_default();
                    return Err(refused(status, &body));
                }
                let mut got = 0u64;
                while let Some(chunk) = resp
                    .chunk()
                    .await
                    .with_context(|| format!("reading the backup from {endpoint}"))?
                {
                    f.write_all(&chunk)?;
                    got += chunk.len() as u64;
                }
                eprintln!("received {got} bytes");
                Ok(())
            })
        })?
    };
    println!("backup written to {}: {}", args.to.display(), summary(&sum));
    println!("the master key is not in it: keep a copy of the key apart from the backups");
    Ok(ExitCode::SUCCESS)
}

/// Entry point of `allama restore`.
pub fn restore(args: RestoreArgs) -> anyhow::Result<ExitCode> {
    let key = match &args.master_key {
        Some(k) => Some(
            std::fs::read(k).with_context(|| format!("reading the master key {}", k.display()))?,
        ),
        None => None,
    };
    let file = std::fs::File::open(&args.file)
        .with_context(|| format!("opening {}", args.file.display()))?;
    let sum = allama_store::backup::restore(file, &args.data_dir)?;
    if let Some(key) = key {
        let mut f = open_private(&args.data_dir.join("master.key"))?;
        f.write_all(&key)?;
        f.sync_all()?;
    }
    println!(
        "restored {} into {}: {}",
        args.file.display(),
        args.data_dir.display(),
        summary(&sum)
    );
    // The audit chains came through intact, or say where they did not.
    let store = allama_store::SledStore::open(&args.data_dir)?;
    let log = allama_store::audit::AuditLog::open(store.db())?;
    let broken = verify_chains(&log, log.workspaces()?, "audit chain ")?;
    if args.master_key.is_none() {
        println!(
            "no --master-key given: start the server with the master key in use when the backup was taken (--master-key, or ALLAMA_MASTER_KEY); secrets stay encrypted under it"
        );
    }
    Ok(if broken {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}
