//! The rules of a stage's consumer-group membership, shared by every stage section (each
//! joins a group of its own: `fetcher.group_id`, `normalizer.group_id`, `sink.group_id`).

use super::error::Problem;

/// The problems with a section's `group_id` and `group_instance_id`, named under `section`
/// (e.g. `sink.group_instance_id`). A blank `group_instance_id` is refused rather than taken
/// as "absent": librdkafka would join as a static member whose id every replica shares.
pub(crate) fn membership_problems(
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
    fn blank_ids_are_named_under_their_section() {
        let paths: Vec<String> = membership_problems("fetcher", " ", Some(""))
            .into_iter()
            .map(|problem| problem.path)
            .collect();
        assert_eq!(paths, vec!["fetcher.group_id", "fetcher.group_instance_id"]);
    }
}
