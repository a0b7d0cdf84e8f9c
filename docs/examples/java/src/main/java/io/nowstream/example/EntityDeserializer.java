package io.nowstream.example;

import java.io.IOException;
import java.io.UncheckedIOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.HashMap;
import java.util.Map;
import java.util.concurrent.ConcurrentHashMap;
import java.util.stream.Stream;

import org.apache.avro.Schema;
import org.apache.avro.data.TimeConversions;
import org.apache.avro.generic.GenericData;
import org.apache.avro.generic.GenericRecord;
import org.apache.avro.message.BinaryMessageDecoder;
import org.apache.avro.message.SchemaStore;
import org.apache.kafka.common.errors.SerializationException;
import org.apache.kafka.common.serialization.Deserializer;

/**
 * Kafka value deserializer for nowstream's entity topics: Avro single-object encoding in, a
 * {@link GenericRecord} of the entity's current schema out, {@code null} for a tombstone (the record
 * was deleted in ServiceNow).
 *
 * <p>Every {@code .avsc} under the schemas folder (current and {@code released/}) goes into one
 * {@link SchemaStore.Cache}: Avro's {@link BinaryMessageDecoder} finds a value's writer schema there
 * by its fingerprint and resolves it into the reader schema, so values written by any released
 * nowstream version decode. The reader schema is the current {@code <entity>.avsc} of the topic:
 * {@code [<prefix>]sei.servicenow.incident} is read as {@code incident.avsc}.
 *
 * <p>Plain {@code kafka-clients} API: the same instance serves a {@code KafkaConsumer}, Kafka Streams
 * ({@code Serdes.serdeFrom(serializer, deserializer)}) or any framework that takes a Kafka
 * {@link Deserializer}. It is thread-safe.
 */
public final class EntityDeserializer implements Deserializer<GenericRecord> {
  private final GenericData model = new GenericData();
  private final SchemaStore.Cache writerSchemas = new SchemaStore.Cache();
  private final Map<String, Schema> currentSchemas = new HashMap<>();
  private final Map<String, BinaryMessageDecoder<GenericRecord>> decoders = new ConcurrentHashMap<>();

  /** Loads every schema under {@code schemasFolder}, nowstream's {@code schemas/}. */
  public EntityDeserializer(Path schemasFolder) throws IOException {
    // timestamp-millis fields become Instants (UTC) rather than bare longs.
    model.addLogicalTypeConversion(new TimeConversions.TimestampMillisConversion());
    try (Stream<Path> files = Files.walk(schemasFolder)) {
      for (Path file : files.filter(f -> f.toString().endsWith(".avsc")).sorted().toList()) {
        // A parser per file: each file defines its shared records (Choice, Reference, ...) inline.
        Schema schema = new Schema.Parser().parse(file.toFile());
        writerSchemas.addSchema(schema);
        if (file.getParent().equals(schemasFolder)) {
          String name = file.getFileName().toString();
          currentSchemas.put(name.substring(0, name.length() - ".avsc".length()), schema);
        }
      }
    } catch (UncheckedIOException e) {
      throw e.getCause();
    }
  }

  /** The decoder of a topic's values; fails at once for a topic that has no entity schema. */
  public BinaryMessageDecoder<GenericRecord> decoderFor(String topic) {
    return decoders.computeIfAbsent(topic, t -> {
      String entity = t.substring(t.lastIndexOf('.') + 1);
      Schema current = currentSchemas.get(entity);
      if (current == null) {
        throw new IllegalArgumentException(
            "no schema for topic " + t + ": expected " + entity + ".avsc in the schemas folder");
      }
      return new BinaryMessageDecoder<>(model, current, writerSchemas);
    });
  }

  @Override
  public GenericRecord deserialize(String topic, byte[] value) {
    if (value == null) {
      return null;
    }
    try {
      return decoderFor(topic).decode(value);
    } catch (IOException | RuntimeException e) {
      throw new SerializationException("cannot decode a value of " + topic + ": " + e.getMessage(), e);
    }
  }

  /** Renders a decoded record (or any map of them) as JSON; times as ISO-8601 UTC. */
  public String toJson(Object datum) {
    return model.toString(datum);
  }
}
