//! Single-object encoding: the header follows the Avro spec, and bad input gets named errors.

use crate::common;

use nowstream_model::canonical_form::canonical_form;
use nowstream_model::single_object::{HEADER_LEN, HeaderError, MAGIC, read_header};
use nowstream_model::{AvroRecord, Fingerprint, Incident, ModelError, RawRecord, User, contract};
use proptest::prelude::*;

/// CRC-64-AVRO exactly as the Avro specification lists it ("Schema Fingerprints"),
/// written out here so the test does not trust the code under test.
fn spec_fingerprint64(data: &[u8]) -> u64 {
    const EMPTY: u64 = 0xc15d_213a_a4d7_a795;
    let mut table = [0u64; 256];
    for (i, slot) in table.iter_mut().enumerate() {
        let mut fp = i as u64;
        for _ in 0..8 {
            fp = (fp >> 1) ^ (EMPTY & (fp & 1).wrapping_neg());
        }
        *slot = fp;
    }
    let mut fp = EMPTY;
    for &byte in data {
        fp = (fp >> 8) ^ table[((fp ^ u64::from(byte)) & 0xff) as usize];
    }
    fp
}

#[test]
fn the_spec_fingerprint_reproduces_the_avro_projects_int_vector() {
    // share/test/data/schema-tests.txt: "int" -> 8247732601305521295
    assert_eq!(
        spec_fingerprint64(b"\"int\"") as i64,
        8_247_732_601_305_521_295
    );
    assert_eq!(
        Fingerprint::of_canonical_form("\"int\"").as_i64(),
        8_247_732_601_305_521_295
    );
    assert_eq!(
        Fingerprint::of_schema_json(r#"{"type":"int"}"#)
            .unwrap()
            .to_string(),
        "8f5c393f1ad57572"
    );
}

#[test]
fn the_header_is_the_marker_then_the_little_endian_fingerprint_of_the_canonical_form() {
    let bytes = common::incident().encode().unwrap();
    assert_eq!(&bytes[..2], &[0xC3, 0x01]);
    let form = canonical_form(contract::INCIDENT.source()).unwrap();
    let expected = spec_fingerprint64(form.as_bytes()).to_le_bytes();
    assert_eq!(&bytes[2..HEADER_LEN], &expected);
    let (fingerprint, body) = read_header(&bytes).unwrap();
    assert_eq!(fingerprint, contract::INCIDENT.fingerprint());
    assert_eq!(body.len(), bytes.len() - HEADER_LEN);
}

#[test]
fn released_fingerprints_match_those_fastavro_computes() {
    // fastavro 1.13.1: fingerprint(to_parsing_canonical_form(parse_schema(v1)), "CRC-64-AVRO").
    // Released files never change, so neither do these.
    let expected = [
        ("raw_record", "8e858b1ecdbd4cd6"),
        ("checkpoint", "de08bdb3bf40f2c4"),
        ("incident", "f4b83edf94bd6213"),
        ("change_request", "2194871ca2ba360c"),
        ("user", "0251f4f79e3cd101"),
        ("field_definition", "774eef25ae4cc773"),
    ];
    for (name, fingerprint) in expected {
        let contract = contract::all()
            .into_iter()
            .find(|contract| contract.name() == name)
            .unwrap();
        let v1 = contract
            .released()
            .iter()
            .find(|r| r.version() == 1)
            .unwrap();
        assert_eq!(v1.fingerprint().to_string(), fingerprint, "{name}");
    }
}

#[test]
fn every_contract_schema_has_its_own_fingerprint() {
    let mut fingerprints: Vec<_> = contract::all().iter().map(|c| c.fingerprint()).collect();
    fingerprints.sort_by_key(|fingerprint| fingerprint.wire_bytes());
    fingerprints.dedup();
    assert_eq!(fingerprints.len(), contract::all().len());
}

#[test]
fn a_message_shorter_than_the_header_is_too_short() {
    for len in [0, 1, 9] {
        let error = Incident::decode(&vec![0xC3; len]).unwrap_err();
        assert!(
            matches!(
                &error,
                ModelError::Header { source: HeaderError::TooShort { len: l }, .. } if *l == len
            ),
            "{error}"
        );
        assert!(
            error.to_string().contains("io.nowstream.sei.Incident"),
            "{error}"
        );
    }
}

#[test]
fn a_message_without_the_marker_has_bad_magic() {
    let error = Incident::decode(br#"{"sys_id":"abc","number":"INC1"}"#).unwrap_err();
    assert!(
        matches!(
            error,
            ModelError::Header {
                source: HeaderError::BadMagic {
                    found: [b'{', b'"']
                },
                ..
            }
        ),
        "{error}"
    );
    assert_eq!(
        error.to_string(),
        "cannot decode io.nowstream.sei.Incident: message starts with 7b 22, not the single-object marker c3 01"
    );
}

#[test]
fn an_unknown_fingerprint_is_shown_in_hex() {
    let mut message = MAGIC.to_vec();
    message.extend([0xde, 0xad, 0xbe, 0xef, 0x00, 0x01, 0x02, 0x03, 0x00]);
    let error = Incident::decode(&message).unwrap_err();
    assert!(
        matches!(error, ModelError::UnknownFingerprint { .. }),
        "{error}"
    );
    assert_eq!(
        error.to_string(),
        "cannot decode io.nowstream.sei.Incident: writer schema fingerprint deadbeef00010203 is not a known version of it"
    );
}

#[test]
fn a_message_of_another_contract_record_names_both_schemas() {
    let user = common::user().encode().unwrap();
    let error = Incident::decode(&user).unwrap_err();
    assert!(
        matches!(
            error,
            ModelError::OtherSchema {
                found: "io.nowstream.sei.User",
                ..
            }
        ),
        "{error}"
    );
    assert!(
        error
            .to_string()
            .contains(&contract::USER.fingerprint().to_string())
    );
    assert!(User::decode(&user).is_ok());
}

#[test]
fn a_body_cut_short_does_not_match_the_schema() {
    let bytes = common::incident().encode().unwrap();
    let error = Incident::decode(&bytes[..bytes.len() / 2]).unwrap_err();
    assert!(matches!(error, ModelError::Body { .. }), "{error}");
    assert!(
        error
            .to_string()
            .contains("body does not match writer schema"),
        "{error}"
    );
}

#[test]
fn a_string_cut_short_at_the_end_is_an_error_not_a_null() {
    // The payload is the last field of RawRecord: cutting into it must not decode as
    // "no payload".
    let bytes = common::raw_upsert().encode().unwrap();
    for cut in 1..20 {
        let result = RawRecord::decode(&bytes[..bytes.len() - cut]);
        assert!(
            matches!(result, Err(ModelError::Body { .. })),
            "cut {cut}: {result:?}"
        );
    }
}

#[test]
fn bytes_after_the_body_are_reported() {
    let mut bytes = common::checkpoint().encode().unwrap();
    bytes.extend([0, 0, 0]);
    let error = nowstream_model::Checkpoint::decode(&bytes).unwrap_err();
    assert!(
        matches!(error, ModelError::TrailingBytes { count: 3, .. }),
        "{error}"
    );
}

proptest! {
    #[test]
    fn arbitrary_bodies_never_panic(body in proptest::collection::vec(any::<u8>(), 0..256)) {
        let mut message = MAGIC.to_vec();
        message.extend(contract::INCIDENT.fingerprint().wire_bytes());
        message.extend(body);
        let _ = Incident::decode(&message);
    }

    #[test]
    fn arbitrary_messages_never_panic(message in proptest::collection::vec(any::<u8>(), 0..64)) {
        let _ = RawRecord::decode(&message);
    }
}
