//! The body and idempotency key of one ingestion request.
//!
//! The body is `{"upserts": [entity JSON…], "deletes": ["<sys_id>"…]}`, built by joining the
//! entity JSON each record was turned into when it was read, so a batch is serialised once.
//! The key is a SHA-256 over the topic, partition and offset of every message the request
//! stands for: the same records always give the same key (a retry is recognisable as one),
//! and a split half gets a key of its own because its body differs.

use std::io::Write;

use flate2::Compression;
use flate2::write::GzEncoder;
use sha2::{Digest, Sha256};

use crate::batch::Op;
use crate::record::{Input, Operation};

/// A request ready to send (and to send again, unchanged, on retry).
#[derive(Debug, Clone)]
pub struct IngestRequest {
    /// The body as sent: gzip-compressed when `gzip` is set.
    pub body: Vec<u8>,
    /// Whether `body` is gzip.
    pub gzip: bool,
    /// Stable id of the request's records.
    pub idempotency_key: String,
    /// Upserts in the body.
    pub upserts: usize,
    /// Deletes in the body.
    pub deletes: usize,
}

impl IngestRequest {
    /// Builds the request for `ops`.
    pub fn build<M: Input>(ops: &[Op<M>], gzip: bool) -> Self {
        let json = json_body(ops);
        let body = if gzip { compress(&json) } else { json };
        let upserts = ops
            .iter()
            .filter(|op| matches!(op.operation, Operation::Upsert { .. }))
            .count();
        Self {
            body,
            gzip,
            idempotency_key: idempotency_key(ops),
            upserts,
            deletes: ops.len() - upserts,
        }
    }
}

/// Indexes into `ops` of the deletes, in body order: what a contract 400's `deletes[i]` counts.
pub fn delete_positions<M>(ops: &[Op<M>]) -> Vec<usize> {
    ops.iter()
        .enumerate()
        .filter(|(_, op)| matches!(op.operation, Operation::Delete))
        .map(|(index, _)| index)
        .collect()
}

/// Indexes into `ops` of the upserts, in body order: SEI's `record_index` counts upserts.
pub fn upsert_positions<M>(ops: &[Op<M>]) -> Vec<usize> {
    ops.iter()
        .enumerate()
        .filter(|(_, op)| matches!(op.operation, Operation::Upsert { .. }))
        .map(|(index, _)| index)
        .collect()
}

fn json_body<M>(ops: &[Op<M>]) -> Vec<u8> {
    let size: usize = ops
        .iter()
        .map(|op| match &op.operation {
            Operation::Upsert { json, .. } => json.len() + 1,
            Operation::Delete => op.sys_id.len() + 3,
        })
        .sum();
    let mut body = Vec::with_capacity(size + 32);
    body.extend_from_slice(b"{\"upserts\":[");
    let mut first = true;
    for op in ops {
        if let Operation::Upsert { json, .. } = &op.operation {
            if !first {
                body.push(b',');
            }
            first = false;
            body.extend_from_slice(json.as_bytes());
        }
    }
    body.extend_from_slice(b"],\"deletes\":[");
    let mut first = true;
    for op in ops {
        if let Operation::Delete = op.operation {
            if !first {
                body.push(b',');
            }
            first = false;
            // A string always serialises; the fallback only keeps this function total.
            let quoted = serde_json::to_string(&op.sys_id).unwrap_or_else(|_| "\"\"".to_owned());
            body.extend_from_slice(quoted.as_bytes());
        }
    }
    body.extend_from_slice(b"]}");
    body
}

/// Fast compression: entity JSON is repetitive, so even the fastest level shrinks it several
/// times over, and the CPU is better spent on throughput.
fn compress(json: &[u8]) -> Vec<u8> {
    let mut encoder = GzEncoder::new(Vec::with_capacity(json.len() / 4), Compression::fast());
    // Writing into a Vec cannot fail.
    match encoder.write_all(json).and_then(|()| encoder.finish()) {
        Ok(compressed) => compressed,
        Err(_) => json.to_vec(),
    }
}

fn idempotency_key<M: Input>(ops: &[Op<M>]) -> String {
    let mut hasher = Sha256::new();
    for message in ops.iter().flat_map(Op::messages) {
        hasher.update(message.topic().as_bytes());
        hasher.update(b"/");
        hasher.update(message.partition().to_string().as_bytes());
        hasher.update(b"/");
        hasher.update(message.offset().to_string().as_bytes());
        hasher.update(b"\n");
    }
    hasher
        .finalize()
        .iter()
        .map(|byte| format!("{byte:02x}"))
        .collect()
}

#[cfg(test)]
mod tests {
    use std::io::Read;

    use flate2::read::GzDecoder;

    use super::*;
    use crate::record::tests::{TestMessage, message};

    fn op(sys_id: &str, offset: i64, operation: Operation) -> Op<TestMessage> {
        Op {
            sys_id: sys_id.into(),
            operation,
            message: message("sei.servicenow.user", offset, None, None),
            superseded: Vec::new(),
        }
    }

    fn ops() -> Vec<Op<TestMessage>> {
        vec![
            op(
                "a",
                1,
                Operation::Upsert {
                    json: "{\"sys_id\":\"a\"}".into(),
                    sys_updated_on: chrono::DateTime::UNIX_EPOCH,
                },
            ),
            op("b\"q", 2, Operation::Delete),
            op(
                "c",
                3,
                Operation::Upsert {
                    json: "{\"sys_id\":\"c\"}".into(),
                    sys_updated_on: chrono::DateTime::UNIX_EPOCH,
                },
            ),
        ]
    }

    #[test]
    fn the_body_lists_upserts_and_deletes_as_the_contract_says() {
        let request = IngestRequest::build(&ops(), false);
        let body: serde_json::Value = serde_json::from_slice(&request.body).unwrap();
        assert_eq!(
            body,
            serde_json::json!({
                "upserts": [{"sys_id": "a"}, {"sys_id": "c"}],
                "deletes": ["b\"q"],
            })
        );
        assert_eq!((request.upserts, request.deletes), (2, 1));
        assert_eq!(upsert_positions(&ops()), vec![0, 2]);
        assert_eq!(delete_positions(&ops()), vec![1]);
    }

    #[test]
    fn an_empty_side_is_an_empty_list() {
        let request = IngestRequest::build(&ops()[1..2], false);
        assert_eq!(request.body, b"{\"upserts\":[],\"deletes\":[\"b\\\"q\"]}");
    }

    #[test]
    fn a_gzip_body_decodes_to_the_plain_one() {
        let plain = IngestRequest::build(&ops(), false);
        let gzip = IngestRequest::build(&ops(), true);
        assert!(gzip.gzip);
        let mut decoded = Vec::new();
        GzDecoder::new(gzip.body.as_slice())
            .read_to_end(&mut decoded)
            .unwrap();
        assert_eq!(decoded, plain.body);
        assert_eq!(gzip.idempotency_key, plain.idempotency_key);
    }

    #[test]
    fn the_key_is_stable_for_the_same_records_and_differs_for_others() {
        let key = IngestRequest::build(&ops(), true).idempotency_key;
        assert_eq!(key, IngestRequest::build(&ops(), true).idempotency_key);
        assert_eq!(key.len(), 64);
        assert_ne!(key, IngestRequest::build(&ops()[..2], true).idempotency_key);
        let mut with_superseded = ops();
        with_superseded[0]
            .superseded
            .push(crate::batch::Superseded {
                operation: Operation::Delete,
                message: message("sei.servicenow.user", 0, None, None),
            });
        assert_ne!(
            key,
            IngestRequest::build(&with_superseded, true).idempotency_key,
            "superseded messages are part of what the request stands for"
        );
    }
}
