//! A client of isoexecd's unix socket, for isoexecctl and the tests.

use std::path::PathBuf;

use hyper_util::rt::TokioIo;
use tonic::transport::{Channel, Endpoint, Uri};

use crate::api::runtime_service_client::RuntimeServiceClient;

/// The daemon's default socket.
pub const DEFAULT_SOCKET: &str = "/run/isoexec/isoexecd.sock";

/// A socket given on a command line: a path, or the gRPC target forms of
/// one (`unix:///abs`, `unix:/abs`, `unix:rel`); no other scheme (isoexecd
/// serves a unix socket only).
pub fn socket_path(s: &str) -> Result<PathBuf, String> {
    let path = match s.split_once("://") {
        Some(("unix", p)) => p,
        Some((scheme, _)) => {
            return Err(format!(
                "{s:?}: isoexecd serves a unix socket only; give a path or unix://PATH, not {scheme}://"
            ))
        }
        None => s.strip_prefix("unix:").unwrap_or(s),
    };
    if path.is_empty() {
        return Err(format!("{s:?}: no socket path"));
    }
    Ok(PathBuf::from(path))
}

/// Connects to isoexecd on the unix socket `path`.
pub async fn connect(
    path: impl Into<PathBuf>,
) -> Result<RuntimeServiceClient<Channel>, tonic::transport::Error> {
    Ok(RuntimeServiceClient::new(channel(path).await?))
}

/// A channel to the unix socket `path`, for any of the daemon's services
/// (the API, reflection).
pub async fn channel(path: impl Into<PathBuf>) -> Result<Channel, tonic::transport::Error> {
    let path: PathBuf = path.into();
    // The URI is not used: every connection goes to the socket.
    let channel = Endpoint::from_static("http://isoexecd")
        .connect_with_connector(tower::service_fn(move |_: Uri| {
            let path = path.clone();
            async move {
                Ok::<_, std::io::Error>(TokioIo::new(tokio::net::UnixStream::connect(path).await?))
            }
        }))
        .await?;
    Ok(channel)
}

#[cfg(test)]
mod tests {
    use super::socket_path;
    use std::path::PathBuf;

    #[test]
    fn socket_paths_in_every_form_a_grpc_user_writes() {
        for (given, want) in [
            ("/run/x.sock", "/run/x.sock"),
            ("unix:///run/x.sock", "/run/x.sock"),
            ("unix:/run/x.sock", "/run/x.sock"),
            ("unix:rel.sock", "rel.sock"),
            ("rel.sock", "rel.sock"),
        ] {
            assert_eq!(socket_path(given), Ok(PathBuf::from(want)), "{given}");
        }
        assert!(socket_path("tcp://127.0.0.1:1")
            .unwrap_err()
            .contains("unix socket only"));
        assert!(socket_path("unix://")
            .unwrap_err()
            .contains("no socket path"));
        assert!(socket_path("").is_err());
    }
}
