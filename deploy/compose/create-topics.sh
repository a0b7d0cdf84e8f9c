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
# always has 3. Topic configs are the ones the stages derive (nowstream_bus::topic_configs):
#   every topic      cleanup.policy, min.insync.replicas = replication factor - 1 (at least 1),
#                    max.message.bytes = [kafka] max_message_bytes (the producers stay 1 KiB below)
#   compacted topics delete.retention.ms = [kafka] tombstone_retention
#   dead letters     retention.ms = [kafka] dlq_retention
# The defaults below are the config's defaults; set the variables together with those keys.
# A test runs this script against a stand-in kafka-topics.sh and checks all of it.
set -euo pipefail

bootstrap="${KAFKA_BOOTSTRAP:-kafka:9092}"
prefix="${TOPIC_PREFIX:-}"
replication="${REPLICATION_FACTOR:-1}"
max_message_bytes="${MAX_MESSAGE_BYTES:-8388608}"      # 8 MiB
tombstone_retention_ms="${TOMBSTONE_RETENTION_MS:-604800000}" # 7 days
dlq_retention_ms="${DLQ_RETENTION_MS:-1209600000}"     # 14 days
# The tool of the apache/kafka image; tests point KAFKA_TOPICS at a stand-in that records the calls.
kafka_topics="${KAFKA_TOPICS:-/opt/kafka/bin/kafka-topics.sh}"

min_insync=$(( replication > 2 ? replication - 1 : 1 ))

# create NAME PARTITIONS CLEANUP_POLICY [--config key=value ...]
create() {
  local name="${prefix}$1" partitions="$2" policy="$3"
  shift 3
  "${kafka_topics}" --bootstrap-server "${bootstrap}" --create --if-not-exists \
    --topic "${name}" --partitions "${partitions}" --replication-factor "${replication}" \
    --config "cleanup.policy=${policy}" \
    --config "min.insync.replicas=${min_insync}" \
    --config "max.message.bytes=${max_message_bytes}" "$@"
  echo "topic ${name}: ready"
}

compacted() {
  create "$1" "$2" compact --config "delete.retention.ms=${tombstone_retention_ms}"
}

dead_letters() {
  create "$1" "$2" delete --config "retention.ms=${dlq_retention_ms}"
}

# Raw records as the Table API returned them, keyed <integration_id>:<sys_id>. Compacted: the
# newest version of every record stays available for replays.
for table in incident change_request sys_user sys_dictionary; do
  compacted "servicenow.raw.${table}" 6
done

# The fetcher's resume points, one per <integration_id>:<table>: only the newest matters.
compacted servicenow.fetcher.checkpoints 3
# Fetcher replicas share their work units through this topic's consumer group; it never
# carries a message, and its partition count caps the useful number of fetcher replicas.
create servicenow.fetcher.coordination 12 delete
# Rows the fetcher could not publish (cannot be keyed, too large), with headers saying why.
dead_letters servicenow.fetcher.dlq 3

# SEI entities keyed <integration_id>:<sys_id>; a null value (tombstone) means deleted.
# Compacted like the normalizer creates them: the newest version of every record stays, and a
# tombstone stays readable for tombstone_retention, so a sink parked over a weekend still sees it.
for entity in incident change_request user field_definition; do
  compacted "sei.servicenow.${entity}" 6
done

# Records the normalizer or the sink gave up on, with headers saying why. Never compacted:
# every failure is kept for dlq_retention.
dead_letters sei.servicenow.dlq 6
