//! Why a unit run failed, sorted by what the unit does about it.

use std::fmt;

use nowstream_servicenow::client::ClientError;

use crate::FetchError;

/// How a unit run ended when it did not end by cancellation.
#[derive(Debug)]
pub enum UnitFailure {
    /// ServiceNow refused this unit's requests (401 or 403). Only this unit is affected: it
    /// backs off with growing pauses and tries again, the other units go on. A 403 usually
    /// needs a role or an ACL granted; a 401 may be a wrong password or a passing refusal
    /// (an instance upgrade, a node restart).
    Denied { denial: Denial, error: FetchError },
    /// Anything else: the unit starts over from its checkpoint after a pause.
    Retry(FetchError),
}

impl UnitFailure {
    /// The error behind the failure.
    pub fn error(&self) -> &FetchError {
        match self {
            UnitFailure::Denied { error, .. } | UnitFailure::Retry(error) => error,
        }
    }

    /// Whether ServiceNow answered 403 Forbidden: authenticated, but the user may not read
    /// this unit's table (e.g. `sys_audit_delete` without the admin role).
    pub fn is_forbidden(&self) -> bool {
        matches!(
            self,
            UnitFailure::Denied {
                denial: Denial::Forbidden,
                ..
            }
        )
    }

    /// Whether ServiceNow refused the credentials (401, or a refused OAuth grant).
    pub fn is_unauthorized(&self) -> bool {
        matches!(
            self,
            UnitFailure::Denied {
                denial: Denial::Unauthorized,
                ..
            }
        )
    }
}

/// Which refusal a denied unit met.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Denial {
    /// 401, or the OAuth token endpoint refused the grant: the credentials were not accepted.
    Unauthorized,
    /// 403: the user is known but may not read the table.
    Forbidden,
}

impl Denial {
    /// The metric label and log word for this refusal.
    pub fn label(self) -> &'static str {
        match self {
            Denial::Unauthorized => "unauthorized",
            Denial::Forbidden => "forbidden",
        }
    }

    /// A short, secret-free explanation an operator can act on (served by `/readyz`).
    pub fn explanation(self) -> &'static str {
        match self {
            Denial::Unauthorized => {
                "authentication failed (HTTP 401): check the integration's credentials; a \
                 refusal during an instance upgrade passes by itself"
            }
            Denial::Forbidden => {
                "access denied (HTTP 403): the integration user lacks a role or an ACL for \
                 this table"
            }
        }
    }
}

impl fmt::Display for Denial {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.label())
    }
}

/// Sorts an error into what the unit does about it: refusals (401, 403, a refused OAuth
/// grant) are [`UnitFailure::Denied`], everything else is [`UnitFailure::Retry`].
pub fn classify(error: FetchError) -> UnitFailure {
    let denial = match &error {
        FetchError::ServiceNow { source, .. } if source.is_auth() => match **source {
            ClientError::Forbidden { .. } => Denial::Forbidden,
            _ => Denial::Unauthorized,
        },
        _ => return UnitFailure::Retry(error),
    };
    UnitFailure::Denied { denial, error }
}
