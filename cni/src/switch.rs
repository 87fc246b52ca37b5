//! The switch's side of an attachment, over vswitchd's API: a port and the
//! pod's endpoint, added in one transaction and removed in one.

use std::time::Duration;

use control::api::{
    self, op::Op as K, EndpointKey, GetStateRequest, ListPortsRequest, Op, WriteRequest,
};
use vswitchctl::client::{classify, Client};
use vswitchctl::error::Error as CtlError;

use crate::config::NetConf;
use crate::error::{CniError, Result, INVALID_CONFIG, IO_FAILURE, TRY_AGAIN_LATER};

/// A connection to the switch's API.
pub struct Switch {
    client: Client,
    label: String,
    timeout: Duration,
}

/// What a failed API call means for the runtime: a switch that is not there or
/// cannot serve is worth a retry (11); a refusal, of the request or of this
/// client's certificate, means the configuration asks for what the switch will
/// not do (7).
fn to_cni(e: CtlError) -> CniError {
    match e {
        CtlError::Refused(s) => CniError::new(
            INVALID_CONFIG,
            "the switch refused the attachment",
            format!("{:?}: {}", s.code(), s.message()),
        ),
        // The daemon would not take this client's certificate: the configuration's
        // TLS files are wrong, and retrying will not change that.
        CtlError::Connect { socket, reason } if reason.starts_with("TLS session refused") => {
            CniError::new(
                INVALID_CONFIG,
                "the switch refused this client's certificate",
                format!("{socket}: {reason}"),
            )
        }
        e @ (CtlError::Connect { .. }
        | CtlError::Unresponsive { .. }
        | CtlError::Unavailable { .. }) => CniError::new(
            TRY_AGAIN_LATER,
            "the switch is not reachable",
            e.to_string(),
        ),
        e @ CtlError::Usage(_) => CniError::new(
            INVALID_CONFIG,
            "cannot connect to the switch",
            e.to_string(),
        ),
        e => CniError::new(IO_FAILURE, "switch API", e.to_string()),
    }
}

impl Switch {
    /// Connects as the configuration says (Unix socket, or TCP with mutual TLS).
    ///
    /// # Errors
    /// Code 11 when the switch is not reachable; 7 for unusable TLS files.
    pub async fn connect(conf: &NetConf) -> Result<Switch> {
        let timeout = Duration::from_millis(conf.timeout_ms);
        let (client, label) = match &conf.tls {
            Some(t) => (
                vswitchctl::client::connect_tls(
                    &t.address,
                    &t.server_name,
                    [&t.cert, &t.key, &t.ca],
                    Some(timeout),
                )
                .await,
                t.address.clone(),
            ),
            None => {
                let s = conf.socket_path();
                (
                    vswitchctl::client::connect(&s, Some(timeout)).await,
                    s.display().to_string(),
                )
            }
        };
        Ok(Switch {
            client: client.map_err(to_cni)?,
            label,
            timeout,
        })
    }

    fn status(&self, s: tonic::Status) -> CniError {
        to_cni(classify(s, &self.label, Some(self.timeout)))
    }

    /// Adds `port` and `endpoint` in one write: both or neither.
    ///
    /// # Errors
    /// The switch's refusal (7) or unavailability (11).
    pub async fn attach(&mut self, port: api::Port, endpoint: api::Endpoint) -> Result<()> {
        self.write(vec![K::AddPort(port), K::AddEndpoint(endpoint)])
            .await
    }

    /// Adds `port` alone (a kernel pod's, plugged while its address is still
    /// being asked for).
    ///
    /// # Errors
    /// As [`attach`](Self::attach).
    pub async fn add_port(&mut self, port: api::Port) -> Result<()> {
        self.write(vec![K::AddPort(port)]).await
    }

    /// Adds `endpoint` alone, on a port added before.
    ///
    /// # Errors
    /// As [`attach`](Self::attach).
    pub async fn add_endpoint(&mut self, endpoint: api::Endpoint) -> Result<()> {
        self.write(vec![K::AddEndpoint(endpoint)]).await
    }

    async fn write(&mut self, ops: Vec<K>) -> Result<()> {
        let ops = ops.into_iter().map(|op| Op { op: Some(op) }).collect();
        self.client
            .write(WriteRequest {
                ops,
                expected_generation: 0,
            })
            .await
            .map(|_| ())
            .map_err(|s| self.status(s))
    }

    /// The port named `name` and the local endpoints on it.
    ///
    /// # Errors
    /// Code 11 when the switch does not answer.
    pub async fn find(
        &mut self,
        name: &str,
    ) -> Result<(u64, Option<api::Port>, Vec<api::Endpoint>)> {
        let st = self
            .client
            .get_state(GetStateRequest {})
            .await
            .map_err(|s| self.status(s))?
            .into_inner();
        let state = st.state.unwrap_or_default();
        let port = state.ports.into_iter().find(|p| p.name == name);
        let eps = state
            .endpoints
            .into_iter()
            .filter(|e| e.port == name)
            .collect();
        Ok((st.generation, port, eps))
    }

    /// Removes port `name` and its endpoints in one write; what is gone already is
    /// fine. Returns whether anything was removed.
    ///
    /// # Errors
    /// Code 11 when the switch does not answer, 7 when it refuses.
    pub async fn detach(&mut self, name: &str) -> Result<bool> {
        // A compare-and-set on the generation read: a concurrent write for another
        // pod makes this one re-read instead of failing on a stale view.
        for _ in 0..20 {
            let (generation, port, eps) = self.find(name).await?;
            let mut ops: Vec<Op> = eps
                .into_iter()
                .map(|e| Op {
                    op: Some(K::DelEndpoint(EndpointKey {
                        network: e.network,
                        mac: e.mac,
                    })),
                })
                .collect();
            if port.is_some() {
                ops.push(Op {
                    op: Some(K::DelPort(name.to_owned())),
                });
            }
            if ops.is_empty() {
                return Ok(false);
            }
            match self
                .client
                .write(WriteRequest {
                    ops,
                    expected_generation: generation,
                })
                .await
            {
                Ok(_) => return Ok(true),
                Err(s) if s.code() == tonic::Code::FailedPrecondition => continue,
                Err(s) => return Err(self.status(s)),
            }
        }
        Err(CniError::new(
            TRY_AGAIN_LATER,
            "the switch is busy",
            format!("port {name}: the state kept changing under 20 attempts to remove it"),
        ))
    }

    /// The running port `name` (driver, link), if it runs.
    ///
    /// # Errors
    /// Code 11 when the switch does not answer.
    pub async fn port_status(&mut self, name: &str) -> Result<Option<api::PortStatus>> {
        let ports = self
            .client
            .list_ports(ListPortsRequest {})
            .await
            .map_err(|s| self.status(s))?
            .into_inner()
            .ports;
        Ok(ports.into_iter().find(|p| p.name == name))
    }

    /// Every port of the desired state and the local endpoints.
    ///
    /// # Errors
    /// Code 11 when the switch does not answer.
    pub async fn state(&mut self) -> Result<api::DesiredState> {
        Ok(self
            .client
            .get_state(GetStateRequest {})
            .await
            .map_err(|s| self.status(s))?
            .into_inner()
            .state
            .unwrap_or_default())
    }

    /// Whether the switch's workers are alive.
    ///
    /// # Errors
    /// Code 11 when the switch does not answer.
    pub async fn healthy(&mut self) -> Result<bool> {
        Ok(self
            .client
            .health(api::HealthRequest {})
            .await
            .map_err(|s| self.status(s))?
            .into_inner()
            .serving)
    }
}
