//! TLS and basic auth for `/metrics`, from a web config file in the format Prometheus' own
//! exporters read (exporter-toolkit, `--web.config.file`):
//!
//! ```yaml
//! tls_server_config:
//!   cert_file: /etc/keepalive/metrics.crt
//!   key_file: /etc/keepalive/metrics.key
//! basic_auth_users:
//!   prometheus: $2y$10$...   # bcrypt, e.g. `htpasswd -nBC 10 prometheus`
//! ```
//!
//! Only these keys are read; any other (client certificates, cipher lists) is refused with its
//! name, rather than silently ignored. A password is checked with bcrypt once, on a blocking
//! thread (bcrypt is slow on purpose), and a good one is remembered so scrapes stay cheap.

use std::{
    collections::{BTreeMap, HashSet},
    path::{Path, PathBuf},
    sync::{Arc, Mutex},
};

use base64::Engine as _;
use serde::Deserialize;

/// Why the web config was refused.
#[derive(Debug, thiserror::Error)]
pub enum WebConfigError {
    /// The file could not be read.
    #[error("cannot read the metrics web config {path}: {error}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        error: std::io::Error,
    },
    /// Not the format, or a key keepalive does not support.
    #[error("the metrics web config {path}: {message}")]
    Invalid {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    tls_server_config: Option<TlsFile>,
    #[serde(default)]
    basic_auth_users: BTreeMap<String, String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct TlsFile {
    cert_file: PathBuf,
    key_file: PathBuf,
}

/// What the metrics server enforces.
#[derive(Clone, Debug, Default)]
pub struct WebConfig {
    /// Serve TLS with this configuration.
    pub tls: Option<Arc<rustls::ServerConfig>>,
    /// Users and their bcrypt hashes; empty: no authentication.
    users: BTreeMap<String, String>,
    /// `user:password` pairs already verified (at most [`VERIFIED_KEPT`]).
    verified: Arc<Mutex<HashSet<String>>>,
}

/// Good credentials remembered.
const VERIFIED_KEPT: usize = 64;

impl WebConfig {
    /// Reads and checks `path`: the YAML, the certificate chain and the key.
    pub fn load(path: &Path) -> Result<Self, WebConfigError> {
        let invalid =
            |message: String| WebConfigError::Invalid { path: path.to_path_buf(), message };
        let text = std::fs::read_to_string(path)
            .map_err(|error| WebConfigError::Read { path: path.to_path_buf(), error })?;
        let file: File = serde_norway::from_str(&text).map_err(|e| invalid(e.to_string()))?;
        for (user, hash) in &file.basic_auth_users {
            if !hash.starts_with("$2") {
                return Err(invalid(format!(
                    "basic_auth_users.{user}: not a bcrypt hash (make one with `htpasswd -nBC 10 {user}`)"
                )));
            }
        }
        let tls = match file.tls_server_config {
            None => None,
            Some(t) => Some(Arc::new(server_config(&t).map_err(invalid)?)),
        };
        Ok(Self { tls, users: file.basic_auth_users, verified: Arc::default() })
    }

    /// Whether requests must authenticate.
    pub fn needs_auth(&self) -> bool {
        !self.users.is_empty()
    }

    /// Whether the `Authorization` header's credentials are a configured user's (bcrypt runs on
    /// a blocking thread).
    pub async fn authorized(&self, header: Option<&str>) -> bool {
        if self.users.is_empty() {
            return true;
        }
        let Some(pair) = header
            .and_then(|h| h.strip_prefix("Basic "))
            .and_then(|b| base64::engine::general_purpose::STANDARD.decode(b.trim()).ok())
            .and_then(|b| String::from_utf8(b).ok())
        else {
            return false;
        };
        let Some((user, password)) = pair.split_once(':') else {
            return false;
        };
        let Some(hash) = self.users.get(user).cloned() else {
            return false;
        };
        if self.verified.lock().is_ok_and(|v| v.contains(&pair)) {
            return true;
        }
        let password = password.to_string();
        let ok =
            tokio::task::spawn_blocking(move || bcrypt::verify(password, &hash).unwrap_or(false))
                .await
                .unwrap_or(false);
        if ok {
            if let Ok(mut v) = self.verified.lock() {
                if v.len() >= VERIFIED_KEPT {
                    v.clear();
                }
                v.insert(pair);
            }
        }
        ok
    }
}

fn server_config(t: &TlsFile) -> Result<rustls::ServerConfig, String> {
    use rustls::pki_types::{pem::PemObject as _, CertificateDer, PrivateKeyDer};
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&t.cert_file)
        .and_then(|it| it.collect::<Result<_, _>>())
        .map_err(|e| format!("tls_server_config.cert_file {}: {e}", t.cert_file.display()))?;
    if certs.is_empty() {
        return Err(format!(
            "tls_server_config.cert_file {}: no certificate",
            t.cert_file.display()
        ));
    }
    let key = PrivateKeyDer::from_pem_file(&t.key_file)
        .map_err(|e| format!("tls_server_config.key_file {}: {e}", t.key_file.display()))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .and_then(|b| b.with_no_client_auth().with_single_cert(certs, key))
        .map_err(|e| format!("tls_server_config: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
        let p = dir.join(name);
        std::fs::write(&p, text).unwrap();
        p
    }

    #[tokio::test]
    async fn basic_auth_checks_bcrypt_and_refuses_what_it_does_not_read() {
        let dir = std::env::temp_dir().join(format!("keepalive-webcfg-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let hash = bcrypt::hash("secret", 4).unwrap();
        let p = write(&dir, "web.yml", &format!("basic_auth_users:\n  prometheus: {hash}\n"));
        let w = WebConfig::load(&p).unwrap();
        assert!(w.needs_auth() && w.tls.is_none());
        let basic =
            |s: &str| format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(s));
        assert!(w.authorized(Some(&basic("prometheus:secret"))).await);
        assert!(w.authorized(Some(&basic("prometheus:secret"))).await, "remembered");
        assert!(!w.authorized(Some(&basic("prometheus:wrong"))).await);
        assert!(!w.authorized(Some(&basic("other:secret"))).await);
        assert!(!w.authorized(None).await);
        assert!(!w.authorized(Some("Bearer x")).await);
        let bad = write(&dir, "bad.yml", "tls_server_config:\n  cert_file: a\n  key_file: b\n  client_auth_type: RequireAnyClientCert\n");
        let e = WebConfig::load(&bad).unwrap_err().to_string();
        assert!(e.contains("client_auth_type"), "{e}");
        let plain = write(&dir, "plain.yml", "basic_auth_users:\n  p: hunter2\n");
        assert!(WebConfig::load(&plain).unwrap_err().to_string().contains("not a bcrypt hash"));
        let missing = write(
            &dir,
            "missing.yml",
            "tls_server_config:\n  cert_file: /nonexistent.crt\n  key_file: /nonexistent.key\n",
        );
        assert!(WebConfig::load(&missing).unwrap_err().to_string().contains("/nonexistent.crt"));
        let _ = std::fs::remove_dir_all(&dir);
    }
}
