//! Errors and their exit codes.

use std::fmt;

/// Why a command failed; [`Error::exit_code`] is the process's status.
#[derive(Debug)]
pub enum Error {
    /// The server refused the request (its status message): exit 1.
    Refused(tonic::Status),
    /// Something local went wrong after the command line parsed (writing output):
    /// exit 1.
    Local(String),
    /// The arguments parsed but do not make sense (a bad packet description, an
    /// unreadable or invalid document): exit 2, like clap's usage errors.
    Usage(String),
    /// The socket cannot be reached: exit 3.
    Connect { socket: String, reason: String },
}

impl Error {
    pub fn exit_code(&self) -> i32 {
        match self {
            Error::Refused(_) | Error::Local(_) => 1,
            Error::Usage(_) => 2,
            Error::Connect { .. } => 3,
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Refused(s) => {
                // One line, whatever the server wrote.
                let msg = s.message().replace(['\n', '\r'], " ");
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
        }
    }
}

impl std::error::Error for Error {}

impl From<std::io::Error> for Error {
    fn from(e: std::io::Error) -> Self {
        Error::Local(e.to_string())
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
