//! The connection to vswitchd's gRPC socket (a Unix socket).

use std::path::{Path, PathBuf};
use std::time::Duration;

use control::api::vswitch_client::VswitchClient;
use tonic::transport::{Channel, Endpoint};

use crate::error::Error;

/// The daemon's default socket.
pub const DEFAULT_SOCKET: &str = "/run/vswitch/vswitchd.sock";

/// The client every command takes.
pub type Client = VswitchClient<Channel>;

/// Connects to the Unix socket at `path` (eagerly: a missing socket or a refused
/// connection is reported here). `timeout` bounds each request.
pub async fn connect(path: &Path, timeout: Option<Duration>) -> Result<Client, Error> {
    let socket = path.to_path_buf();
    let mut endpoint = Endpoint::from_static("http://localhost");
    if let Some(t) = timeout {
        endpoint = endpoint.timeout(t).connect_timeout(t);
    }
    let target: PathBuf = socket.clone();
    let channel = endpoint
        .connect_with_connector(tower::service_fn(move |_: tonic::transport::Uri| {
            let target = target.clone();
            async move {
                let stream = tokio::net::UnixStream::connect(&target).await?;
                Ok::<_, std::io::Error>(hyper_util::rt::TokioIo::new(stream))
            }
        }))
        .await
        .map_err(|e| Error::Connect {
            socket: socket.display().to_string(),
            reason: root_cause(&e),
        })?;
    Ok(VswitchClient::new(channel))
}

/// The innermost error's message (tonic's own says only "transport error").
fn root_cause(e: &(dyn std::error::Error + 'static)) -> String {
    let mut cur = e;
    while let Some(next) = cur.source() {
        cur = next;
    }
    cur.to_string()
}

/// A status the transport made up (the daemon went away mid-request) is a
/// connection failure, not a refusal.
pub fn classify(status: tonic::Status, socket: &Path) -> Error {
    let transport =
        status.code() == tonic::Code::Unavailable && std::error::Error::source(&status).is_some();
    if transport {
        Error::Connect {
            socket: socket.display().to_string(),
            reason: status.message().to_string(),
        }
    } else {
        Error::Refused(status)
    }
}
