//! Client configuration that needs no broker.

use nowstream_bus::Producer;
use nowstream_runtime::KafkaConfig;

fn kafka_with(properties: &[(&str, &str)]) -> KafkaConfig {
    let mut kafka = KafkaConfig {
        bootstrap_servers: "127.0.0.1:9".into(),
        ..KafkaConfig::default()
    };
    for (key, value) in properties {
        kafka
            .properties
            .insert((*key).to_owned(), (*value).to_owned().into());
    }
    kafka
}

#[test]
fn tls_and_sasl_scram_are_built_in() {
    // Managed Kafka services require TLS; librdkafka refuses these values when built without
    // OpenSSL ("OpenSSL not available at build time").
    let kafka = kafka_with(&[
        ("security.protocol", "SASL_SSL"),
        ("sasl.mechanism", "SCRAM-SHA-512"),
        ("sasl.username", "nowstream"),
        ("sasl.password", "secret"),
    ]);
    if let Err(error) = Producer::new(&kafka) {
        panic!("a SASL_SSL producer must be creatable: {error}");
    }
}

#[test]
fn a_bad_librdkafka_property_is_reported_with_the_role_and_without_secret_values() {
    let kafka = kafka_with(&[("no.such.property", "x"), ("sasl.password", "hunter2")]);
    let error = Producer::new(&kafka).expect_err("librdkafka rejects unknown properties");
    let message = error.to_string();
    assert!(message.contains("producer"), "{message}");
    assert!(message.contains("no.such.property"), "{message}");
    assert!(!message.contains("hunter2"), "{message}");
}
