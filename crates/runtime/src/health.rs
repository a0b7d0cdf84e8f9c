//! Liveness and readiness state behind `/healthz` and `/readyz`.
//!
//! The two are separate on purpose: *alive* means the process's loop still runs (if
//! not, the orchestrator should restart it); *ready* means every component can do its
//! work right now (broker reachable, SEI accepting), and failing it only takes the pod
//! out of rotation while the component recovers by itself.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use serde::Serialize;

/// Shared health state; clone it freely, every clone sees the same components.
#[derive(Debug, Clone, Default)]
pub struct Health {
    inner: Arc<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    components: Mutex<BTreeMap<String, ComponentState>>,
    dead: Mutex<Option<String>>,
}

#[derive(Debug, Clone)]
enum ComponentState {
    Ready,
    /// Working, but part of its work is not getting done (one fetcher unit lacks a role,
    /// say). Readiness stays true: taking the whole pod out of rotation, or stalling a
    /// rollout, would not bring the missing part back, and the rest of the work would stop
    /// being counted as healthy. `/readyz` names the part and why.
    Degraded(String),
    NotReady(String),
}

/// Lets one component report whether it is ready.
#[derive(Debug, Clone)]
pub struct ReadinessHandle {
    inner: Arc<Inner>,
    name: String,
}

/// A snapshot of readiness, as `/readyz` serves it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Readiness {
    /// True when every registered component is ready (vacuously so with none).
    pub ready: bool,
    /// The components that are not ready, by name, with their reasons.
    pub not_ready: Vec<NotReady>,
    /// Components that work but report part of their work as failing, with their reasons;
    /// they do not make `ready` false.
    pub degraded: Vec<NotReady>,
}

/// One component that is not ready and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct NotReady {
    /// The name it was registered under.
    pub component: String,
    /// What it last reported.
    pub reason: String,
}

/// A snapshot of liveness, as `/healthz` serves it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Liveness {
    /// False once [`Health::set_dead`] was called.
    pub alive: bool,
    /// Why the process declared itself dead.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// Reason a component reports until its first `set_ready`/`set_not_ready`, so a pod is
/// never ready before its components have checked in.
pub const STARTING: &str = "starting";

impl Health {
    /// A process that is alive and has no components yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Registers a component (not ready, reason [`STARTING`]) and returns its handle.
    /// Asking again for a registered name returns a handle to the same component
    /// without changing its state.
    pub fn component(&self, name: impl Into<String>) -> ReadinessHandle {
        let name = name.into();
        lock(&self.inner.components)
            .entry(name.clone())
            .or_insert_with(|| ComponentState::NotReady(STARTING.to_owned()));
        ReadinessHandle {
            inner: Arc::clone(&self.inner),
            name,
        }
    }

    /// The current readiness of all components. Reasons are served to anyone who can
    /// reach the probe port: components must not put secrets in them.
    pub fn readiness(&self) -> Readiness {
        let mut not_ready = Vec::new();
        let mut degraded = Vec::new();
        for (name, state) in lock(&self.inner.components).iter() {
            let (list, reason) = match state {
                ComponentState::Ready => continue,
                ComponentState::Degraded(reason) => (&mut degraded, reason),
                ComponentState::NotReady(reason) => (&mut not_ready, reason),
            };
            list.push(NotReady {
                component: name.clone(),
                reason: reason.clone(),
            });
        }
        Readiness {
            ready: not_ready.is_empty(),
            not_ready,
            degraded,
        }
    }

    /// Declares the process unable to recover, e.g. its main loop ended with an error
    /// while the process lingers: `/healthz` fails so the orchestrator restarts it.
    pub fn set_dead(&self, reason: impl Into<String>) {
        *lock(&self.inner.dead) = Some(reason.into());
    }

    /// The current liveness.
    pub fn liveness(&self) -> Liveness {
        let reason = lock(&self.inner.dead).clone();
        Liveness {
            alive: reason.is_none(),
            reason,
        }
    }
}

impl ReadinessHandle {
    /// The component can do its work.
    pub fn set_ready(&self) {
        self.set(ComponentState::Ready);
    }

    /// The component cannot do its work right now, e.g. "broker unreachable". The reason
    /// is served by `/readyz`: never put a secret in it.
    pub fn set_not_ready(&self, reason: impl Into<String>) {
        self.set(ComponentState::NotReady(reason.into()));
    }

    /// The component works, but part of its work fails for `reason`: `/readyz` stays
    /// ready (200) and lists the component and reason under `degraded`. Never put a secret
    /// in the reason.
    pub fn set_degraded(&self, reason: impl Into<String>) {
        self.set(ComponentState::Degraded(reason.into()));
    }

    /// The name this component is registered under.
    pub fn name(&self) -> &str {
        &self.name
    }

    fn set(&self, state: ComponentState) {
        lock(&self.inner.components).insert(self.name.clone(), state);
    }
}

/// Health state stays usable even if a thread panicked while holding the lock: the
/// maps are always consistent between single insertions.
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_new_component_is_not_ready_until_it_says_so() {
        let health = Health::new();
        let kafka = health.component("kafka");
        assert!(!health.readiness().ready);
        assert_eq!(health.readiness().not_ready[0].reason, STARTING);
        kafka.set_ready();
        assert!(health.readiness().ready);
    }

    #[test]
    fn readiness_lists_only_the_components_that_are_not_ready() {
        let health = Health::new();
        health.component("kafka").set_ready();
        health.component("sei").set_not_ready("401 from SEI");
        let readiness = health.readiness();
        assert!(!readiness.ready);
        assert_eq!(
            readiness.not_ready,
            vec![NotReady {
                component: "sei".to_owned(),
                reason: "401 from SEI".to_owned()
            }]
        );
    }

    #[test]
    fn a_degraded_component_is_listed_but_keeps_readiness() {
        let health = Health::new();
        health.component("fetcher").set_ready();
        let unit = health.component("fetcher unit 4711:incident");
        unit.set_degraded("HTTP 403");
        let readiness = health.readiness();
        assert!(readiness.ready);
        assert_eq!(
            readiness.degraded,
            vec![NotReady {
                component: "fetcher unit 4711:incident".to_owned(),
                reason: "HTTP 403".to_owned()
            }]
        );
        unit.set_ready();
        assert!(health.readiness().degraded.is_empty());
    }

    #[test]
    fn registering_a_name_again_keeps_its_state() {
        let health = Health::new();
        health.component("kafka").set_ready();
        let again = health.component("kafka");
        assert!(health.readiness().ready);
        again.set_not_ready("rebalancing");
        assert!(!health.readiness().ready);
    }

    #[test]
    fn set_dead_fails_liveness_with_the_reason() {
        let health = Health::new();
        assert!(health.liveness().alive);
        health.set_dead("fetch loop ended");
        assert_eq!(
            health.liveness(),
            Liveness {
                alive: false,
                reason: Some("fetch loop ended".to_owned())
            }
        );
    }
}
