//! [`RegistryError`]: what went wrong talking to a registry. A leaf module (it imports
//! nothing from the crate), so `crate::error` can wrap it without an import cycle.

/// What went wrong talking to a registry; always a system failure (see `error`).
#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    /// The registry's name did not resolve.
    #[error(
        "cannot resolve {host}: {detail}; fix DNS, or add \"{host}:<ip>\" to builder.extra_hosts"
    )]
    Resolve {
        /// Host name.
        host: String,
        /// The resolver's answer.
        detail: String,
    },
    /// The settings' trust material cannot be used by the HTTP client.
    #[error("{host}: {detail}; fix ca_file, client_cert_file or client_key_file in [[registries]]")]
    Setup {
        /// Registry.
        host: String,
        /// What the TLS library said.
        detail: String,
    },
    /// No HTTP answer (connect, TLS, timeout): reqwest's cause chain.
    #[error("cannot reach {url}: {detail}; `runnerx doctor --registry {host}` explains why")]
    Unreachable {
        /// Registry.
        host: String,
        /// URL asked.
        url: String,
        /// The cause chain.
        detail: String,
    },
    /// The registry or its token service refused or failed a request; the message has
    /// the status, the distribution error codes and the fix.
    #[error("{0}")]
    Refused(String),
    /// An answer runnerx cannot use (not a registry, bad JSON, digest mismatch).
    #[error("{0}")]
    BadAnswer(String),
}

impl RegistryError {
    /// The cause without the pointer to `runnerx doctor` (for doctor's own lines).
    pub(crate) fn cause(&self) -> String {
        match self {
            RegistryError::Unreachable { url, detail, .. } => {
                format!("cannot reach {url}: {detail}")
            }
            other => other.to_string(),
        }
    }
}
