//! What every stage section (`[fetcher]`, `[normalizer]`, `[sink]`) checks alike: its problems
//! are named by their key path under the section, and each joins a consumer group of its own
//! (`fetcher.group_id`, `normalizer.group_id`, `sink.group_id`) under the same membership rules.

use super::error::Problem;

/// The problems of one stage section, collected rule by rule and named `<section>.<key>`.
/// It starts with the membership rules, which no stage may skip.
#[derive(Debug)]
pub(crate) struct SectionRules {
    section: &'static str,
    problems: Vec<Problem>,
}

impl SectionRules {
    pub(crate) fn new(
        section: &'static str,
        group_id: &str,
        group_instance_id: Option<&str>,
    ) -> Self {
        Self {
            section,
            problems: membership_problems(section, group_id, group_instance_id),
        }
    }

    /// Records `message` against `<section>.<key>` unless `ok`.
    pub(crate) fn require(&mut self, ok: bool, key: &str, message: &str) {
        if !ok {
            self.problems
                .push(Problem::new(format!("{}.{key}", self.section), message));
        }
    }

    pub(crate) fn into_problems(self) -> Vec<Problem> {
        self.problems
    }
}

/// The key paths of `problems`, in order: what the sections' tests compare.
#[cfg(test)]
pub(crate) fn paths(problems: Vec<Problem>) -> Vec<String> {
    problems.into_iter().map(|problem| problem.path).collect()
}

/// The problems with a section's `group_id` and `group_instance_id`, named under `section`
/// (e.g. `sink.group_instance_id`). A blank `group_instance_id` is refused rather than taken
/// as "absent": librdkafka would join as a static member whose id every replica shares.
fn membership_problems(
    section: &str,
    group_id: &str,
    group_instance_id: Option<&str>,
) -> Vec<Problem> {
    let mut problems = Vec::new();
    if group_id.trim().is_empty() {
        problems.push(Problem::new(
            format!("{section}.group_id"),
            "must not be empty",
        ));
    }
    if group_instance_id.is_some_and(|id| id.trim().is_empty()) {
        problems.push(Problem::new(
            format!("{section}.group_instance_id"),
            "must not be empty when set; leave it out for dynamic membership",
        ));
    }
    problems
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_absent_group_instance_id_means_dynamic_membership() {
        assert_eq!(
            membership_problems("sink", "nowstream-sink", None),
            Vec::new()
        );
    }

    #[test]
    fn a_broken_rule_is_named_under_the_section_after_the_membership_rules() {
        let mut rules = SectionRules::new("sink", "", None);
        rules.require(true, "linger", "must be longer than zero");
        rules.require(false, "batch_max_records", "must be at least 1");
        assert_eq!(
            paths(rules.into_problems()),
            vec!["sink.group_id", "sink.batch_max_records"]
        );
    }

    #[test]
    fn blank_ids_are_named_under_their_section() {
        assert_eq!(
            paths(membership_problems("fetcher", " ", Some(""))),
            vec!["fetcher.group_id", "fetcher.group_instance_id"]
        );
    }
}
