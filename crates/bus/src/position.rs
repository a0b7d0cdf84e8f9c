//! Where a message sits in Kafka, written the one way logs, errors and DLQ details use.

use std::fmt;

/// `topic/partition@offset`: a message's place in Kafka, for logs and error details. One
/// spelling across the stages, so an operator can grep every stage's output for one message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Position<'a> {
    pub topic: &'a str,
    pub partition: i32,
    pub offset: i64,
}

impl<'a> Position<'a> {
    pub fn new(topic: &'a str, partition: i32, offset: i64) -> Self {
        Self {
            topic,
            partition,
            offset,
        }
    }
}

impl fmt::Display for Position<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}@{}", self.topic, self.partition, self.offset)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_position_reads_topic_slash_partition_at_offset() {
        assert_eq!(
            Position::new("servicenow.raw.incident", 3, 1207).to_string(),
            "servicenow.raw.incident/3@1207"
        );
    }
}
