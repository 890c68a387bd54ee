//! `allama serve`: the HTTP API on the data directory.

use std::net::SocketAddr;
use std::process::ExitCode;

use anyhow::Context;

use crate::local::Env;

/// Arguments of `allama serve`.
#[derive(clap::Args)]
pub struct Args {
    /// A configuration file (TOML; see docs/server.md). Default: $ALLAMA_CONFIG.
    /// Flags and environment variables override what it says.
    #[arg(long)]
    config: Option<std::path::PathBuf>,
    /// Address to listen on. Default: $ALLAMA_LISTEN, else the configuration
    /// file, else 127.0.0.1:8080.
    #[arg(long)]
    listen: Option<SocketAddr>,
    /// The master key file (secrets are encrypted under it). Default:
    /// DATA_DIR/master.key, created with mode 0600 on first start.
    /// $ALLAMA_MASTER_KEY (KID:BASE64) takes precedence.
    #[arg(long)]
    master_key: Option<std::path::PathBuf>,
    /// Serve HTTPS (TLS 1.3 only) with this certificate chain (PEM, leaf first).
    #[arg(long, requires = "tls_key")]
    tls_cert: Option<std::path::PathBuf>,
    /// The certificate's private key (PEM).
    #[arg(long, requires = "tls_cert")]
    tls_key: Option<std::path::PathBuf>,
    /// On a fresh data directory, do not install the demo content (the
    /// first-party packages, granted what they request, and the example
    /// playbooks in workspace `default`).
    #[arg(long)]
    no_demo: bool,
    #[command(flatten)]
    env: Env,
}

/// Entry point.
pub fn main(args: Args) -> anyhow::Result<ExitCode> {
    let file = match args
        .config
        .clone()
        .or_else(|| std::env::var_os("ALLAMA_CONFIG").map(Into::into))
    {
        Some(p) => allama_server::config::read(&p)?,
        None => allama_server::config::FileConfig::default(),
    };
    let listen = match args.listen {
        Some(a) => a,
        None => match std::env::var("ALLAMA_LISTEN") {
            Ok(v) => v.parse().with_context(|| {
                format!("ALLAMA_LISTEN `{v}` is not an address like 127.0.0.1:8080")
            })?,
            Err(_) => file
                .listen
                .unwrap_or_else(|| SocketAddr::from(([127, 0, 0, 1], 8080))),
        },
    };
    // A flag for either TLS file replaces both of the file's.
    let (tls_cert, tls_key) = match (args.tls_cert, args.tls_key) {
        (Some(c), Some(k)) => (Some(c), Some(k)),
        _ => (file.tls_cert, file.tls_key),
    };
    let tls = match (&tls_cert, &tls_key) {
        (Some(c), Some(k)) => Some(allama_server::tls::server_config(c, k)?),
        _ => None,
    };
    let scheme = if tls.is_some() { "https" } else { "http" };
    let explicit_dir = args
        .env
        .data_dir
        .clone()
        .or_else(|| std::env::var_os("ALLAMA_DATA_DIR").map(Into::into));
    let data_dir = match explicit_dir.or(file.data_dir) {
        Some(d) => d,
        None => args.env.data_dir()?,
    };
    let mut config = allama_server::ServerConfig::new(data_dir);
    config.master_key = args.master_key.or(file.master_key);
    if let Some(n) = file.auth_failures_per_minute {
        config.auth_failures_per_minute = n;
    }
    config.trust = crate::package_cmd::load_policy(args.env.trust.as_deref())?;
    config.pinned_hosts = crate::local::parse_pins(&args.env.pins)?;
    for f in &args.env.ca_certs {
        config.extra_root_certs.push(
            std::fs::read_to_string(f).with_context(|| format!("--ca-cert {}", f.display()))?,
        );
    }
    let demo = !args.no_demo && file.demo.unwrap_or(true);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    rt.block_on(async move {
        let opened = allama_server::open(&config)
            .await
            .with_context(|| format!("starting on {}", config.data_dir.display()))?;
        let listener = tokio::net::TcpListener::bind(listen)
            .await
            .with_context(|| format!("listening on {listen}"))?;
        let addr = listener.local_addr()?;
        let shutdown = stop_signal()?;
        let demo_installed = if opened.first_admin_token.is_some() && demo {
            Some(
                allama_server::demo::install(
                    &opened.state,
                    allama_server::FIRST_WORKSPACE,
                    demo_content()?,
                )
                .await
                .map_err(|e| anyhow::anyhow!("installing the demo content: {e}"))?,
            )
        } else {
            None
        };
        if let Some(token) = &opened.first_admin_token {
            println!(
                "First start: user `{}` (system administrator, admin of workspace `{}`).",
                allama_server::FIRST_ADMIN,
                allama_server::FIRST_WORKSPACE
            );
            println!("Its token is shown this once; only its hash is kept:");
            println!();
            println!("  {token}");
            println!();
        }
        if let Some(d) = &demo_installed {
            println!(
                "Demo content in workspace `{}`: packages {} (granted what they request), playbooks {}.",
                allama_server::FIRST_WORKSPACE,
                d.packages.join(", "),
                d.playbooks.join(", ")
            );
        }
        println!("  data:     {}", config.data_dir.display());
        println!(
            "  API:      {scheme}://{addr}/api/v1   (OpenAPI: {scheme}://{addr}/api/openapi.json)"
        );
        // Last, so a script can wait for this line.
        println!("Allama is listening on {scheme}://{addr}");
        match tls {
            Some(tls) => {
                allama_server::serve_tls(listener, tls, opened.state.clone(), shutdown).await?
            }
            None => allama_server::serve(listener, opened.state.clone(), shutdown).await?,
        }
        eprintln!("stopping: runs in flight are kept and resume at the next start");
        opened.close().await?;
        Ok::<_, anyhow::Error>(())
    })?;
    Ok(ExitCode::SUCCESS)
}

/// The first-party packages (and the http action re-packaged for the
/// example firewall), and the example playbooks.
fn demo_content() -> anyhow::Result<allama_server::demo::Demo> {
    let mut packages = Vec::new();
    for fp in allama_first_party::ALL {
        packages.push(allama_first_party::unsigned(fp, None)?);
    }
    packages.push(allama_first_party::unsigned(
        allama_first_party::get("http"),
        Some(include_str!(
            "../../../examples/packages/firewall/allama.toml"
        )),
    )?);
    let playbooks = [
        (
            "ip-reputation.yaml",
            include_str!("../../../examples/ip-reputation.yaml"),
        ),
        (
            "indicators.yaml",
            include_str!("../../../examples/indicators.yaml"),
        ),
        (
            "block-ip.yaml",
            include_str!("../../../examples/block-ip.yaml"),
        ),
        ("triage.yaml", include_str!("../../../examples/triage.yaml")),
    ]
    .into_iter()
    .map(|(n, s)| (n.to_string(), s.to_string()))
    .collect();
    Ok(allama_server::demo::Demo {
        packages,
        playbooks,
    })
}

/// Resolves on SIGINT or SIGTERM. The handlers are installed when this is
/// called (before the banner), so a stop right after start is graceful too.
fn stop_signal() -> anyhow::Result<impl std::future::Future<Output = ()> + Send + 'static> {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let mut int = signal(SignalKind::interrupt()).context("installing the SIGINT handler")?;
        let mut term = signal(SignalKind::terminate()).context("installing the SIGTERM handler")?;
        Ok(async move {
            tokio::select! {
                _ = int.recv() => {}
                _ = term.recv() => {}
            }
            eprintln!("stopping: finishing requests in flight");
        })
    }
    #[cfg(not(unix))]
    {
        Ok(async {
            let _ = tokio::signal::ctrl_c().await;
            eprintln!("stopping: finishing requests in flight");
        })
    }
}
