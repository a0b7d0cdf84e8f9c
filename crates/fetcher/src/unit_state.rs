//! What each unit of this replica is doing, as `/readyz` and the metrics show it.
//!
//! A unit is `running` (scanning or waiting for its next poll), `backing_off` (it failed,
//! panicked or ended, and waits before it starts over) or `degraded` (ServiceNow refused it
//! with 401 or 403; it waits with growing pauses and tries again). A unit leaves
//! `backing_off`/`degraded` only once a run of it read a page again, so a unit that keeps
//! being refused does not flicker back to `running` at every attempt.
//!
//! Readiness: every unit that is not running is listed under `degraded` in `/readyz` with a
//! secret-free reason, while `/readyz` stays 200 as long as at least one unit of the replica
//! runs; once none does, the component `fetcher units` is not ready and `/readyz` answers 503.
//! A fetcher serves no traffic, so readiness matters for rollouts and alerts: a table without
//! its role should be seen and alerted on, but must not stall a rollout or hide that every
//! other unit works.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use nowstream_runtime::{Health, ReadinessHandle};

use crate::failure::Denial;
use crate::metrics;
use crate::units::WorkUnit;

/// The state of one unit, also the `state` label of `nowstream_fetcher_unit_state`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UnitState {
    Running,
    BackingOff,
    Degraded,
}

impl UnitState {
    pub const ALL: [UnitState; 3] = [
        UnitState::Running,
        UnitState::BackingOff,
        UnitState::Degraded,
    ];

    pub fn label(self) -> &'static str {
        match self {
            UnitState::Running => "running",
            UnitState::BackingOff => "backing_off",
            UnitState::Degraded => "degraded",
        }
    }
}

/// The states of this replica's units; clones share them.
#[derive(Debug, Clone)]
pub struct UnitStates {
    inner: Arc<Mutex<Inner>>,
    health: Health,
    /// `fetcher units`: not ready while no unit runs.
    overall: ReadinessHandle,
}

#[derive(Debug, Default)]
struct Inner {
    units: BTreeMap<WorkUnit, Entry>,
    /// Whether any unit read a page since the process started.
    any_progress: bool,
}

#[derive(Debug)]
struct Entry {
    state: UnitState,
    /// The refusal behind `degraded`.
    denial: Option<Denial>,
    /// Whether the current run read a page.
    progressed: bool,
    readiness: ReadinessHandle,
}

/// Name of the aggregate readiness component.
pub const UNITS_COMPONENT: &str = "fetcher units";

/// Name of one unit's readiness component, as `/readyz` lists it.
pub fn component_name(unit: &WorkUnit) -> String {
    format!("fetcher unit {unit}")
}

impl UnitStates {
    pub fn new(health: &Health) -> Self {
        let overall = health.component(UNITS_COMPONENT);
        overall.set_ready();
        Self {
            inner: Arc::new(Mutex::new(Inner::default())),
            health: health.clone(),
            overall,
        }
    }

    /// A run of `unit` starts. A new unit counts as running; one that was down stays down
    /// until the run reads a page ([`UnitProgress::page_read`]).
    pub fn run_started(&self, unit: &WorkUnit) -> UnitProgress {
        let mut inner = self.lock();
        let entry = inner.units.entry(unit.clone()).or_insert_with(|| {
            let readiness = self.health.component(component_name(unit));
            readiness.set_ready();
            publish_state(unit, UnitState::Running);
            Entry {
                state: UnitState::Running,
                denial: None,
                progressed: false,
                readiness,
            }
        });
        entry.progressed = false;
        self.update_overall(&inner);
        UnitProgress {
            states: self.clone(),
            unit: unit.clone(),
        }
    }

    /// A run of `unit` ended and the unit waits before the next one: `degraded` when
    /// ServiceNow refused it (`denial`), `backing_off` otherwise. `reason` is served by
    /// `/readyz` and must not hold a secret.
    pub fn run_ended(&self, unit: &WorkUnit, denial: Option<Denial>, reason: &str) {
        let mut inner = self.lock();
        let Some(entry) = inner.units.get_mut(unit) else {
            return;
        };
        let state = if denial.is_some() {
            UnitState::Degraded
        } else {
            UnitState::BackingOff
        };
        entry.state = state;
        entry.denial = denial;
        entry
            .readiness
            .set_degraded(format!("{}: {reason}", state.label()));
        publish_state(unit, state);
        self.update_overall(&inner);
    }

    /// Whether the current (or just ended) run of `unit` read a page.
    pub fn run_progressed(&self, unit: &WorkUnit) -> bool {
        self.lock()
            .units
            .get(unit)
            .is_some_and(|entry| entry.progressed)
    }

    /// `unit` no longer runs here (moved to another replica, or shutdown).
    pub fn remove(&self, unit: &WorkUnit) {
        let mut inner = self.lock();
        if let Some(entry) = inner.units.remove(unit) {
            entry.readiness.set_ready();
            metrics::unit_state_cleared(&unit.integration_id, unit.source_table());
        }
        self.update_overall(&inner);
    }

    /// The state of `unit`, if it runs here.
    pub fn state(&self, unit: &WorkUnit) -> Option<UnitState> {
        self.lock().units.get(unit).map(|entry| entry.state)
    }

    /// True when every unit of this replica was refused its credentials (401) and none read
    /// a single page since the process started: the credentials are wrong, not passing
    /// trouble, and retrying would only risk locking the integration account.
    pub fn credentials_rejected_everywhere(&self) -> bool {
        let inner = self.lock();
        !inner.any_progress
            && !inner.units.is_empty()
            && inner
                .units
                .values()
                .all(|entry| entry.denial == Some(Denial::Unauthorized))
    }

    fn page_read(&self, unit: &WorkUnit) {
        let mut inner = self.lock();
        inner.any_progress = true;
        let Some(entry) = inner.units.get_mut(unit) else {
            return;
        };
        entry.progressed = true;
        if entry.state != UnitState::Running {
            tracing::info!(%unit, "unit recovered: it reads pages again");
            entry.state = UnitState::Running;
            entry.denial = None;
            entry.readiness.set_ready();
            publish_state(unit, UnitState::Running);
            self.update_overall(&inner);
        }
    }

    fn update_overall(&self, inner: &Inner) {
        let down = inner
            .units
            .values()
            .filter(|entry| entry.state != UnitState::Running)
            .count();
        if down > 0 && down == inner.units.len() {
            self.overall.set_not_ready(format!(
                "no unit is running: all {down} are backing off or degraded"
            ));
        } else {
            self.overall.set_ready();
        }
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

fn publish_state(unit: &WorkUnit, state: UnitState) {
    metrics::unit_state(&unit.integration_id, unit.source_table(), state);
}

/// Lets a unit run report that it read a page, i.e. that the unit works (again).
#[derive(Debug, Clone)]
pub struct UnitProgress {
    states: UnitStates,
    unit: WorkUnit,
}

impl UnitProgress {
    /// The run got a page (possibly empty) from ServiceNow.
    pub fn page_read(&self) {
        self.states.page_read(&self.unit);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn units() -> (WorkUnit, WorkUnit) {
        let mut all = WorkUnit::all_for("4711");
        (all.remove(0), all.remove(0))
    }

    #[test]
    fn a_denied_unit_is_listed_as_degraded_while_readiness_holds() {
        let health = Health::new();
        let states = UnitStates::new(&health);
        let (incident, change) = units();
        states.run_started(&incident).page_read();
        states.run_started(&change);
        states.run_ended(
            &change,
            Some(Denial::Forbidden),
            "HTTP 403; next try in 30s",
        );
        let readiness = health.readiness();
        assert!(readiness.ready, "{readiness:?}");
        assert_eq!(readiness.degraded.len(), 1, "{readiness:?}");
        assert_eq!(
            readiness.degraded[0].component,
            "fetcher unit 4711:change_request"
        );
        assert!(
            readiness.degraded[0]
                .reason
                .starts_with("degraded: HTTP 403")
        );
        assert_eq!(states.state(&change), Some(UnitState::Degraded));
    }

    #[test]
    fn a_unit_stays_degraded_through_new_runs_until_one_reads_a_page() {
        let health = Health::new();
        let states = UnitStates::new(&health);
        let (incident, change) = units();
        states.run_started(&incident);
        let progress = states.run_started(&change);
        states.run_ended(&change, Some(Denial::Unauthorized), "401");
        assert!(!states.run_progressed(&change));
        let progress_again = states.run_started(&change);
        assert_eq!(states.state(&change), Some(UnitState::Degraded));
        drop(progress);
        progress_again.page_read();
        assert_eq!(states.state(&change), Some(UnitState::Running));
        assert!(health.readiness().degraded.is_empty());
        assert!(states.run_progressed(&change));
        states.run_ended(&change, None, "broker down");
        assert_eq!(states.state(&change), Some(UnitState::BackingOff));
    }

    #[test]
    fn readiness_fails_only_when_no_unit_runs() {
        let health = Health::new();
        let states = UnitStates::new(&health);
        let (incident, change) = units();
        states.run_started(&incident);
        states.run_started(&change);
        states.run_ended(&incident, Some(Denial::Forbidden), "403");
        assert!(health.readiness().ready);
        states.run_ended(&change, None, "the unit's task panicked");
        let readiness = health.readiness();
        assert!(!readiness.ready);
        assert_eq!(readiness.not_ready[0].component, UNITS_COMPONENT);
        states.remove(&change);
        states.remove(&incident);
        let readiness = health.readiness();
        assert!(
            readiness.ready && readiness.degraded.is_empty(),
            "{readiness:?}"
        );
    }

    #[test]
    fn credentials_count_as_rejected_only_if_every_unit_got_401_before_any_page() {
        let states = UnitStates::new(&Health::new());
        let (incident, change) = units();
        states.run_started(&incident);
        states.run_started(&change);
        states.run_ended(&incident, Some(Denial::Unauthorized), "401");
        assert!(!states.credentials_rejected_everywhere());
        states.run_ended(&change, Some(Denial::Forbidden), "403");
        assert!(!states.credentials_rejected_everywhere());
        states.run_ended(&change, Some(Denial::Unauthorized), "401");
        assert!(states.credentials_rejected_everywhere());

        let states = UnitStates::new(&Health::new());
        states.run_started(&incident).page_read();
        states.run_started(&change);
        states.run_ended(&incident, Some(Denial::Unauthorized), "401");
        states.run_ended(&change, Some(Denial::Unauthorized), "401");
        assert!(
            !states.credentials_rejected_everywhere(),
            "a 401 after pages were read is passing trouble"
        );
    }
}
