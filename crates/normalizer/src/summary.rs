//! What one run (or replay) did, for logs, the replay command's report, and tests.

/// Counts of one run of the stage or of a replay.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Summary {
    /// Raw records read and handled (published, dead-lettered or skipped).
    pub records_in: u64,
    /// Entity records published (Kafka acknowledged them), tombstones included.
    pub records_out: u64,
    /// Of `records_out`, tombstones.
    pub tombstones: u64,
    /// Records parked in the DLQ.
    pub dead_lettered: u64,
    /// Records a replay read but did not need: before `--since`, or after the end offsets it
    /// captured at its start.
    pub skipped: u64,
    /// Transactions committed (`exactly_once`).
    pub transactions_committed: u64,
    /// Transactions aborted and retried (`exactly_once`).
    pub transactions_aborted: u64,
    /// Times the stage dropped its Kafka clients and resumed from the committed offsets.
    pub restarts: u64,
}

impl Summary {
    /// Adds another session's counts.
    pub(crate) fn add(&mut self, other: &Summary) {
        self.records_in += other.records_in;
        self.records_out += other.records_out;
        self.tombstones += other.tombstones;
        self.dead_lettered += other.dead_lettered;
        self.skipped += other.skipped;
        self.transactions_committed += other.transactions_committed;
        self.transactions_aborted += other.transactions_aborted;
        self.restarts += other.restarts;
    }
}

impl std::fmt::Display for Summary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} records read, {} published ({} tombstones), {} dead-lettered, {} skipped",
            self.records_in, self.records_out, self.tombstones, self.dead_lettered, self.skipped
        )?;
        if self.transactions_committed + self.transactions_aborted > 0 {
            write!(
                f,
                ", {} transactions committed, {} aborted",
                self.transactions_committed, self.transactions_aborted
            )?;
        }
        if self.restarts > 0 {
            write!(f, ", {} restarts", self.restarts)?;
        }
        Ok(())
    }
}
