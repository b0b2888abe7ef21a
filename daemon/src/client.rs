//! A client of isoexecd's unix socket, for isoexecctl and the tests.

use std::path::PathBuf;

use hyper_util::rt::TokioIo;
use tonic::transport::{Channel, Endpoint, Uri};

use crate::api::runtime_service_client::RuntimeServiceClient;

/// The daemon's default socket.
pub const DEFAULT_SOCKET: &str = "/run/isoexec/isoexecd.sock";

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
