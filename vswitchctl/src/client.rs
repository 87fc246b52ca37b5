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
    let connecting = async {
        Ok(VswitchClient::new(unix_channel(path, timeout).await?)
            .max_decoding_message_size(control::service::MAX_MESSAGE_BYTES)
            .max_encoding_message_size(control::service::MAX_MESSAGE_BYTES))
    };
    match timeout {
        // A daemon that is stopped or wedged with a full accept backlog leaves
        // connect(2) itself waiting: bounded like any request.
        Some(t) => tokio::time::timeout(t, connecting)
            .await
            .unwrap_or_else(|_| {
                Err(Error::Unresponsive {
                    socket: path.display().to_string(),
                    timeout: t,
                })
            }),
        None => connecting.await,
    }
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

/// What a failed call means for the operator, by who is at fault (see
/// [`crate::error`] for the exit codes): the daemon did not answer in time, cannot
/// serve, or went away (exit 3), or it refused the request (exit 1). `socket`
/// names the daemon (the Unix socket, or HOST:PORT with `--tcp`); `timeout` is the
/// request timeout in force.
pub fn classify(status: tonic::Status, socket: &str, timeout: Option<Duration>) -> Error {
    use tonic::Code;
    match status.code() {
        // The client's own request timeout (tonic reports it as CANCELLED with
        // this message and nothing else to tell it apart).
        Code::Cancelled if status.message() == tonic::TimeoutExpired(()).to_string() => {
            Error::Unresponsive {
                socket: socket.to_owned(),
                timeout: timeout.unwrap_or_default(),
            }
        }
        // Made up by the transport (the daemon went away mid-request): a broken
        // connection, not an answer.
        Code::Unavailable if std::error::Error::source(&status).is_some() => Error::Connect {
            socket: socket.to_owned(),
            reason: status.message().to_string(),
        },
        Code::Unavailable | Code::DeadlineExceeded => Error::Unavailable {
            socket: socket.to_owned(),
            reason: status.message().to_string(),
        },
        _ => Error::Refused(status),
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
    let mut client = VswitchClient::new(channel)
        .max_decoding_message_size(control::service::MAX_MESSAGE_BYTES)
        .max_encoding_message_size(control::service::MAX_MESSAGE_BYTES);
    // With TLS 1.3 the daemon judges our certificate after the client thinks the
    // handshake is done, so a refusal shows on the first call: make one here and
    // report it as what it is, a connection the daemon would not accept.
    client
        .health(crate::api_health_request())
        .await
        .map_err(|s| {
            let msg = s.message().to_owned();
            match classify(s, addr, timeout) {
                // A hung daemon is not a certificate problem: say which it is.
                e @ Error::Unresponsive { .. } => e,
                _ => Error::Connect {
                    socket: addr.to_owned(),
                    reason: format!("TLS session refused ({msg}): is this client's certificate signed by the daemon's client CA?"),
                },
            }
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

#[cfg(test)]
mod tests {
    use super::*;
    use tonic::{Code, Status};

    const SOCK: &str = "/run/vswitch/vswitchd.sock";

    fn code_of(s: Status) -> i32 {
        classify(s, SOCK, Some(Duration::from_secs(10))).exit_code()
    }

    #[test]
    fn refusals_exit_1() {
        for code in [
            Code::InvalidArgument,
            Code::FailedPrecondition,
            Code::PermissionDenied,
            Code::NotFound,
            Code::AlreadyExists,
            Code::ResourceExhausted,
            Code::Aborted,
            Code::OutOfRange,
            Code::Unimplemented,
            Code::Internal,
            Code::Unknown,
            Code::DataLoss,
            Code::Unauthenticated,
            // CANCELLED with the server's own words is its answer.
            Code::Cancelled,
        ] {
            assert_eq!(code_of(Status::new(code, "no")), 1, "{code:?}");
        }
    }

    #[test]
    fn an_absent_or_hung_daemon_exits_3_naming_the_socket() {
        for code in [Code::Unavailable, Code::DeadlineExceeded] {
            let e = classify(Status::new(code, "workers stalled"), SOCK, None);
            assert_eq!(e.exit_code(), 3, "{code:?}");
            let msg = e.to_string();
            assert!(
                msg.contains(SOCK) && msg.contains("workers stalled"),
                "{msg}"
            );
        }
        // The client's own timeout, as tonic reports it.
        let e = classify(
            Status::cancelled(tonic::TimeoutExpired(()).to_string()),
            SOCK,
            Some(Duration::from_secs(10)),
        );
        assert_eq!(e.exit_code(), 3);
        assert_eq!(
            e.to_string(),
            "no answer from /run/vswitch/vswitchd.sock within 10 s (is vswitchd running? --timeout to wait longer)"
        );
        // A connection the transport saw break (a source error attached).
        let broken = Status::from_error(Box::new(tonic::ConnectError(Box::new(
            std::io::Error::from(std::io::ErrorKind::ConnectionReset),
        ))));
        assert_eq!(broken.code(), Code::Unavailable);
        let e = classify(broken, SOCK, None);
        assert_eq!(e.exit_code(), 3);
        assert!(
            e.to_string().starts_with("cannot connect to /run/vswitch/"),
            "{e}"
        );
    }

    #[test]
    fn local_errors() {
        use std::io::{Error as IoError, ErrorKind};
        assert_eq!(
            Error::from(IoError::from(ErrorKind::BrokenPipe)).exit_code(),
            0
        );
        assert!(matches!(
            Error::from(IoError::from(ErrorKind::BrokenPipe)),
            Error::BrokenPipe
        ));
        assert_eq!(
            Error::from(IoError::from(ErrorKind::StorageFull)).exit_code(),
            1
        );
        assert_eq!(Error::Usage("x".into()).exit_code(), 2);
    }
}
