#!/usr/bin/env bash
# Creates every nowstream topic before the stages start (the kafka-topics service runs it once).
#
# The stages create missing topics themselves, with the same settings; creating them here first
# keeps two replicas of a stage from racing to create them, and lets the broker run with
# auto.create.topics.enable=false, so a misspelt topic name fails instead of appearing.
# Existing topics are left alone (--if-not-exists): partitions are never added, because that
# would move keys to other partitions and break per-record order.
#
# Partition counts follow deploy/compose/nowstream.toml ([fetcher] raw_topic_partitions and
# coordination_partitions, [normalizer] and [sink] topic_partitions); the checkpoint topic
# always has 3. A test runs this script against a stand-in kafka-topics.sh and checks both.
set -euo pipefail

bootstrap="${KAFKA_BOOTSTRAP:-kafka:9092}"
prefix="${TOPIC_PREFIX:-}"
replication="${REPLICATION_FACTOR:-1}"
# The tool of the apache/kafka image; tests point KAFKA_TOPICS at a stand-in that records the calls.
kafka_topics="${KAFKA_TOPICS:-/opt/kafka/bin/kafka-topics.sh}"

create() {
  local name="${prefix}$1" partitions="$2"
  shift 2
  "${kafka_topics}" --bootstrap-server "${bootstrap}" --create --if-not-exists \
    --topic "${name}" --partitions "${partitions}" --replication-factor "${replication}" "$@"
  echo "topic ${name}: ready"
}

# Raw records as the Table API returned them, keyed <integration_id>:<sys_id>. Compacted: the
# newest version of every record stays available for replays.
for table in incident change_request sys_user sys_dictionary; do
  create "servicenow.raw.${table}" 6 --config cleanup.policy=compact
done

# The fetcher's resume points, one per <integration_id>:<table>: only the newest matters.
create servicenow.fetcher.checkpoints 3 --config cleanup.policy=compact
# Fetcher replicas share their work units through this topic's consumer group; it never
# carries a message, and its partition count caps the useful number of fetcher replicas.
create servicenow.fetcher.coordination 12
# Rows the fetcher could not publish (cannot be keyed, too large), with headers saying why.
# Kept 14 days, like the fetcher creates it.
create servicenow.fetcher.dlq 3 --config retention.ms=1209600000

# SEI entities keyed <integration_id>:<sys_id>; a null value (tombstone) means deleted.
# Compacted like the normalizer creates them: the newest version of every record stays.
for entity in incident change_request user field_definition; do
  create "sei.servicenow.${entity}" 6 --config cleanup.policy=compact
done

# Records the normalizer or the sink gave up on, with headers saying why. Never compacted:
# every failure is kept.
create sei.servicenow.dlq 6
