//! The Docker engine itself: connecting (with the reason a connection failed, as a kind), the
//! fix for each kind of failure, and the engine's version against the oldest API planbox
//! supports.

use std::path::Path;
use std::time::Duration;

use bollard::Docker;

use crate::error::{Error, Result};

pub use crate::error::UnreachableKind;

/// The socket the engine listens on unless `DOCKER_HOST` says otherwise.
pub const DEFAULT_SOCKET: &str = "/var/run/docker.sock";
/// [`DEFAULT_SOCKET`] as an engine address.
pub const DEFAULT_HOST: &str = "unix:///var/run/docker.sock";
/// The oldest engine API planbox is tested with (Docker 20.10).
pub const MIN_API: (u64, u64) = (1, 41);

/// Connect to the engine named by `DOCKER_HOST` (or the default socket) and agree on an API
/// version it speaks: the engine may be older than bollard's default.
pub async fn connect() -> Result<Docker> {
    connect_to(&host()).await
}

/// Where the engine is: `DOCKER_HOST` when set and not empty, else [`DEFAULT_HOST`].
pub fn host() -> String {
    std::env::var("DOCKER_HOST")
        .ok()
        .filter(|host| !host.is_empty())
        .unwrap_or_else(|| DEFAULT_HOST.into())
}

/// Connect to the engine at `host`: `unix://`; `tcp://` or `http://` (TLS when
/// `DOCKER_TLS_VERIFY` is set, with `key.pem`, `cert.pem` and `ca.pem` from
/// `DOCKER_CERT_PATH` or `~/.docker`, as the docker CLI reads them); `https://`; `ssh://`
/// (through the system's `ssh`, as `docker -H ssh://` does).
pub async fn connect_to(host: &str) -> Result<Docker> {
    // TLS engines: the same crypto provider as the model client (one per process).
    let _ = rustls::crypto::ring::default_provider().install_default();
    let unreachable = |source: bollard::errors::Error| Error::EngineUnreachable {
        host: host.to_string(),
        kind: kind_of(&source),
        source,
    };
    let docker = Docker::connect_with_host(host).map_err(unreachable)?;
    docker
        .with_timeout(Duration::from_secs(120))
        .negotiate_version()
        .await
        .map_err(unreachable)
}

/// The OCI runtimes the engine offers, sorted, and its default one.
pub async fn runtimes(docker: &Docker) -> Result<(Vec<String>, Option<String>)> {
    let info = docker.info().await?;
    let mut names: Vec<String> = info.runtimes.unwrap_or_default().into_keys().collect();
    names.sort();
    Ok((names, info.default_runtime))
}

/// Fail unless the engine offers `runtime`.
pub async fn require_runtime(docker: &Docker, runtime: &str) -> Result<()> {
    let (offered, _) = runtimes(docker).await?;
    if offered.iter().any(|name| name == runtime) {
        Ok(())
    } else {
        Err(Error::RuntimeMissing {
            name: runtime.to_string(),
            offered,
        })
    }
}

/// What kind of failure the engine client reported, from its error variant and, for a
/// failed connection, the operating system's error kind underneath.
fn kind_of(err: &bollard::errors::Error) -> UnreachableKind {
    use bollard::errors::Error as Client;
    match err {
        Client::SocketNotFoundError(_) => return UnreachableKind::NoSocket,
        Client::RequestTimeoutError => return UnreachableKind::Timeout,
        // The version request is the first one: a 400 to it is the engine refusing the
        // API version in its path.
        Client::APIVersionParseError {}
        | Client::DockerResponseServerError {
            status_code: 400, ..
        } => return UnreachableKind::ApiVersion,
        Client::UnsupportedURISchemeError { .. }
        | Client::URLParseError { .. }
        | Client::InvalidURIError { .. }
        | Client::InvalidURIPartsError { .. } => return UnreachableKind::BadAddress,
        // Transparent: its `source` skips the IO error itself.
        Client::IOError { err } => return io_kind(Some(err)),
        _ => {}
    }
    io_kind(
        std::iter::successors(Some(err as &dyn std::error::Error), |e| e.source())
            .find_map(|e| e.downcast_ref::<std::io::Error>()),
    )
}

/// The kind of failure an operating-system error (if any) means for a connection.
fn io_kind(io: Option<&std::io::Error>) -> UnreachableKind {
    match io.map(std::io::Error::kind) {
        Some(std::io::ErrorKind::NotFound) => UnreachableKind::NoSocket,
        Some(std::io::ErrorKind::PermissionDenied) => UnreachableKind::PermissionDenied,
        Some(std::io::ErrorKind::ConnectionRefused) => UnreachableKind::Refused,
        Some(std::io::ErrorKind::TimedOut) => UnreachableKind::Timeout,
        Some(_) | None => UnreachableKind::Other,
    }
}

impl UnreachableKind {
    /// The command or step that fixes this failure for the engine at `host`; the one source
    /// of this advice for error messages and `planbox doctor` alike.
    pub fn fix(self, host: &str) -> String {
        self.fix_given(host, Path::new(DEFAULT_SOCKET).exists())
    }

    /// [`Self::fix`], told whether the default socket exists.
    fn fix_given(self, host: &str, default_socket_exists: bool) -> String {
        // DOCKER_HOST is the only way planbox looks anywhere but the default socket.
        let docker_host_set = host != DEFAULT_HOST;
        match self {
            UnreachableKind::NoSocket if docker_host_set && default_socket_exists => {
                format!("unset DOCKER_HOST   (the default socket {DEFAULT_SOCKET} exists)")
            }
            UnreachableKind::NoSocket | UnreachableKind::Refused if docker_host_set => {
                format!("start the engine at {host}, or unset DOCKER_HOST to use {DEFAULT_SOCKET}")
            }
            UnreachableKind::NoSocket | UnreachableKind::Refused => {
                "sudo systemctl start docker".to_string()
            }
            UnreachableKind::PermissionDenied => {
                "sudo usermod -aG docker \"$USER\" && newgrp docker   (or run planbox with sudo)"
                    .to_string()
            }
            UnreachableKind::ApiVersion => {
                "upgrade the Docker engine to 20.10 or newer (sudo apt-get install docker.io)"
                    .to_string()
            }
            UnreachableKind::BadAddress => format!(
                "check DOCKER_HOST ({host}): unix:///path/to/docker.sock or tcp://host:port"
            ),
            UnreachableKind::Timeout | UnreachableKind::Other => {
                "sudo systemctl restart docker".to_string()
            }
        }
    }
}

/// What the engine says about itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Version {
    /// The engine's release, e.g. `27.1.1`.
    pub engine: String,
    /// The newest API the engine speaks, e.g. `1.46`.
    pub api: String,
    /// The API version planbox agreed on with it.
    pub negotiated: String,
}

impl Version {
    /// True when the engine's API is older than [`MIN_API`]: some sandbox settings may be
    /// refused. An API version that does not parse is given the benefit of the doubt.
    pub fn too_old(&self) -> bool {
        api_number(&self.api).is_some_and(|found| found < MIN_API)
    }
}

/// Ask the engine for its version.
pub async fn version(docker: &Docker) -> Result<Version> {
    let negotiated = docker.client_version().to_string();
    let version = docker.version().await?;
    let unknown = || "unknown".to_string();
    Ok(Version {
        engine: version.version.unwrap_or_else(unknown),
        api: version.api_version.unwrap_or_else(unknown),
        negotiated,
    })
}

/// `"1.41"` as `(1, 41)`, compared as numbers (`1.9 < 1.41`).
fn api_number(text: &str) -> Option<(u64, u64)> {
    let (major, minor) = text.split_once('.')?;
    Some((major.parse().ok()?, minor.parse().ok()?))
}

#[cfg(test)]
mod tests {
    use super::*;
    use pretty_assertions::assert_eq;

    fn kind(err: &Error) -> Option<UnreachableKind> {
        let Error::EngineUnreachable { kind, .. } = err else {
            return None;
        };
        Some(*kind)
    }

    #[tokio::test]
    async fn a_missing_socket_and_a_closed_port_are_different_kinds() {
        let dir = tempfile::tempdir().unwrap();
        let host = format!("unix://{}/no.sock", dir.path().display());
        let err = connect_to(&host).await.unwrap_err();
        assert_eq!(kind(&err), Some(UnreachableKind::NoSocket), "{err:?}");

        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let address = listener.local_addr().unwrap();
        drop(listener);
        let err = connect_to(&format!("tcp://{address}")).await.unwrap_err();
        assert_eq!(kind(&err), Some(UnreachableKind::Refused), "{err:?}");
        assert!(
            format!("{:#}", anyhow::Error::from(err)).starts_with(&format!(
                "cannot reach the Docker engine at tcp://{address}: connection refused: "
            ))
        );
    }

    #[test]
    fn the_os_error_under_the_client_error_decides_the_kind() {
        let io = |kind: std::io::ErrorKind| bollard::errors::Error::IOError { err: kind.into() };
        assert_eq!(
            [
                kind_of(&io(std::io::ErrorKind::PermissionDenied)),
                kind_of(&io(std::io::ErrorKind::ConnectionRefused)),
                kind_of(&io(std::io::ErrorKind::NotFound)),
                kind_of(&io(std::io::ErrorKind::Other)),
                kind_of(&bollard::errors::Error::RequestTimeoutError),
            ],
            [
                UnreachableKind::PermissionDenied,
                UnreachableKind::Refused,
                UnreachableKind::NoSocket,
                UnreachableKind::Other,
                UnreachableKind::Timeout,
            ]
        );
    }

    #[test]
    fn the_fix_follows_the_kind_and_where_planbox_looked() {
        let other = "tcp://127.0.0.1:2375";
        assert_eq!(
            UnreachableKind::NoSocket.fix_given(other, true),
            "unset DOCKER_HOST   (the default socket /var/run/docker.sock exists)"
        );
        assert_eq!(
            UnreachableKind::Refused.fix_given(other, true),
            "start the engine at tcp://127.0.0.1:2375, or unset DOCKER_HOST to use /var/run/docker.sock"
        );
        assert_eq!(
            UnreachableKind::NoSocket.fix_given(DEFAULT_HOST, false),
            "sudo systemctl start docker"
        );
        assert!(
            UnreachableKind::PermissionDenied
                .fix_given(DEFAULT_HOST, true)
                .contains("usermod -aG docker")
        );
        assert!(
            UnreachableKind::BadAddress
                .fix_given("foo://x", true)
                .starts_with("check DOCKER_HOST (foo://x)")
        );
    }

    #[test]
    fn api_versions_compare_as_numbers() {
        assert_eq!(api_number("1.41"), Some((1, 41)));
        assert!(api_number("1.9").unwrap() < MIN_API);
        assert!(api_number("1.43").unwrap() >= MIN_API);
        assert_eq!(api_number("new"), None);
        let version = |api: &str| Version {
            engine: "20.10.0".into(),
            api: api.into(),
            negotiated: api.into(),
        };
        assert!(version("1.40").too_old());
        assert!(!version("1.41").too_old());
        assert!(!version("unknown").too_old());
    }
}
