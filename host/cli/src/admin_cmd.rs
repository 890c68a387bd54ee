//! `allama secrets rotate-key` (through a running server) and
//! `allama audit verify` (on a data directory no server holds).

use std::process::ExitCode;

use anyhow::{Context, bail};

use crate::local::Env;

/// `allama secrets …`
#[derive(clap::Subcommand)]
pub enum SecretsCommand {
    /// Re-encrypt every secret under a new master key, while the server
    /// runs. Needs a system administrator's token.
    RotateKey {
        /// The server. Default: $ALLAMA_URL, else http://127.0.0.1:8080.
        #[arg(long)]
        url: Option<String>,
        /// The token. Default: $ALLAMA_TOKEN.
        #[arg(long)]
        token: Option<String>,
    },
}

/// `allama audit …`
#[derive(clap::Subcommand)]
pub enum AuditCommand {
    /// Check the audit chains of a data directory (stop the server first,
    /// or ask it: GET /api/v1/workspaces/WS/audit/verify). Names the first
    /// broken link; exits 1 if any chain is broken.
    Verify {
        /// Only this workspace's chain (`system` for the server's own).
        #[arg(long)]
        workspace: Option<String>,
        #[command(flatten)]
        env: Env,
    },
}

/// The server a command asks and the system administrator's token it
/// sends: the flags, else $ALLAMA_URL (default http://127.0.0.1:8080) and
/// $ALLAMA_TOKEN.
pub(crate) fn server_and_token(
    url: Option<String>,
    token: Option<String>,
) -> anyhow::Result<(String, String)> {
    let url = url
        .or_else(|| std::env::var("ALLAMA_URL").ok())
        .unwrap_or_else(|| "http://127.0.0.1:8080".into());
    let Some(token) = token.or_else(|| std::env::var("ALLAMA_TOKEN").ok()) else {
        bail!("give --token or set ALLAMA_TOKEN (a system administrator's token)");
    };
    Ok((url.trim_end_matches('/').to_string(), token))
}

/// A refused request, with the server's reason from its error body.
pub(crate) fn refused(status: reqwest::StatusCode, body: &serde_json::Value) -> anyhow::Error {
    anyhow::anyhow!(
        "the server refused ({status}): {}",
        body["error"]["message"]
            .as_str()
            .unwrap_or("no reason given")
    )
}

/// Verifies each chain, printing one line each (`{label}{ws}: ok, …` or
/// where it broke); whether any is broken.
pub(crate) fn verify_chains(
    log: &allama_store::audit::AuditLog,
    chains: Vec<String>,
    label: &str,
) -> anyhow::Result<bool> {
    let mut broken = false;
    for ws in chains {
        match log.verify(&ws) {
            Ok(v) => println!("{label}{ws}: ok, {} records, head {}", v.records, v.head),
            Err(allama_store::audit::AuditError::Broken(b)) => {
                broken = true;
                println!("{label}{ws}: BROKEN at record {}: {}", b.seq, b.reason);
            }
            Err(e) => return Err(e.into()),
        }
    }
    Ok(broken)
}

/// Entry point of `allama secrets`.
pub fn secrets(cmd: SecretsCommand) -> anyhow::Result<ExitCode> {
    match cmd {
        SecretsCommand::RotateKey { url, token } => {
            let (url, token) = server_and_token(url, token)?;
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            let endpoint = format!("{}/api/v1/admin/rotate-key", url.trim_end_matches('/'));
            let (status, body) = rt.block_on(async {
                let resp = reqwest::Client::new()
                    .post(&endpoint)
                    .bearer_auth(token)
                    .send()
                    .await
                    .with_context(|| format!("POST {endpoint}"))?;
                let status = resp.status();
                let body: serde_json::Value =
                    serde_json::from_str(&resp.text().await.unwrap_or_default())
                        .unwrap_or_default();
                Ok::<_, anyhow::Error>((status, body))
            })?;
            if !status.is_success() {
                return Err(refused(status, &body));
            }
            println!(
                "master key rotated: now `{}`; {} secret(s) re-encrypted; retired: {}",
                body["kid"].as_str().unwrap_or("?"),
                body["reencrypted"],
                body["retired"]
            );
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// Entry point of `allama audit`.
pub fn audit(cmd: AuditCommand) -> anyhow::Result<ExitCode> {
    match cmd {
        AuditCommand::Verify { workspace, env } => {
            let store = env.open_store()?;
            let log = allama_store::audit::AuditLog::open(store.db())?;
            let chains = match workspace {
                Some(w) => vec![w],
                None => log.workspaces()?,
            };
            if chains.is_empty() {
                println!("no audit records");
            }
            let broken = verify_chains(&log, chains, "")?;
            Ok(if broken {
                ExitCode::from(1)
            } else {
                ExitCode::SUCCESS
            })
        }
    }
}
