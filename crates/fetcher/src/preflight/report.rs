//! The checklist `validate` produces: what each check found, and the verdict over all of them.

use super::ADVISED_ROLE;

/// How a check ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Outcome {
    Pass,
    /// Works, but something will be missing or may break later.
    Warn,
    /// The fetcher cannot work like this.
    Fail,
    /// Not run, because an earlier step failed or it does not apply.
    Skipped,
}

/// What a check is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CheckKind {
    /// The instance URL is well formed and uses https (or http with `allow_http`).
    Url,
    /// The instance's (or proxy's) host name resolves.
    Dns,
    /// A TCP connection to it succeeds.
    Connect,
    /// An unauthenticated request gets an HTTP answer (exercising TLS for https).
    Http,
    /// ServiceNow's clock (the `Date` header) agrees with this host's.
    Clock,
    /// The credentials are accepted.
    Auth,
    /// The integration user's `sys_user` row is found.
    User,
    /// The user has [`REQUIRED_ROLES`](super::REQUIRED_ROLES).
    Roles,
    /// The user has [`ADVISED_ROLE`].
    AdvisedRole,
    /// The user's time zone is UTC/GMT.
    TimeZone,
    /// The user can read this table.
    TableRead(&'static str),
    /// `sys_dictionary` shows every field the normalizer maps for this table.
    MappedFields(&'static str),
    /// The filter under this `metadata` key (`incident_query`, `change_request_query`) parses
    /// and names only fields its table has.
    Filter(&'static str),
}

impl CheckKind {
    /// The checklist label.
    pub fn title(&self) -> String {
        match self {
            CheckKind::Url => "URL".to_owned(),
            CheckKind::Dns => "DNS".to_owned(),
            CheckKind::Connect => "TCP connect".to_owned(),
            CheckKind::Http => "TLS / HTTP".to_owned(),
            CheckKind::Clock => "Clock".to_owned(),
            CheckKind::Auth => "Authentication".to_owned(),
            CheckKind::User => "Integration user".to_owned(),
            CheckKind::Roles => "Required roles".to_owned(),
            CheckKind::AdvisedRole => format!("Role {ADVISED_ROLE}"),
            CheckKind::TimeZone => "Time zone".to_owned(),
            CheckKind::TableRead(table) => format!("Read {table}"),
            CheckKind::MappedFields(table) => format!("Fields {table}"),
            CheckKind::Filter(key) => format!("Filter {key}"),
        }
    }
}

/// One line of the checklist.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Check {
    pub kind: CheckKind,
    pub outcome: Outcome,
    /// What was found.
    pub message: String,
    /// What to change, for warnings and failures.
    pub hint: Option<String>,
}

impl Check {
    pub(super) fn new(kind: CheckKind, outcome: Outcome, message: impl Into<String>) -> Self {
        Check {
            kind,
            outcome,
            message: message.into(),
            hint: None,
        }
    }

    pub(super) fn pass(kind: CheckKind, message: impl Into<String>) -> Self {
        Self::new(kind, Outcome::Pass, message)
    }

    pub(super) fn warn(
        kind: CheckKind,
        message: impl Into<String>,
        hint: impl Into<String>,
    ) -> Self {
        Self::new(kind, Outcome::Warn, message).hint(hint)
    }

    pub(super) fn fail(
        kind: CheckKind,
        message: impl Into<String>,
        hint: impl Into<String>,
    ) -> Self {
        Self::new(kind, Outcome::Fail, message).hint(hint)
    }

    pub(super) fn skipped(kind: CheckKind, message: impl Into<String>) -> Self {
        Self::new(kind, Outcome::Skipped, message)
    }

    pub(super) fn hint(mut self, hint: impl Into<String>) -> Self {
        self.hint = Some(hint.into());
        self
    }
}

/// The checklist of one integration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IntegrationReport {
    pub integration_id: String,
    pub url: String,
    pub checks: Vec<Check>,
}

impl IntegrationReport {
    /// The check of `kind`, if it is on the list.
    pub fn check(&self, kind: CheckKind) -> Option<&Check> {
        self.checks.iter().find(|c| c.kind == kind)
    }

    /// No check failed (warnings are fine).
    pub fn passed(&self) -> bool {
        self.checks.iter().all(|c| c.outcome != Outcome::Fail)
    }
}

/// The result of `validate` over every configured integration.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Report {
    pub integrations: Vec<IntegrationReport>,
}

impl Report {
    /// Exit-code policy: true (exit 0) when at least one integration was checked and no check
    /// failed; warnings do not fail the run.
    pub fn passed(&self) -> bool {
        !self.integrations.is_empty() && self.integrations.iter().all(IntegrationReport::passed)
    }

    /// The report of one integration.
    pub fn integration(&self, integration_id: &str) -> Option<&IntegrationReport> {
        self.integrations
            .iter()
            .find(|r| r.integration_id == integration_id)
    }
}
