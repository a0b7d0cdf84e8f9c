//! Deterministic fault injection for the test servers.
//!
//! A rule says *what* goes wrong (a fault type of the server's own: the simulator fails
//! like ServiceNow, sei-local like SEI), *when* ([`Trigger`]: always, the next N
//! applicable requests, or every Nth one) and optionally *where* (a path prefix). Each
//! rule counts only the requests it applies to, so a test that sends a known sequence of
//! requests gets the same faults on every run: no randomness, no clock.
//!
//! This crate holds the scheduling both servers share; what a fault does to a response
//! stays with each server.

use serde::{Deserialize, Serialize};

/// When a rule fires, counted over the requests it applies to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(tag = "mode", rename_all = "snake_case", deny_unknown_fields)]
pub enum Trigger {
    /// Every applicable request.
    #[default]
    Always,
    /// The next `count` applicable requests, then never again.
    Next {
        /// How many requests.
        count: u64,
    },
    /// The `n`th, `2n`th, … applicable request: a failure *rate* of 1/n.
    EveryNth {
        /// Period (1 = every request).
        n: u64,
    },
}

impl Trigger {
    /// Whether the `seen`th applicable request (1-based) is hit.
    pub fn fires_on(self, seen: u64) -> bool {
        match self {
            Self::Always => true,
            Self::Next { count } => seen <= count,
            Self::EveryNth { n } => n > 0 && seen % n == 0,
        }
    }

    /// Why the trigger can never work as meant, if it cannot.
    pub fn problem(self) -> Option<String> {
        matches!(self, Self::EveryNth { n: 0 }).then(|| "every_nth needs n of at least 1".into())
    }
}

/// One configured fault of type `F`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FaultRule<F> {
    /// What goes wrong.
    pub fault: F,
    /// When it goes wrong.
    #[serde(default)]
    pub when: Trigger,
    /// Only requests whose path starts with this, so a test can fail one endpoint while
    /// still reading results back from another.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path_prefix: Option<String>,
}

impl<F> FaultRule<F> {
    /// A rule firing on every applicable request.
    pub fn always(fault: F) -> Self {
        Self::with_trigger(Trigger::Always, fault)
    }

    /// A rule firing on the next `count` applicable requests.
    pub fn next(count: u64, fault: F) -> Self {
        Self::with_trigger(Trigger::Next { count }, fault)
    }

    /// A rule firing on every `n`th applicable request.
    pub fn every_nth(n: u64, fault: F) -> Self {
        Self::with_trigger(Trigger::EveryNth { n }, fault)
    }

    fn with_trigger(when: Trigger, fault: F) -> Self {
        Self {
            fault,
            when,
            path_prefix: None,
        }
    }

    /// Restricts the rule to paths starting with `prefix`.
    pub fn on_path(mut self, prefix: &str) -> Self {
        self.path_prefix = Some(prefix.to_owned());
        self
    }

    fn matches(&self, path: &str) -> bool {
        self.path_prefix
            .as_deref()
            .is_none_or(|prefix| path.starts_with(prefix))
    }
}

/// A rule with how many requests it applied to and how many it fired on (what the
/// servers' `GET …/faults` admin endpoints return).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RuleReport<F> {
    /// The rule.
    #[serde(flatten)]
    pub rule: FaultRule<F>,
    /// Applicable requests seen.
    pub seen: u64,
    /// Requests it fired on.
    pub fired: u64,
}

/// The active rules and their counters.
#[derive(Debug)]
pub struct FaultEngine<F> {
    rules: Vec<RuleReport<F>>,
}

impl<F> Default for FaultEngine<F> {
    fn default() -> Self {
        Self { rules: Vec::new() }
    }
}

impl<F: Clone> FaultEngine<F> {
    /// An engine running `rules` with fresh counters.
    pub fn new(rules: Vec<FaultRule<F>>) -> Self {
        let mut engine = Self::default();
        engine.replace(rules);
        engine
    }

    /// Replaces the rules; counters start again from zero.
    pub fn replace(&mut self, rules: Vec<FaultRule<F>>) {
        self.rules.clear();
        rules.into_iter().for_each(|rule| self.add(rule));
    }

    /// Adds one rule with fresh counters.
    pub fn add(&mut self, rule: FaultRule<F>) {
        self.rules.push(RuleReport {
            rule,
            seen: 0,
            fired: 0,
        });
    }

    /// The rules with their counters.
    pub fn report(&self) -> Vec<RuleReport<F>> {
        self.rules.clone()
    }

    /// Counts one request to `path` against every rule on that path whose fault `applies`
    /// to the request, and returns the faults that fire, in rule order. Every applicable
    /// rule counts the request whether or not an earlier one fired, so each rule's
    /// schedule is independent of the others.
    pub fn decide(&mut self, path: &str, applies: impl Fn(&F) -> bool) -> Vec<F> {
        let mut fired = Vec::new();
        for report in &mut self.rules {
            if !report.rule.matches(path) || !applies(&report.rule.fault) {
                continue;
            }
            report.seen += 1;
            if report.rule.when.fires_on(report.seen) {
                report.fired += 1;
                fired.push(report.rule.fault.clone());
            }
        }
        fired
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
    #[serde(tag = "kind", rename_all = "snake_case")]
    enum Oops {
        Broken,
        Slow { millis: u64 },
    }

    fn fired_pattern(engine: &mut FaultEngine<Oops>, requests: usize) -> Vec<usize> {
        (0..requests)
            .map(|_| engine.decide("/x", |_| true).len())
            .collect()
    }

    #[test]
    fn every_nth_fires_on_multiples_of_n_only() {
        let mut engine = FaultEngine::new(vec![FaultRule::every_nth(3, Oops::Broken)]);
        assert_eq!(fired_pattern(&mut engine, 7), [0, 0, 1, 0, 0, 1, 0]);
    }

    #[test]
    fn next_fires_on_the_first_requests_only_and_reports_its_counts() {
        let mut engine = FaultEngine::new(vec![FaultRule::next(2, Oops::Broken)]);
        assert_eq!(fired_pattern(&mut engine, 5), [1, 1, 0, 0, 0]);
        let report = &engine.report()[0];
        assert_eq!((report.seen, report.fired), (5, 2));
    }

    #[test]
    fn rules_count_only_requests_on_their_path_that_they_apply_to() {
        let mut engine = FaultEngine::new(vec![
            FaultRule::always(Oops::Broken).on_path("/ingest/"),
            FaultRule::next(1, Oops::Slow { millis: 5 }),
        ]);
        let only_slow = |fault: &Oops| matches!(fault, Oops::Slow { .. });
        assert!(engine.decide("/read", |_| true).len() == 1);
        assert!(engine.decide("/ingest/a", only_slow).is_empty());
        assert_eq!(engine.decide("/ingest/a", |_| true), [Oops::Broken]);
        let seen: Vec<u64> = engine.report().iter().map(|r| r.seen).collect();
        assert_eq!(seen, [1, 3]);
    }

    #[test]
    fn replacing_rules_starts_their_counters_again() {
        let mut engine = FaultEngine::new(vec![FaultRule::next(1, Oops::Broken)]);
        assert_eq!(fired_pattern(&mut engine, 2), [1, 0]);
        engine.replace(vec![FaultRule::next(1, Oops::Broken)]);
        assert_eq!(fired_pattern(&mut engine, 2), [1, 0]);
    }

    #[test]
    fn rules_parse_from_the_admin_json_shape_and_refuse_unknown_keys() {
        let rules: Vec<FaultRule<Oops>> = serde_json::from_str(
            r#"[{"fault": {"kind": "broken"}, "when": {"mode": "every_nth", "n": 2}},
                {"fault": {"kind": "slow", "millis": 3}, "path_prefix": "/v1/"}]"#,
        )
        .unwrap();
        assert_eq!(rules[0], FaultRule::every_nth(2, Oops::Broken));
        assert_eq!(
            rules[1],
            FaultRule::always(Oops::Slow { millis: 3 }).on_path("/v1/")
        );
        let typo = r#"{"fault": {"kind": "broken"}, "wen": {"mode": "always"}}"#;
        assert!(serde_json::from_str::<FaultRule<Oops>>(typo).is_err());
    }

    #[test]
    fn a_zero_period_is_named_as_a_problem() {
        assert!(
            Trigger::EveryNth { n: 0 }
                .problem()
                .unwrap()
                .contains("every_nth")
        );
        assert_eq!(Trigger::EveryNth { n: 1 }.problem(), None);
    }
}
