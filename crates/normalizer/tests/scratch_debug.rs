mod common;
use common::*;
use nowstream_model::{Entity, RecordOp};
use nowstream_testkit::TansuBroker;
use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scratch() -> anyhow::Result<()> {
    let broker = TansuBroker::start()?;
    let mut setup = Setup::new(&broker);
    setup.listen = free_listen_addr();
    setup.create_raw_topics().await;
    let dir = tempfile::tempdir()?;
    let config = setup.write(dir.path(), "n.toml");
    let inputs: Vec<_> = (0..20000)
        .map(|n| raw(Entity::Incident, &format!("k{n}"), 1, RecordOp::Upsert))
        .collect();
    let writer = RawWriter::new(&setup);
    writer.write(&inputs).await;
    println!("written");
    let mut stage = NormalizerProcess::spawn(&config, &[]);
    for _ in 0..5 {
        tokio::time::sleep(Duration::from_millis(500)).await;
        println!(
            "in {:?} out {:?} lag {:?}",
            scrape_counter(&setup.listen, "nowstream_normalizer_records_in_total"),
            scrape_counter(&setup.listen, "nowstream_normalizer_records_out_total"),
            scrape_counter(&setup.listen, "nowstream_normalizer_consumer_lag")
        );
    }
    stage.kill();
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let stage = NormalizerProcess::spawn(&config, &[]);
    writer
        .write(
            &(20000..25000)
                .map(|n| raw(Entity::Incident, &format!("k{n}"), 1, RecordOp::Upsert))
                .collect::<Vec<_>>(),
        )
        .await;
    for _ in 0..30 {
        tokio::time::sleep(Duration::from_millis(1000)).await;
        println!(
            "in {:?} out {:?} lag {:?}",
            scrape_counter(&setup.listen, "nowstream_normalizer_records_in_total"),
            scrape_counter(&setup.listen, "nowstream_normalizer_records_out_total"),
            scrape_counter(&setup.listen, "nowstream_normalizer_consumer_lag")
        );
    }
    {
        use rdkafka::consumer::{BaseConsumer, Consumer};
        let c: BaseConsumer = rdkafka::ClientConfig::new()
            .set("bootstrap.servers", broker.bootstrap_servers())
            .set("group.id", &setup.group)
            .create()?;
        let mut tpl = rdkafka::TopicPartitionList::new();
        for p in 0..4 {
            tpl.add_partition(&setup.topics().raw("incident")?, p);
        }
        let committed = c.committed_offsets(tpl, Duration::from_secs(5))?;
        for e in committed.elements() {
            let (lo, hi) = c.fetch_watermarks(e.topic(), e.partition(), Duration::from_secs(5))?;
            println!(
                "{} {} committed {:?} low {lo} high {hi}",
                e.topic(),
                e.partition(),
                e.offset()
            );
        }
    }
    let _ = stage;
    {
        use rdkafka::consumer::{BaseConsumer, Consumer};
        let c: BaseConsumer = rdkafka::ClientConfig::new()
            .set("bootstrap.servers", broker.bootstrap_servers())
            .create()?;
        let t = setup.topics().entity(Entity::Incident);
        for p in 0..3 {
            let (lo, hi) = c.fetch_watermarks(&t, p, Duration::from_secs(5))?;
            println!("out {t} {p} low {lo} high {hi}");
        }
    }
    let mut reader = OutputReader::new(&setup);
    let started = std::time::Instant::now();
    reader
        .read_until(Duration::from_secs(40), |r| r.messages >= 25000)
        .await;
    println!(
        "reader read {} messages in {:?}",
        reader.messages,
        started.elapsed()
    );
    Ok(())
}
