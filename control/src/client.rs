//! Connecting to the API as a client (`vswitchctl`, the CNI plugin).

use std::path::{Path, PathBuf};

use hyper_util::rt::TokioIo;
use tokio::net::UnixStream;
use tonic::transport::{Channel, Endpoint, Uri};

use crate::api::vswitch_client::VswitchClient;

/// A connected client of the API.
pub type Client = VswitchClient<Channel>;

/// A client of the API on the Unix socket at `path`. The connection is made now
/// (and made again by the channel if it drops).
///
/// # Errors
/// The socket cannot be connected to.
pub async fn connect_unix(
    path: impl AsRef<Path>,
) -> Result<VswitchClient<Channel>, tonic::transport::Error> {
    Ok(VswitchClient::new(unix_channel(path).await?)
        .max_decoding_message_size(crate::service::MAX_MESSAGE_BYTES)
        .max_encoding_message_size(crate::service::MAX_MESSAGE_BYTES))
}

/// A channel to the Unix socket at `path`, for any service it serves (the API,
/// `grpc.health.v1`).
///
/// # Errors
/// The socket cannot be connected to.
pub async fn unix_channel(path: impl AsRef<Path>) -> Result<Channel, tonic::transport::Error> {
    let path: PathBuf = path.as_ref().to_owned();
    // The URI is required by the HTTP/2 layer but not used to connect.
    Endpoint::from_static("http://localhost")
        .connect_with_connector(tower::service_fn(move |_: Uri| {
            let path = path.clone();
            async move { UnixStream::connect(path).await.map(TokioIo::new) }
        }))
        .await
}
