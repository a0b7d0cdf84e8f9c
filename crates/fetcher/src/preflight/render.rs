//! The checklist as text for a terminal, as `nowstream-fetcher validate` prints it.

use std::fmt::Write as _;

use super::report::{IntegrationReport, Outcome, Report};

impl Outcome {
    fn label(self) -> &'static str {
        match self {
            Outcome::Pass => "PASS",
            Outcome::Warn => "WARN",
            Outcome::Fail => "FAIL",
            Outcome::Skipped => "SKIP",
        }
    }
}

impl IntegrationReport {
    fn count(&self, outcome: Outcome) -> usize {
        self.checks.iter().filter(|c| c.outcome == outcome).count()
    }
}

impl Report {
    /// The checklist as text for a terminal.
    pub fn render(&self) -> String {
        let mut out = String::new();
        if self.integrations.is_empty() {
            out.push_str("No integrations are configured: nothing to validate.\n");
            return out;
        }
        for report in &self.integrations {
            let _ = writeln!(
                out,
                "Integration {} ({})",
                report.integration_id, report.url
            );
            for check in &report.checks {
                let _ = writeln!(
                    out,
                    "  [{}] {:<22} {}",
                    check.outcome.label(),
                    check.kind.title(),
                    check.message
                );
                if let Some(hint) = &check.hint {
                    let _ = writeln!(out, "         {:<22} fix: {hint}", "");
                }
            }
            out.push('\n');
        }
        let count = |outcome| {
            self.integrations
                .iter()
                .map(|r| r.count(outcome))
                .sum::<usize>()
        };
        let (failed, warned) = (count(Outcome::Fail), count(Outcome::Warn));
        let _ = if self.passed() && warned == 0 {
            writeln!(out, "Result: all checks passed.")
        } else if self.passed() {
            writeln!(out, "Result: passed with {warned} warning(s).")
        } else {
            writeln!(
                out,
                "Result: FAILED: {failed} check(s) failed, {warned} warning(s)."
            )
        };
        out
    }
}

#[cfg(test)]
mod tests {

    use super::*;

    #[test]
    fn an_empty_report_does_not_pass() {
        let report = Report::default();
        assert!(!report.passed());
        assert!(report.render().contains("No integrations"));
    }
}
