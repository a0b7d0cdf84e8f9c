//! The integration user's time zone: `sys_user.time_zone`, or, when that is empty, the
//! instance default `glide.sys.default.tz` from `sys_properties` (admin-only on a default
//! instance, so often unknown).
//!
//! nowstream itself is not affected by the zone: it reads only `value`s, which ServiceNow gives
//! in UTC whatever the zone, and its keyset queries use plain UTC literals, which ServiceNow
//! also takes as UTC. What the zone changes is everything else, which is why `validate` warns:
//! the `display_value`s kept in the raw payloads are local times, and date conditions that
//! ServiceNow evaluates for the user (`javascript:gs.dateGenerate(…)`, `gs.beginningOfToday()`,
//! relative "last N days" operators, `sysparm_input_display_value`) use the user's zone, as
//! does SEI's own pull with `metadata.timezone` in satellite.yml.

use nowstream_servicenow::client::{Client, ClientError, ListRequest};

use super::{Check, CheckKind, field_value};

/// The `sys_user` column holding the user's zone.
pub const USER_FIELD: &str = "time_zone";

/// The system property naming the instance's default zone.
const DEFAULT_ZONE_PROPERTY: &str = "glide.sys.default.tz";

/// Zone names that mean UTC.
const UTC_NAMES: [&str; 10] = [
    "UTC",
    "GMT",
    "Etc/UTC",
    "Etc/GMT",
    "Etc/Universal",
    "Etc/Zulu",
    "Universal",
    "Zulu",
    "Etc/GMT0",
    "GMT0",
];

/// Whether `zone` is UTC under one of its names.
pub fn is_utc(zone: &str) -> bool {
    UTC_NAMES
        .iter()
        .any(|name| name.eq_ignore_ascii_case(zone.trim()))
}

/// What a zone other than UTC changes, for the warning.
fn consequences(zone: &str) -> String {
    format!(
        "display values of date-times are rendered in {zone}: nowstream reads only the UTC \
         `value`s and is not affected, but the `display_value`s kept in the raw payloads are \
         {zone} times, date conditions ServiceNow evaluates for the user (gs.dateGenerate(), \
         gs.beginningOfToday(), relative \"last N days\" filters in incident_query / \
         change_request_query) use {zone}, and SEI's metadata.timezone must say {zone} for \
         SEI's own pull"
    )
}

const HINT: &str = "set the integration user's Time zone to UTC (User Administration > Users > \
                    the user > Time zone), or keep satellite.yml's metadata.timezone equal to it";

/// Whether two zone names mean the same zone (UTC under any of its names counts as one).
fn same_zone(a: &str, b: &str) -> bool {
    a.trim().eq_ignore_ascii_case(b.trim()) || (is_utc(a) && is_utc(b))
}

/// The check for a user whose `sys_user.time_zone` is `user_zone` (`None`: empty), with the
/// integration's `metadata.timezone` (`configured`): it must name the zone the user works in,
/// since that is the zone ServiceNow evaluates the filters' date conditions in.
pub async fn check(
    client: &Client,
    user_name: &str,
    user_zone: Option<&str>,
    configured: Option<&str>,
) -> Check {
    let zone_check = check_user_zone(client, user_name, user_zone).await;
    let Some(configured) = configured else {
        return zone_check;
    };
    let effective = match user_zone {
        Some(zone) => Some(zone.to_owned()),
        None => system_default(client).await.ok().flatten(),
    };
    match effective {
        Some(zone) if same_zone(&zone, configured) => Check {
            message: format!("{}; metadata.timezone agrees", zone_check.message),
            ..zone_check
        },
        Some(zone) => Check::warn(
            CheckKind::TimeZone,
            format!(
                "metadata.timezone says {configured}, but {user_name} works in {zone}: \
                 ServiceNow evaluates date conditions in incident_query / change_request_query \
                 in {zone}, not {configured}"
            ),
            format!(
                "set metadata.timezone to {zone}, or the integration user's Time zone to \
                 {configured}"
            ),
        ),
        None => Check {
            message: format!(
                "{}; metadata.timezone says {configured}, which cannot be compared",
                zone_check.message
            ),
            ..zone_check
        },
    }
}

/// The user's zone alone: UTC passes, anything else (or unknown) warns.
async fn check_user_zone(client: &Client, user_name: &str, user_zone: Option<&str>) -> Check {
    let kind = CheckKind::TimeZone;
    if let Some(zone) = user_zone {
        return if is_utc(zone) {
            Check::pass(kind, format!("{user_name} works in {zone}"))
        } else {
            Check::warn(
                kind,
                format!(
                    "{user_name}'s time zone is {zone}, not UTC: {}",
                    consequences(zone)
                ),
                HINT,
            )
        };
    }
    match system_default(client).await {
        Ok(Some(zone)) if is_utc(&zone) => Check::pass(
            kind,
            format!("{user_name} has no time zone of its own; the system default is {zone}"),
        ),
        Ok(Some(zone)) => Check::warn(
            kind,
            format!(
                "{user_name} has no time zone of its own, so the system default {zone} applies, \
                 not UTC: {}",
                consequences(&zone)
            ),
            HINT,
        ),
        Ok(None) | Err(_) => Check::warn(
            kind,
            format!(
                "{user_name} has no time zone of its own and the system default \
                 ({DEFAULT_ZONE_PROPERTY}) cannot be read, so the zone is unknown: if it is not \
                 UTC, {}",
                consequences("that zone")
            ),
            HINT,
        ),
    }
}

/// `glide.sys.default.tz`, when the user may read it.
async fn system_default(client: &Client) -> Result<Option<String>, ClientError> {
    let request = ListRequest {
        table: "sys_properties".to_owned(),
        query: format!("name={DEFAULT_ZONE_PROPERTY}"),
        limit: 1,
        offset: 0,
        fields: Some(vec!["name".to_owned(), "value".to_owned()]),
    };
    let page = client.list_page(&request).await?;
    Ok(page
        .records
        .first()
        .and_then(|record| field_value(record, "value")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn utc_has_several_names_and_local_zones_are_not_utc() {
        for zone in ["UTC", "GMT", "Etc/UTC", "etc/gmt", " Universal "] {
            assert!(is_utc(zone), "{zone}");
        }
        for zone in [
            "America/New_York",
            "Europe/London",
            "US/Pacific",
            "GMT+1",
            "",
        ] {
            assert!(!is_utc(zone), "{zone}");
        }
    }
}
