#!/usr/bin/env python3
"""Read nowstream's SEI entity topics from Python.

Values are Avro in single-object encoding: 0xC3 0x01, the 8-byte little-endian CRC-64-AVRO
fingerprint of the writer schema, then the Avro binary body. The .avsc files in schemas/ are all
a consumer needs; no schema registry is involved. A null value (tombstone) means the record was
deleted in ServiceNow.

A value written with an older released schema (schemas/released/<entity>/v<N>.avsc, e.g. an
incident from a v1 producer, without caused_by) is resolved into the current schema
(schemas/<entity>.avsc), so every record of a topic comes out with the same fields: the ones the
writer did not have are filled with their defaults (null).

    pip install confluent-kafka fastavro
    python3 consume_entities.py --bootstrap localhost:9092 --schemas ../../schemas \
        --topic sei.servicenow.incident --max-idle 5

Prints one JSON line per record: {"topic", "key", "deleted", "value"}.
"""

import argparse
import io
import json
import pathlib
import sys

import fastavro
from confluent_kafka import Consumer

MAGIC = b"\xc3\x01"


class Schemas:
    """The writer schemas (current and released/) by CRC-64-AVRO fingerprint, and the reader
    schema (the current .avsc at the top of the folder) by record full name."""

    def __init__(self, folder):
        folder = pathlib.Path(folder)
        self.writers = {}
        self.readers = {}
        for path in sorted(folder.rglob("*.avsc")):
            parsed = fastavro.parse_schema(json.loads(path.read_text()))
            canonical = fastavro.schema.to_parsing_canonical_form(parsed)
            fingerprint = fastavro.schema.fingerprint(canonical, "CRC-64-AVRO")
            # fastavro renders the fingerprint in the byte order the header carries it.
            self.writers[bytes.fromhex(fingerprint)] = parsed
            if path.parent == folder:
                self.readers[parsed["name"]] = parsed


def decode(value, schemas):
    """Decodes one single-object-encoded value into the current schema of its record; raises
    ValueError naming what is wrong."""
    if len(value) < 10 or value[:2] != MAGIC:
        raise ValueError("not Avro single-object encoding (no C3 01 header)")
    writer = schemas.writers.get(value[2:10])
    if writer is None:
        raise ValueError(f"unknown writer schema fingerprint {value[2:10].hex()}")
    reader = schemas.readers.get(writer["name"], writer)
    return fastavro.schemaless_reader(io.BytesIO(value[10:]), writer, reader)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bootstrap", required=True)
    parser.add_argument("--schemas", required=True, help="the schemas/ folder")
    parser.add_argument("--topic", action="append", required=True)
    parser.add_argument("--group", default="nowstream-python-example")
    parser.add_argument("--max-idle", type=float, default=0, help="exit after this many idle seconds (0: never)")
    args = parser.parse_args()

    schemas = Schemas(args.schemas)
    consumer = Consumer({
        "bootstrap.servers": args.bootstrap,
        "group.id": args.group,
        "auto.offset.reset": "earliest",
    })
    consumer.subscribe(args.topic)
    idle = 0.0
    try:
        while args.max_idle == 0 or idle < args.max_idle:
            message = consumer.poll(1.0)
            if message is None:
                idle += 1.0
                continue
            if message.error():
                print(f"consumer error: {message.error()}", file=sys.stderr)
                continue
            idle = 0.0
            value = message.value()
            record = None if value is None else decode(value, schemas)
            print(json.dumps({
                "topic": message.topic(),
                "key": message.key().decode() if message.key() else None,
                "deleted": value is None,
                "value": record,
            }, default=str), flush=True)
    finally:
        consumer.close()


if __name__ == "__main__":
    main()
