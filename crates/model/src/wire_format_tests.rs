//! The direct Avro writer and reader ([`crate::avro_binary`], `RawRecord::decode`) against
//! apache-avro, the reference: for generated records of every contract type, the bytes
//! [`AvroRecord::encode`] writes are those apache-avro writes for the same value (map
//! entries aside, which apache-avro writes in hash order: there the decoded values are
//! compared), and they decode back to the record.

use std::collections::BTreeMap;

use apache_avro::from_avro_datum;
use apache_avro::types::Value;
use chrono::{DateTime, Utc};

use crate::single_object::HEADER_LEN;
use crate::{
    AvroRecord, ChangeRequest, Checkpoint, Choice, CustomField, FieldDefinition, Incident,
    RawRecord, RecordOp, Reference, User,
};

/// A small deterministic generator (xorshift), so a failure names its seed.
struct Gen(u64);

impl Gen {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    fn text(&mut self) -> String {
        const TEXTS: &[&str] = &[
            "",
            "INC0010035",
            "Email drops connections",
            "Zürich — naïve café ✓ 日本語 🚀",
            "quotes \" and \\ backslashes\nand newlines\t",
            "5302c7465a884170652eaff0c0295d49",
            "\u{0}\u{1f}",
        ];
        match self.below(10) {
            8 => "x".repeat(self.below(300) as usize),
            9 => format!("{}-{}", self.next(), self.below(1000)),
            pick => TEXTS[pick as usize % TEXTS.len()].to_owned(),
        }
    }

    fn opt_text(&mut self) -> Option<String> {
        (self.below(4) != 0).then(|| self.text())
    }

    fn time(&mut self) -> DateTime<Utc> {
        // Around 1900 to 2100, whole milliseconds (what timestamp-millis keeps).
        let millis = self.below(6_300_000_000_000) as i64 - 2_200_000_000_000;
        DateTime::from_timestamp_millis(millis).unwrap_or_default()
    }

    fn opt_time(&mut self) -> Option<DateTime<Utc>> {
        (self.below(3) != 0).then(|| self.time())
    }

    fn opt_long(&mut self) -> Option<i64> {
        match self.below(4) {
            0 => None,
            1 => Some(i64::MIN + self.below(3) as i64),
            2 => Some(self.next() as i64),
            _ => Some(self.below(100) as i64),
        }
    }

    fn opt_bool(&mut self) -> Option<bool> {
        [None, Some(true), Some(false)][self.below(3) as usize]
    }

    fn choice(&mut self) -> Option<Choice> {
        (self.below(3) != 0).then(|| Choice {
            value: self.opt_text(),
            label: self.opt_text(),
        })
    }

    fn reference(&mut self) -> Option<Reference> {
        (self.below(3) != 0).then(|| Reference {
            sys_id: self.text(),
            display_value: self.opt_text(),
        })
    }

    fn excluded(&mut self) -> Vec<String> {
        (0..self.below(4)).map(|_| self.text()).collect()
    }

    fn custom(&mut self) -> BTreeMap<String, CustomField> {
        (0..self.below(5))
            .map(|index| {
                (
                    format!("u_{index}_{}", self.text()),
                    CustomField {
                        value: self.opt_text(),
                        display_value: self.opt_text(),
                    },
                )
            })
            .collect()
    }

    fn incident(&mut self) -> Incident {
        Incident {
            integration_id: self.text(),
            sys_id: self.text(),
            sys_updated_on: self.time(),
            sys_mod_count: self.opt_long(),
            number: self.opt_text(),
            short_description: self.opt_text(),
            description: self.opt_text(),
            comments: self.opt_text(),
            work_notes: self.opt_text(),
            priority: self.choice(),
            urgency: self.choice(),
            impact: self.choice(),
            severity: self.choice(),
            state: self.choice(),
            escalation: self.choice(),
            category: self.choice(),
            close_code: self.choice(),
            sys_created_on: self.opt_time(),
            opened_at: self.opt_time(),
            resolved_at: self.opt_time(),
            closed_at: self.opt_time(),
            sla_due: self.opt_time(),
            time_to_restore_ms: self.opt_long(),
            parent: self.reference(),
            assigned_to: self.reference(),
            created_by: self.reference(),
            resolved_by: self.reference(),
            business_service: self.reference(),
            business_service_department: self.reference(),
            caused_by: self.reference(),
            excluded_fields: self.excluded(),
            custom_fields: self.custom(),
        }
    }

    fn change_request(&mut self) -> ChangeRequest {
        ChangeRequest {
            integration_id: self.text(),
            sys_id: self.text(),
            sys_updated_on: self.time(),
            sys_mod_count: self.opt_long(),
            number: self.opt_text(),
            short_description: self.opt_text(),
            description: self.opt_text(),
            comments: self.opt_text(),
            work_notes: self.opt_text(),
            priority: self.choice(),
            urgency: self.choice(),
            impact: self.choice(),
            state: self.choice(),
            r#type: self.choice(),
            scope: self.choice(),
            close_code: self.choice(),
            sys_created_on: self.opt_time(),
            start_date: self.opt_time(),
            end_date: self.opt_time(),
            closed_at: self.opt_time(),
            parent: self.reference(),
            assigned_to: self.reference(),
            created_by: self.reference(),
            closed_by: self.reference(),
            business_service: self.reference(),
            business_service_department: self.reference(),
            requested_by_department: self.reference(),
            excluded_fields: self.excluded(),
            custom_fields: self.custom(),
        }
    }

    fn user(&mut self) -> User {
        User {
            integration_id: self.text(),
            sys_id: self.text(),
            sys_updated_on: self.time(),
            sys_mod_count: self.opt_long(),
            user_name: self.opt_text(),
            name: self.opt_text(),
            email: self.opt_text(),
            employee_number: self.opt_text(),
            title: self.opt_text(),
            active: self.opt_bool(),
            department: self.reference(),
            manager: self.reference(),
            sys_created_on: self.opt_time(),
            excluded_fields: self.excluded(),
            custom_fields: self.custom(),
        }
    }

    fn field_definition(&mut self) -> FieldDefinition {
        FieldDefinition {
            integration_id: self.text(),
            sys_id: self.text(),
            sys_updated_on: self.time(),
            sys_mod_count: self.opt_long(),
            table: self.text(),
            element: self.opt_text(),
            column_label: self.opt_text(),
            internal_type: self.opt_text(),
            reference: self.opt_text(),
            mandatory: self.opt_bool(),
            active: self.opt_bool(),
            max_length: self
                .opt_long()
                .map(|n| i32::try_from(n % i64::from(i32::MAX)).unwrap_or_default()),
            excluded_fields: self.excluded(),
            custom_fields: self.custom(),
        }
    }

    fn raw_record(&mut self) -> RawRecord {
        let op = if self.below(4) == 0 {
            RecordOp::Delete
        } else {
            RecordOp::Upsert
        };
        RawRecord {
            integration_id: self.text(),
            table: self.text(),
            sys_id: self.text(),
            sys_updated_on: self.time(),
            sys_mod_count: self.opt_long(),
            op,
            fetched_at: self.time(),
            instance_url: self.text(),
            payload: self.opt_text(),
        }
    }

    fn checkpoint(&mut self) -> Checkpoint {
        Checkpoint {
            integration_id: self.text(),
            table: self.text(),
            last_updated_on: self.time(),
            last_sys_id: self.text(),
            updated_at: self.time(),
            records_total: self.opt_long().unwrap_or_default(),
            deletes_last_created_on: self.opt_time(),
            deletes_last_sys_id: self.opt_text(),
        }
    }
}

/// The body of `message` decoded by apache-avro with the type's current schema.
fn apache_decode<T: AvroRecord>(message: &[u8]) -> Value {
    let mut body = &message[HEADER_LEN..];
    let value = from_avro_datum(T::contract().schema(), &mut body, None).unwrap();
    assert!(body.is_empty(), "bytes left after the body");
    value
}

/// Encodes `record` both ways and checks the two agree; returns whether the bytes were
/// compared exactly.
fn assert_same_wire_format<T>(record: &T, maps: usize, seed: u64) -> bool
where
    T: AvroRecord + PartialEq + std::fmt::Debug,
{
    let direct = record.encode().unwrap();
    let reference = record.encode_with_apache_avro().unwrap();
    assert_eq!(direct[..HEADER_LEN], reference[..HEADER_LEN], "seed {seed}");
    assert_eq!(
        apache_decode::<T>(&direct),
        apache_decode::<T>(&reference),
        "seed {seed}: {record:?}"
    );
    assert_eq!(&T::decode(&direct).unwrap(), record, "seed {seed}");
    // With at most one map entry there is no order to differ in.
    let exact = maps <= 1;
    if exact {
        assert_eq!(direct, reference, "seed {seed}: {record:?}");
    }
    exact
}

const SEEDS: u64 = 400;

#[test]
fn every_entity_encodes_to_the_bytes_apache_avro_writes() {
    let mut exact = 0;
    for seed in 1..=SEEDS {
        let mut generator = Gen(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1);
        let incident = generator.incident();
        let change = generator.change_request();
        let user = generator.user();
        let definition = generator.field_definition();
        exact += usize::from(assert_same_wire_format(
            &incident,
            incident.custom_fields.len(),
            seed,
        ));
        exact += usize::from(assert_same_wire_format(
            &change,
            change.custom_fields.len(),
            seed,
        ));
        exact += usize::from(assert_same_wire_format(
            &user,
            user.custom_fields.len(),
            seed,
        ));
        exact += usize::from(assert_same_wire_format(
            &definition,
            definition.custom_fields.len(),
            seed,
        ));
    }
    // Most records were compared byte for byte, not only as decoded values.
    assert!(exact > SEEDS as usize, "{exact}");
}

#[test]
fn raw_records_and_checkpoints_encode_to_the_bytes_apache_avro_writes() {
    for seed in 1..=SEEDS {
        let mut generator = Gen(seed.wrapping_mul(0x2545_F491_4F6C_DD1D) | 1);
        assert!(assert_same_wire_format(&generator.raw_record(), 0, seed));
        assert!(assert_same_wire_format(&generator.checkpoint(), 0, seed));
    }
}

#[test]
fn the_direct_raw_record_reader_agrees_with_apache_avro_on_any_bytes() {
    for seed in 1..=SEEDS {
        let mut generator = Gen(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1);
        let record = generator.raw_record();
        let message = record.encode().unwrap();
        assert_eq!(RawRecord::decode(&message).unwrap(), record);
        // Damaged copies: a byte changed, the message cut short, a byte appended. Both
        // readers must accept the same messages as the same record, and fail alike.
        let mut damaged = Vec::new();
        for _ in 0..8 {
            let mut copy = message.clone();
            let at = generator.below(copy.len() as u64) as usize;
            copy[at] = generator.next() as u8;
            damaged.push(copy);
        }
        damaged.push(message[..generator.below(message.len() as u64) as usize].to_vec());
        damaged.push([message.as_slice(), &[0]].concat());
        for copy in damaged {
            let direct = RawRecord::decode(&copy);
            let reference = RawRecord::decode_with_apache_avro(&copy);
            match (direct, reference) {
                (Ok(direct), Ok(reference)) => assert_eq!(direct, reference, "seed {seed}"),
                (Err(direct), Err(reference)) => {
                    assert_eq!(direct.to_string(), reference.to_string(), "seed {seed}")
                }
                (direct, reference) => {
                    panic!("seed {seed}: direct {direct:?}, apache-avro {reference:?}")
                }
            }
        }
    }
}
