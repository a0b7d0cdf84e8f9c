//! `normalizer.exactly_once = true` on Apache Kafka: each batch's outputs and its input
//! offsets in one transaction, read back with `isolation.level=read_committed`.
//!
//! Every input is a distinct record, so every input must show up as exactly one committed
//! output: a second copy would be a batch committed twice (offsets lost with a kill, a zombie),
//! a missing one an input whose offset was committed without its output.

use crate::common;

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use common::{RawWriter, Setup, key, raw, spawn_normalizer};
use nowstream_model::{Entity, RecordOp};
use nowstream_testkit::{Isolation, KafkaBroker, TopicReader, unique};

const KILLS: usize = 10;
/// Pause between a kill and the restart. The group drops the killed member after
/// `session.timeout.ms` (6 s, Apache Kafka's `group.min.session.timeout.ms`); the successor's
/// join waits for that.
const RESTART_PAUSE: Duration = Duration::from_millis(500);

/// Counts committed outputs per key on the incident entity topic.
struct CommittedOutputs {
    reader: TopicReader,
    seen: HashMap<String, usize>,
    /// The highest input number (`inc-<n>`) with a committed output.
    newest: Option<usize>,
}

impl CommittedOutputs {
    fn new(setup: &Setup) -> Self {
        let reader = TopicReader::subscribe(
            &setup.bootstrap_servers,
            &[setup.topics().entity(Entity::Incident).as_str()],
            Isolation::ReadCommitted,
        )
        .expect("reader subscribes");
        Self {
            reader,
            seen: HashMap::new(),
            newest: None,
        }
    }

    async fn read_for(&mut self, window: Duration) {
        for message in self.reader.read_for(window).await {
            let output = message.key_text();
            let number = output
                .strip_prefix(&key("inc-"))
                .and_then(|number| number.parse::<usize>().ok());
            self.newest = self.newest.max(number);
            *self.seen.entry(output).or_default() += 1;
        }
    }

    async fn read_until(&mut self, timeout: Duration, done: impl Fn(&Self) -> bool) -> bool {
        let deadline = Instant::now() + timeout;
        while !done(self) {
            if Instant::now() > deadline {
                return false;
            }
            self.read_for(Duration::from_millis(300)).await;
        }
        true
    }

    fn assert_each_once(&self, inputs: &[String]) {
        let missing: Vec<&String> = inputs
            .iter()
            .filter(|id| !self.seen.contains_key(&key(id)))
            .collect();
        assert!(
            missing.is_empty(),
            "{} of {} inputs have no committed output, e.g. {:?}",
            missing.len(),
            inputs.len(),
            missing.first()
        );
        let mut twice: Vec<(&String, &usize)> =
            self.seen.iter().filter(|(_, count)| **count > 1).collect();
        twice.sort();
        assert!(
            twice.is_empty(),
            "{} outputs were committed more than once, e.g. {:?}",
            twice.len(),
            &twice[..twice.len().min(5)]
        );
    }
}

/// Writes raw incidents `inc-00000`, `inc-00001`, … in small batches until stopped; returns
/// the sys_ids written.
struct Feed {
    stop: Arc<AtomicBool>,
    /// How many inputs are written so far.
    written: Arc<AtomicUsize>,
    task: tokio::task::JoinHandle<Vec<String>>,
}

impl Feed {
    fn start(setup: &Setup) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let writer = RawWriter::new(setup);
        let stopped = Arc::clone(&stop);
        let written_so_far = Arc::new(AtomicUsize::new(0));
        let count = Arc::clone(&written_so_far);
        let task = tokio::spawn(async move {
            let mut written = Vec::new();
            while !stopped.load(Ordering::Acquire) {
                let batch: Vec<_> = (written.len()..written.len() + 20)
                    .map(|n| {
                        raw(
                            Entity::Incident,
                            &format!("inc-{n:05}"),
                            1,
                            RecordOp::Upsert,
                        )
                    })
                    .collect();
                writer.write(&batch).await;
                written.extend(batch.into_iter().map(|record| record.sys_id));
                count.store(written.len(), Ordering::Release);
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            written
        });
        Self {
            stop,
            written: written_so_far,
            task,
        }
    }

    fn written(&self) -> usize {
        self.written.load(Ordering::Acquire)
    }

    async fn stop(self) -> Vec<String> {
        self.stop.store(true, Ordering::Release);
        self.task.await.expect("feed task")
    }
}

/// A setup with `exactly_once`, a stable transactional id (as a StatefulSet's pod name gives)
/// and small, frequent transactions, its raw topics created.
async fn exactly_once_setup(broker: &KafkaBroker) -> Setup {
    let mut setup = Setup::new(broker);
    // The broker refuses sessions shorter than its group.min.session.timeout.ms (6 s).
    setup.session_timeout_ms = 6_000;
    setup.normalizer = format!(
        "exactly_once = true\ntransactional_id = \"{}\"\ntransaction_max_records = 40\n\
         transaction_linger = \"300ms\"",
        unique("normalizer-0")
    );
    setup.create_raw_topics().await;
    setup
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_input_is_committed_as_exactly_one_output_across_ten_kill_9s() {
    let broker = KafkaBroker::shared().expect("broker starts");
    let setup = exactly_once_setup(broker).await;
    let dir = tempfile::tempdir().expect("temp dir");
    let config = setup.write(dir.path(), "normalizer.toml");
    let mut outputs = CommittedOutputs::new(&setup);
    let feed = Feed::start(&setup);
    let started = Instant::now();

    let mut stage = spawn_normalizer(&config, &[]);
    let mut restarted_at = Instant::now();
    for kill in 1..=KILLS {
        // Each life commits the output of an input written after it started before it is
        // killed, so every kill lands in a running stream: with 40 inputs per transaction and
        // new inputs every 100 ms, usually with a transaction open.
        let first_new = feed.written();
        assert!(
            outputs
                .read_until(Duration::from_secs(120), |outputs| outputs
                    .newest
                    .is_some_and(|newest| newest >= first_new))
                .await,
            "life {kill} committed nothing:\n{}",
            stage.text()
        );
        println!(
            "life {kill}: first committed output of a new input {:?} after its start",
            restarted_at.elapsed()
        );
        tokio::time::sleep(Duration::from_millis(137 * kill as u64 % 900)).await;
        assert!(stage.is_running(), "the stage died:\n{}", stage.text());
        stage.kill();
        println!("kill {kill} at {:?}", started.elapsed());
        tokio::time::sleep(RESTART_PAUSE).await;
        stage = spawn_normalizer(&config, &[]);
        restarted_at = Instant::now();
    }
    let inputs = feed.stop().await;
    let all =
        |outputs: &CommittedOutputs| inputs.iter().all(|id| outputs.seen.contains_key(&key(id)));
    outputs.read_until(Duration::from_secs(180), all).await;
    outputs.read_for(Duration::from_secs(3)).await;
    println!(
        "{} inputs, {} outputs after {KILLS} kills in {:?}",
        inputs.len(),
        outputs.seen.values().sum::<usize>(),
        started.elapsed()
    );
    outputs.assert_each_once(&inputs);
    let status = stage.stop(Duration::from_secs(30)).await;
    assert!(status.is_some_and(|status| status.success()), "{status:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_fenced_by_another_with_its_transactional_id_stops_and_outputs_stay_exactly_once()
{
    let broker = KafkaBroker::shared().expect("broker starts");
    let setup = exactly_once_setup(broker).await;
    let dir = tempfile::tempdir().expect("temp dir");
    let config = setup.write(dir.path(), "normalizer.toml");
    let mut outputs = CommittedOutputs::new(&setup);
    let feed = Feed::start(&setup);

    let mut first = spawn_normalizer(&config, &[]);
    assert!(
        outputs
            .read_until(Duration::from_secs(120), |outputs| outputs.seen.len()
                >= 100)
            .await,
        "the first replica committed nothing:\n{}",
        first.text()
    );
    // A second replica deployed with the same transactional_id: its init_transactions fences
    // the first, whose next transaction step fails.
    let mut second = spawn_normalizer(&config, &[]);
    let status = first.wait_exit(Duration::from_secs(120)).await;
    let text = first.text();
    assert!(
        status.is_some_and(|status| !status.success()),
        "the fenced replica must stop with an error instead of initialising its id again and \
         fencing the other back ({status:?}):\n{text}"
    );
    assert!(
        text.contains("fenced") && text.contains("transactional_id"),
        "the error names the fencing and what to fix:\n{text}"
    );

    // The replica that fenced it carries on with every partition.
    let before = outputs.seen.len();
    assert!(
        outputs
            .read_until(Duration::from_secs(120), |outputs| outputs.seen.len()
                > before + 40)
            .await,
        "the second replica took over:\n{}",
        second.text()
    );
    assert!(second.is_running(), "{}", second.text());
    let inputs = feed.stop().await;
    let all =
        |outputs: &CommittedOutputs| inputs.iter().all(|id| outputs.seen.contains_key(&key(id)));
    outputs.read_until(Duration::from_secs(180), all).await;
    outputs.read_for(Duration::from_secs(3)).await;
    outputs.assert_each_once(&inputs);
    let status = second.stop(Duration::from_secs(30)).await;
    assert!(status.is_some_and(|status| status.success()), "{status:?}");
}
