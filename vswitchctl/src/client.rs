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
    Ok(VswitchClient::new(unix_channel(path, timeout).await?))
}

/// A channel to the Unix socket at `path`, for any service the daemon serves (the
/// API, `grpc.health.v1`); see [`connect`].
pub async fn unix_channel(path: &Path, timeout: Option<Duration>) -> Result<Channel, Error> {
    let socket = path.to_path_buf();
    let mut endpoint = Endpoint::from_static("http://localhost");
    if let Some(t) = timeout {
        endpoint = endpoint.timeout(t).connect_timeout(t);
    }
    let target: PathBuf = socket.clone();
    endpoint
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
        })
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

/// Connects over TCP with mutual TLS: the daemon must present a certificate for
/// `name` signed by `ca`, and this client presents `cert`/`key`.
pub async fn connect_tls(
    addr: &str,
    name: &str,
    files: [&Path; 3],
    timeout: Option<Duration>,
) -> Result<Client, Error> {
    let channel = tls_channel(addr, name, files, timeout).await?;
    let mut client = VswitchClient::new(channel);
    // With TLS 1.3 the daemon judges our certificate after the client thinks the
    // handshake is done, so a refusal shows on the first call: make one here and
    // report it as what it is, a connection the daemon would not accept.
    client
        .health(crate::api_health_request())
        .await
        .map_err(|s| Error::Connect {
            socket: addr.to_owned(),
            reason: format!("TLS session refused ({}): is this client's certificate signed by the daemon's client CA?", s.message()),
        })?;
    Ok(client)
}

/// A channel over TCP with mutual TLS, for any service the daemon serves; see
/// [`connect_tls`] (which also checks that the daemon accepts this client).
pub async fn tls_channel(
    addr: &str,
    name: &str,
    files: [&Path; 3],
    timeout: Option<Duration>,
) -> Result<Channel, Error> {
    use tonic::transport::{Certificate, ClientTlsConfig, Identity};
    let [cert, key, ca] = files;
    let read = |p: &Path| {
        std::fs::read(p).map_err(|e| Error::Usage(format!("cannot read {}: {e}", p.display())))
    };
    let tls = ClientTlsConfig::new()
        .domain_name(name)
        .ca_certificate(Certificate::from_pem(read(ca)?))
        .identity(Identity::from_pem(read(cert)?, read(key)?));
    let fail = |e: &(dyn std::error::Error + 'static)| Error::Connect {
        socket: addr.to_owned(),
        reason: root_cause(e),
    };
    let mut endpoint = Endpoint::from_shared(format!("https://{addr}"))
        .map_err(|e| Error::Usage(format!("--tcp {addr}: {e}")))?
        .tls_config(tls)
        .map_err(|e| fail(&e))?;
    if let Some(t) = timeout {
        endpoint = endpoint.timeout(t).connect_timeout(t);
    }
    endpoint.connect().await.map_err(|e| fail(&e))
}

/// A second channel to the daemon the command line names (Unix socket, or TCP
/// with mutual TLS), for a service other than the API (`grpc.health.v1`).
pub async fn channel_for(cli: &crate::cli::Cli) -> Result<Channel, Error> {
    let timeout = (cli.timeout > 0).then(|| Duration::from_secs(cli.timeout));
    match (&cli.tcp, &cli.cert, &cli.key, &cli.ca) {
        (Some(addr), Some(cert), Some(key), Some(ca)) => {
            tls_channel(addr, &cli.tls_name, [cert, key, ca], timeout).await
        }
        _ => unix_channel(&cli.socket, timeout).await,
    }
}
