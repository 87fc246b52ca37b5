//! Errors and their exit codes.
//!
//! The exit code tells a script what to do next, so it follows who is at fault,
//! not which call failed:
//!
//! | code | meaning | a script should |
//! |---|---|---|
//! | 0 | done (also when the reader of stdout went away, `… \| head`) | go on |
//! | 1 | the switch refused the request (its one-line reason on stderr), or the command failed after the switch answered | fix the request |
//! | 2 | usage: bad flags or arguments, an unreadable or invalid local file | fix the command line |
//! | 3 | the daemon cannot be reached or does not answer in `--timeout` (the message names the socket) | retry later, check vswitchd |

use std::fmt;
use std::time::Duration;

/// Exit code of a refusal by the switch.
pub const EXIT_REFUSED: i32 = 1;
/// Exit code of a usage error (clap's own code for its errors too).
pub const EXIT_USAGE: i32 = 2;
/// Exit code of an unreachable or unresponsive daemon.
pub const EXIT_UNREACHABLE: i32 = 3;

/// Why a command failed; [`Error::exit_code`] is the process's status.
#[derive(Debug)]
pub enum Error {
    /// The server refused the request (its status message): exit 1.
    Refused(tonic::Status),
    /// Something local went wrong after the command line parsed (writing a capture
    /// file): exit 1.
    Local(String),
    /// The arguments parsed but do not make sense (a bad packet description, an
    /// unreadable or invalid document): exit 2, like clap's usage errors.
    Usage(String),
    /// The socket cannot be reached, or the connection broke: exit 3.
    Connect { socket: String, reason: String },
    /// The daemon accepted the connection but did not answer within the timeout
    /// (hung, stopped, or overloaded): exit 3.
    Unresponsive { socket: String, timeout: Duration },
    /// The daemon answered that it cannot serve (`UNAVAILABLE`,
    /// `DEADLINE_EXCEEDED`): exit 3, a state to retry, not a refusal.
    Unavailable { socket: String, reason: String },
    /// Whoever read our stdout closed it (`vswitchctl … | head`): not a failure of
    /// the command, so the binary exits 0 without a word.
    BrokenPipe,
}

impl Error {
    pub fn exit_code(&self) -> i32 {
        match self {
            Error::Refused(_) | Error::Local(_) => EXIT_REFUSED,
            Error::Usage(_) => EXIT_USAGE,
            Error::Connect { .. } | Error::Unresponsive { .. } | Error::Unavailable { .. } => {
                EXIT_UNREACHABLE
            }
            Error::BrokenPipe => 0,
        }
    }
}

/// One line, whatever the server wrote.
fn one_line(s: &str) -> String {
    s.replace(['\n', '\r'], " ")
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Refused(s) => {
                let msg = one_line(s.message());
                if msg.is_empty() {
                    write!(f, "{:?}", s.code())
                } else {
                    write!(f, "{msg}")
                }
            }
            Error::Local(m) | Error::Usage(m) => write!(f, "{m}"),
            Error::Connect { socket, reason } => {
                write!(f, "cannot connect to {socket}: {reason}")
            }
            Error::Unresponsive { socket, timeout } => write!(
                f,
                "no answer from {socket} within {} s (is vswitchd running? --timeout to wait longer)",
                timeout.as_secs()
            ),
            Error::Unavailable { socket, reason } => {
                write!(f, "{socket}: the switch is unavailable: {}", one_line(reason))
            }
            Error::BrokenPipe => write!(f, "stdout closed"),
        }
    }
}

impl std::error::Error for Error {}

impl From<std::io::Error> for Error {
    fn from(e: std::io::Error) -> Self {
        if e.kind() == std::io::ErrorKind::BrokenPipe {
            Error::BrokenPipe
        } else {
            Error::Local(e.to_string())
        }
    }
}

impl From<serde_json::Error> for Error {
    fn from(e: serde_json::Error) -> Self {
        match e.io_error_kind() {
            Some(std::io::ErrorKind::BrokenPipe) => Error::BrokenPipe,
            _ => Error::Local(e.to_string()),
        }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
