//! `GET /dashboard`: the DORA report as a page with charts, for a person at a browser.
//!
//! Like `/admin/`, the page has no API key: sei-local is a development server, never exposed,
//! and a browser cannot send the `Authorization: Apikey` header from an address bar. The tenant
//! is a query parameter instead (optional when only one tenant is configured). The report is
//! computed on the server with the same code as `GET /v1/metrics/dora` (grouped by week) and
//! embedded in the page as JSON; the page's own script fills in the figures and draws the
//! charts with uPlot, which sei-local serves itself under `/dashboard/assets/` (no CDN: the
//! page works offline and the test's headless browser needs no network).

use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::http::header::{CACHE_CONTROL, CONTENT_TYPE};
use axum::response::{Html, IntoResponse, Response};
use chrono::{SecondsFormat, TimeDelta, Utc};

use super::SharedState;
use super::dora::{parse_params, report};
use crate::auth::Tenant;

const UPLOT_JS: &str = include_str!("../../assets/uplot/uPlot.iife.min.js");
const UPLOT_CSS: &str = include_str!("../../assets/uplot/uPlot.min.css");
const UPLOT_LICENSE: &str = include_str!("../../assets/uplot/LICENSE");
const DASHBOARD_JS: &str = include_str!("../../assets/dashboard.js");
const DASHBOARD_CSS: &str = include_str!("../../assets/dashboard.css");

/// The page: a form, and the report when the form is filled in.
pub(super) async fn page(
    State(state): State<SharedState>,
    Query(pairs): Query<Vec<(String, String)>>,
) -> Response {
    let value = |name: &str| {
        pairs
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.clone())
    };
    let tenants: Vec<String> = state.keys.tenants().map(str::to_owned).collect();
    let tenant = value("tenant")
        .filter(|tenant| !tenant.is_empty())
        .or_else(|| (tenants.len() == 1).then(|| tenants[0].clone()));
    let now = Utc::now();
    let form = FormValues {
        tenant: tenant.clone().unwrap_or_default(),
        integration_id: value("integration_id").unwrap_or_default(),
        from: value("from").unwrap_or_else(|| iso(now - TimeDelta::weeks(12))),
        to: value("to").unwrap_or_else(|| iso(now)),
        mttr_start: value("mttr_start").unwrap_or_default(),
        lists: LIST_PARAMETERS.map(|name| {
            let values: Vec<String> = pairs
                .iter()
                .filter(|(n, _)| n == name)
                .map(|(_, v)| v.clone())
                .collect();
            values.join(",")
        }),
    };
    if form.integration_id.is_empty() {
        return page_html(StatusCode::OK, &form, None, None);
    }
    let Some(tenant) = tenant.filter(|tenant| tenants.contains(tenant)) else {
        return page_html(
            StatusCode::BAD_REQUEST,
            &form,
            None,
            Some(format!("tenant: name one of {}", tenants.join(", "))),
        );
    };
    // The dashboard always charts by week; the API's other parameters pass through.
    let mut api_pairs: Vec<(String, String)> = pairs
        .into_iter()
        .filter(|(name, _)| name != "tenant" && name != "group_by")
        .filter(|(name, value)| !(name == "mttr_start" && value.is_empty()))
        .collect();
    api_pairs.push(("group_by".to_owned(), "week".to_owned()));
    let params = match parse_params(&api_pairs) {
        Ok(params) => params,
        Err(error) => {
            return page_html(
                StatusCode::BAD_REQUEST,
                &form,
                None,
                Some(error.to_string()),
            );
        }
    };
    match report(&state, &Tenant(tenant), &params).await {
        Ok(report) => match serde_json::to_string(&report) {
            Ok(json) => page_html(StatusCode::OK, &form, Some(json), None),
            Err(error) => page_html(
                StatusCode::INTERNAL_SERVER_ERROR,
                &form,
                None,
                Some(error.to_string()),
            ),
        },
        Err(error) => {
            let status = error.into_response().status();
            page_html(
                status,
                &form,
                None,
                Some("the report failed; see sei-local's log".to_owned()),
            )
        }
    }
}

/// A vendored or own asset.
pub(super) async fn asset(axum::extract::Path(name): axum::extract::Path<String>) -> Response {
    let (body, content_type) = match name.as_str() {
        "uPlot.iife.min.js" => (UPLOT_JS, "text/javascript; charset=utf-8"),
        "uPlot.min.css" => (UPLOT_CSS, "text/css; charset=utf-8"),
        "uPlot.LICENSE" => (UPLOT_LICENSE, "text/plain; charset=utf-8"),
        "dashboard.js" => (DASHBOARD_JS, "text/javascript; charset=utf-8"),
        "dashboard.css" => (DASHBOARD_CSS, "text/css; charset=utf-8"),
        _ => return (StatusCode::NOT_FOUND, "no such asset").into_response(),
    };
    (
        [(CONTENT_TYPE, content_type), (CACHE_CONTROL, "no-cache")],
        body,
    )
        .into_response()
}

/// The API's list parameters, offered as comma-separated text fields.
const LIST_PARAMETERS: [&str; 4] = [
    "change_state",
    "change_type",
    "failure_priority",
    "failure_category",
];

struct FormValues {
    tenant: String,
    integration_id: String,
    from: String,
    to: String,
    mttr_start: String,
    /// Values of [`LIST_PARAMETERS`], in that order.
    lists: [String; 4],
}

fn iso(time: chrono::DateTime<Utc>) -> String {
    time.to_rfc3339_opts(SecondsFormat::Secs, true)
}

/// Text for HTML content and attribute values.
fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

fn page_html(
    status: StatusCode,
    form: &FormValues,
    report_json: Option<String>,
    error: Option<String>,
) -> Response {
    let selected = |value: &str| {
        if form.mttr_start == value {
            " selected"
        } else {
            ""
        }
    };
    let error = error
        .map(|error| format!(r#"<p id="error" class="error">{}</p>"#, escape(&error)))
        .unwrap_or_default();
    // JSON in a <script> element: `<` only occurs inside strings, where \u003c means the same.
    let report = report_json
        .map(|json| {
            format!(
                r#"<script type="application/json" id="dora-report">{}</script>"#,
                json.replace('<', "\\u003c")
            )
        })
        .unwrap_or_default();
    let hints = [
        "closed changes in these states (any)",
        "of these types (any)",
        "failure incidents' priorities (1,2)",
        "failure incidents' categories (any)",
    ];
    let lists: String = LIST_PARAMETERS
        .iter()
        .zip(&form.lists)
        .zip(hints)
        .map(|((name, value), hint)| {
            format!(
                r#"<label>{name} <input name="{name}" value="{}" placeholder="{hint}" size="14"></label>"#,
                escape(value)
            )
        })
        .collect::<Vec<_>>()
        .join("\n");
    let body = format!(
        r#"<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>DORA — sei-local</title>
<link rel="stylesheet" href="/dashboard/assets/uPlot.min.css">
<link rel="stylesheet" href="/dashboard/assets/dashboard.css">
</head>
<body>
<header>
<h1>DORA metrics <small>sei-local (nowstream's reference receiver, not SEI itself)</small></h1>
<form id="range" method="get" action="/dashboard">
<label>tenant <input name="tenant" value="{tenant}"></label>
<label>integration <input name="integration_id" value="{integration_id}" required></label>
<label>from <input name="from" value="{from}" size="22"></label>
<label>to <input name="to" value="{to}" size="22"></label>
<label>MTTR from <select name="mttr_start">
<option value="sys_created_on"{created}>creation (SEI)</option>
<option value="opened_at"{opened}>opened_at</option>
</select></label>
{lists}
<button type="submit">Show</button>
</form>
</header>
{error}
<main id="figures" hidden>
<section class="metric" id="mttr">
<h2>Mean time to restore</h2>
<p class="headline"><span class="value" id="mttr-median">–</span> h median,
<span id="mttr-mean">–</span> h mean over <span id="mttr-count">–</span> incidents
<span class="grade" id="mttr-grade">–</span></p>
<div class="chart" id="mttr-chart"></div>
<p class="bands">Elite &lt; 1 h · High &lt; 1 day · Medium &lt; 1 week · Low beyond (median)</p>
</section>
<section class="metric" id="df">
<h2>Deployment frequency</h2>
<p class="headline"><span class="value" id="df-per-week">–</span> per week
(<span id="df-per-day">–</span> per day, <span id="df-count">–</span> change requests closed)
<span class="grade" id="df-grade">–</span></p>
<div class="chart" id="df-chart"></div>
<p class="bands">Elite &gt; 1 per day · High ≥ 1 per week · Medium ≥ 1 per month · Low less</p>
</section>
<section class="metric" id="cfr">
<h2>Change failure rate</h2>
<p class="headline"><span class="value" id="cfr-rate">–</span> %
(<span id="cfr-failures">–</span> failure incidents / <span id="cfr-deployments">–</span> deployments)
<span class="grade" id="cfr-grade">–</span></p>
<p class="headline">attributed through caused_by: <span class="value" id="cfr-attributed-rate">–</span> %
(<span id="cfr-attributed-failed">–</span> changes) <span class="grade" id="cfr-attributed-grade">–</span></p>
<div class="chart" id="cfr-chart"></div>
<p class="bands">Elite ≤ 15 % · High ≤ 30 % · Medium ≤ 45 % · Low above</p>
</section>
</main>
<footer>Charts by <a href="/dashboard/assets/uPlot.LICENSE">uPlot</a> (MIT), served by sei-local.</footer>
{report}
<script src="/dashboard/assets/uPlot.iife.min.js"></script>
<script src="/dashboard/assets/dashboard.js"></script>
</body>
</html>
"#,
        tenant = escape(&form.tenant),
        integration_id = escape(&form.integration_id),
        from = escape(&form.from),
        to = escape(&form.to),
        created = selected("sys_created_on"),
        opened = selected("opened_at"),
        lists = lists,
    );
    (status, Html(body)).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn echoed_form_values_cannot_break_out_of_an_attribute() {
        assert_eq!(
            escape(r#""><script>x</script>"#),
            "&quot;&gt;&lt;script&gt;x&lt;/script&gt;"
        );
    }
}
