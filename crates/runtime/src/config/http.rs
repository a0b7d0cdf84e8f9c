//! The `[http]` section: where probes and metrics are served.

use std::net::{Ipv4Addr, SocketAddr};

use serde::Deserialize;

/// The probe and metrics listener every binary runs (`/healthz`, `/readyz`, `/metrics`).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpConfig {
    /// Socket address to listen on. All interfaces by default, because the kubelet and
    /// Prometheus reach the pod from outside it.
    #[serde(default = "default_listen")]
    pub listen: SocketAddr,
}

impl Default for HttpConfig {
    fn default() -> Self {
        Self {
            listen: default_listen(),
        }
    }
}

fn default_listen() -> SocketAddr {
    SocketAddr::from((Ipv4Addr::UNSPECIFIED, 9090))
}
