//! The `/dashboard` page, opened in headless Chromium (Debian's `chromium`; installed by
//! `scripts/install-test-deps`, or named by `NOWSTREAM_CHROMIUM`).
//!
//! The page's script writes every figure's exact value into a `data-value` attribute; the test
//! reads them from the DOM Chromium dumps after running the script and compares them with
//! `GET /v1/metrics/dora`. A screenshot is kept in `target/test-outputs/`.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use crate::common;
use crate::dora::load_fixture;

use common::{Client, TENANT, start};
use reqwest::StatusCode;
use serde_json::Value;

const QUERY: &str = "integration_id=sn1&from=2024-02-26T00:00:00Z&to=2024-03-18T00:00:00Z";

fn chromium() -> String {
    std::env::var("NOWSTREAM_CHROMIUM").unwrap_or_else(|_| "chromium".to_owned())
}

/// Runs headless Chromium with a profile of its own (parallel runs must not share one).
async fn run_chromium(args: Vec<String>) -> Output {
    let profile = tempfile::tempdir().expect("temporary profile directory");
    let mut command = Command::new(chromium());
    command
        .args([
            "--headless",
            "--disable-gpu",
            "--no-sandbox",
            "--no-first-run",
            "--disable-dev-shm-usage",
            "--hide-scrollbars",
        ])
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .args(args);
    let output = tokio::task::spawn_blocking(move || command.output())
        .await
        .expect("the Chromium task ends");
    drop(profile);
    output.unwrap_or_else(|error| {
        panic!(
            "cannot run `{}` ({error}); install Debian's chromium (scripts/install-test-deps) \
             or set NOWSTREAM_CHROMIUM",
            chromium()
        )
    })
}

/// The value of `attribute` on the element with `id` in serialized HTML.
fn attribute_of(dom: &str, id: &str, attribute: &str) -> Option<String> {
    let at = dom.find(&format!("id=\"{id}\""))?;
    let tag_start = dom[..at].rfind('<')?;
    let tag_end = at + dom[at..].find('>')?;
    let tag = &dom[tag_start..tag_end];
    let marker = format!("{attribute}=\"");
    let value_start = tag.find(&marker)? + marker.len();
    let value_end = value_start + tag[value_start..].find('"')?;
    Some(tag[value_start..value_end].to_owned())
}

#[track_caller]
fn shown_number(dom: &str, id: &str) -> f64 {
    let text = attribute_of(dom, id, "data-value")
        .unwrap_or_else(|| panic!("no data-value on #{id} in the rendered page:\n{dom}"));
    text.parse()
        .unwrap_or_else(|_| panic!("#{id} shows `{text}`, not a number"))
}

#[track_caller]
fn assert_same(shown: f64, api: &Value, what: &str) {
    let api = api
        .as_f64()
        .unwrap_or_else(|| panic!("{what}: the API has no number ({api})"));
    assert!(
        (shown - api).abs() < 1e-9,
        "{what}: the page shows {shown}, the API says {api}"
    );
}

fn test_outputs() -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target"));
    target.join("test-outputs")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dashboard_shows_the_figures_of_the_api_in_headless_chromium() {
    let sei = start().await;
    let client = Client::new(&sei);
    load_fixture(&client).await;
    let (status, api) = client
        .get_json(&format!("/v1/metrics/dora?{QUERY}&group_by=week"))
        .await;
    assert_eq!(status, StatusCode::OK, "{api}");
    let url = format!("{}/dashboard?tenant={TENANT}&{QUERY}", sei.base_url());

    let output = run_chromium(vec![
        "--virtual-time-budget=10000".to_owned(),
        "--dump-dom".to_owned(),
        url.clone(),
    ])
    .await;
    let dom = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(
        output.status.success() && dom.contains("data-rendered=\"true\""),
        "the page's script did not finish; Chromium said:\n{}\n{dom}",
        String::from_utf8_lossy(&output.stderr)
    );

    let overall = &api["overall"];
    let mttr = &overall["mttr"];
    let df = &overall["deployment_frequency"];
    let cfr = &overall["change_failure_rate"];
    assert_same(
        shown_number(&dom, "mttr-median"),
        &mttr["median_hours"],
        "MTTR median",
    );
    assert_same(
        shown_number(&dom, "mttr-mean"),
        &mttr["mean_hours"],
        "MTTR mean",
    );
    assert_same(
        shown_number(&dom, "mttr-count"),
        &mttr["count"],
        "MTTR count",
    );
    assert_same(
        shown_number(&dom, "df-per-week"),
        &df["per_week"],
        "deployments per week",
    );
    assert_same(shown_number(&dom, "df-count"), &df["count"], "deployments");
    assert_same(
        shown_number(&dom, "cfr-rate") / 100.0,
        &cfr["rate"],
        "change failure rate",
    );
    assert_same(
        shown_number(&dom, "cfr-attributed-rate") / 100.0,
        &cfr["attributed"]["rate"],
        "attributed change failure rate",
    );
    for (id, grade) in [
        ("mttr-grade", &mttr["grade"]),
        ("df-grade", &df["grade"]),
        ("cfr-grade", &cfr["grade"]),
        ("cfr-attributed-grade", &cfr["attributed"]["grade"]),
    ] {
        assert_eq!(
            attribute_of(&dom, id, "data-value").as_deref(),
            grade.as_str(),
            "#{id}"
        );
    }
    // One point per week of the window in each chart: 02-26, 03-04, 03-11.
    let weeks = api["groups"].as_array().map(Vec::len);
    assert_eq!(weeks, Some(3));
    for chart in ["mttr-chart", "df-chart", "cfr-chart"] {
        assert_eq!(
            attribute_of(&dom, chart, "data-points"),
            weeks.map(|n| n.to_string()),
            "#{chart}"
        );
    }

    let outputs = test_outputs();
    std::fs::create_dir_all(&outputs).expect("test output directory");
    let screenshot = outputs.join("sei-local-dashboard.png");
    let _ = std::fs::remove_file(&screenshot);
    let output = run_chromium(vec![
        "--virtual-time-budget=10000".to_owned(),
        "--window-size=1100,1500".to_owned(),
        format!("--screenshot={}", screenshot.display()),
        url,
    ])
    .await;
    let png = std::fs::read(&screenshot).unwrap_or_else(|error| {
        panic!(
            "no screenshot at {} ({error}); Chromium said:\n{}",
            screenshot.display(),
            String::from_utf8_lossy(&output.stderr)
        )
    });
    assert!(png.starts_with(b"\x89PNG"), "the screenshot is a PNG");
    println!("dashboard screenshot: {}", screenshot.display());
}

#[tokio::test]
async fn the_dashboard_serves_its_own_scripts_and_the_charting_librarys_licence() {
    let sei = start().await;
    for (asset, content_type, needle) in [
        ("uPlot.iife.min.js", "text/javascript", "uPlot"),
        ("dashboard.js", "text/javascript", "dora-report"),
        ("uPlot.min.css", "text/css", ".uplot"),
        ("uPlot.LICENSE", "text/plain", "MIT"),
    ] {
        let response = reqwest::get(format!("{}/dashboard/assets/{asset}", sei.base_url()))
            .await
            .expect("request sent");
        assert_eq!(response.status(), StatusCode::OK, "{asset}");
        let header = response.headers()["content-type"]
            .to_str()
            .unwrap_or_default()
            .to_owned();
        assert!(header.starts_with(content_type), "{asset}: {header}");
        let body = response.text().await.expect("body");
        assert!(body.contains(needle), "{asset}");
    }
    let missing = reqwest::get(format!("{}/dashboard/assets/nope.js", sei.base_url()))
        .await
        .expect("request sent");
    assert_eq!(missing.status(), StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn the_dashboard_names_a_bad_parameter_and_an_unknown_tenant() {
    let sei = start().await;
    let form = reqwest::get(format!("{}/dashboard", sei.base_url()))
        .await
        .expect("request sent");
    assert_eq!(form.status(), StatusCode::OK);
    let page = form.text().await.expect("body");
    assert!(page.contains("<form id=\"range\""), "{page}");
    assert!(
        !page.contains("id=\"dora-report\""),
        "no report without an integration"
    );

    let bad = reqwest::get(format!(
        "{}/dashboard?tenant={TENANT}&integration_id=sn1&from=2024-03-04T00:00:00Z&to=soon",
        sei.base_url()
    ))
    .await
    .expect("request sent");
    assert_eq!(bad.status(), StatusCode::BAD_REQUEST);
    let page = bad.text().await.expect("body");
    assert!(page.contains("to is not an RFC 3339 time"), "{page}");

    let stranger = reqwest::get(format!(
        "{}/dashboard?tenant=initech&{QUERY}",
        sei.base_url()
    ))
    .await
    .expect("request sent");
    assert_eq!(stranger.status(), StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn the_dashboard_passes_its_filters_on_to_the_report_it_embeds() {
    let sei = start().await;
    let client = Client::new(&sei);
    load_fixture(&client).await;
    let filters = "failure_priority=1&failure_category=software&change_state=3";
    let (_, api) = client
        .get_json(&format!("/v1/metrics/dora?{QUERY}&{filters}&group_by=week"))
        .await;
    let page = reqwest::get(format!(
        "{}/dashboard?tenant={TENANT}&{QUERY}&{filters}",
        sei.base_url()
    ))
    .await
    .expect("request sent")
    .text()
    .await
    .expect("body");
    let start = page
        .find(r#"<script type="application/json" id="dora-report">"#)
        .map(|at| at + r#"<script type="application/json" id="dora-report">"#.len())
        .expect("the report is embedded");
    let end = start + page[start..].find("</script>").expect("script end");
    let embedded: Value = serde_json::from_str(&page[start..end]).expect("embedded JSON");
    assert_eq!(embedded["overall"], api["overall"]);
    assert_eq!(
        embedded["definitions"]["failure_categories"],
        "[\"software\"]".parse::<Value>().expect("JSON")
    );
    assert!(
        page.contains(r#"name="change_state" value="3""#),
        "the form keeps its values"
    );
}
