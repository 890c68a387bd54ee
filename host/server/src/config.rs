//! The server's configuration file (TOML). Every setting can also be given
//! by flag or environment; the precedence is flag, then environment, then
//! this file, then the default (see `docs/server.md`).
//!
//! ```toml
//! listen = "0.0.0.0:8443"
//! data_dir = "/var/lib/allama"        # relative paths are relative to this file
//! master_key = "/etc/allama/master.key"
//! tls_cert = "/etc/allama/cert.pem"
//! tls_key = "/etc/allama/key.pem"
//! auth_failures_per_minute = 10
//! ```

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::Deserialize;

/// What the file may set; every key is optional, unknown keys are errors.
#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    /// Address to listen on.
    pub listen: Option<SocketAddr>,
    /// The data directory.
    pub data_dir: Option<PathBuf>,
    /// The master key file.
    pub master_key: Option<PathBuf>,
    /// HTTPS certificate chain (PEM).
    pub tls_cert: Option<PathBuf>,
    /// HTTPS private key (PEM).
    pub tls_key: Option<PathBuf>,
    /// Failed authentications allowed per client address per minute (1–10000).
    pub auth_failures_per_minute: Option<u32>,
    /// Whether a fresh data directory gets the demo content (default true).
    pub demo: Option<bool>,
}

/// A configuration file that cannot be used, with the place at fault.
#[derive(Debug, thiserror::Error)]
#[error("{}{}: {message}", path.display(), place.map(|(l, c)| format!(":{l}:{c}")).unwrap_or_default())]
pub struct ConfigError {
    /// The file.
    pub path: PathBuf,
    /// 1-based line and column, when known.
    pub place: Option<(usize, usize)>,
    /// What is wrong.
    pub message: String,
}

/// Longest configuration file read.
const MAX_CONFIG_BYTES: u64 = 1 << 20;

/// Reads a configuration file; relative paths in it are made relative to
/// the file's directory.
pub fn read(path: &Path) -> Result<FileConfig, ConfigError> {
    let err = |place, message: String| ConfigError {
        path: path.to_path_buf(),
        place,
        message,
    };
    let meta = std::fs::metadata(path).map_err(|e| err(None, e.to_string()))?;
    if meta.len() > MAX_CONFIG_BYTES {
        return Err(err(
            None,
            format!(
                "{} bytes; a configuration file is at most 1 MiB",
                meta.len()
            ),
        ));
    }
    let text = std::fs::read_to_string(path).map_err(|e| err(None, e.to_string()))?;
    let mut config: FileConfig = toml::from_str(&text).map_err(|e| {
        let place = e.span().map(|s| line_col(&text, s.start));
        err(place, e.message().to_string())
    })?;
    if let Some(n) = config.auth_failures_per_minute
        && !(1..=10_000).contains(&n)
    {
        let at = text
            .find("auth_failures_per_minute")
            .map(|i| line_col(&text, i));
        return Err(err(
            at,
            "auth_failures_per_minute must be 1 to 10000".into(),
        ));
    }
    let base = path.parent().unwrap_or(Path::new("."));
    for p in [
        &mut config.data_dir,
        &mut config.master_key,
        &mut config.tls_cert,
        &mut config.tls_key,
    ]
    .into_iter()
    .flatten()
    {
        if p.is_relative() {
            *p = base.join(&*p);
        }
    }
    if config.tls_cert.is_some() != config.tls_key.is_some() {
        return Err(err(
            None,
            "tls_cert and tls_key go together: give both or neither".into(),
        ));
    }
    Ok(config)
}

fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let col = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    (line, col)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(text: &str) -> (tempfile::TempDir, PathBuf) {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("allama.toml");
        std::fs::write(&p, text).unwrap();
        (d, p)
    }

    #[test]
    fn a_full_file_reads_with_paths_relative_to_it() {
        let (d, p) = write(
            "listen = \"0.0.0.0:8443\"\ndata_dir = \"data\"\nmaster_key = \"/etc/allama/master.key\"\ntls_cert = \"c.pem\"\ntls_key = \"k.pem\"\nauth_failures_per_minute = 5\n",
        );
        let c = read(&p).unwrap();
        assert_eq!(c.listen, Some("0.0.0.0:8443".parse().unwrap()));
        assert_eq!(c.data_dir, Some(d.path().join("data")));
        assert_eq!(c.master_key, Some(PathBuf::from("/etc/allama/master.key")));
        assert_eq!(c.tls_key, Some(d.path().join("k.pem")));
        assert_eq!(c.auth_failures_per_minute, Some(5));
        let (_d, p) = write("");
        assert_eq!(read(&p).unwrap(), FileConfig::default());
    }

    #[test]
    fn bad_files_name_the_line_and_column() {
        for (text, needle) in [
            ("listen = \"nowhere\"\n", "allama.toml:1:10"),
            ("\n\nlisen = \"0.0.0.0:1\"\n", "allama.toml:3:1"),
            ("listen = 8080\n", "allama.toml:1:10"),
            ("data_dir = [\n", "allama.toml:1"),
            ("auth_failures_per_minute = 0\n", "must be 1 to 10000"),
            ("auth_failures_per_minute = -3\n", "allama.toml:1:28"),
            ("tls_cert = \"c.pem\"\n", "go together"),
            ("listen = \"\u{0}\"\n", "allama.toml:1"),
        ] {
            let (_d, p) = write(text);
            let e = read(&p).unwrap_err().to_string();
            assert!(e.contains(needle), "{text:?}: {e}");
        }
        let e = read(Path::new("/no/such/allama.toml")).unwrap_err();
        assert!(e.to_string().contains("/no/such/allama.toml"), "{e}");
    }
}
