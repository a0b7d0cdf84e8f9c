package io.nowstream.example;

import java.io.FileDescriptor;
import java.io.FileOutputStream;
import java.io.IOException;
import java.io.PrintStream;
import java.nio.charset.StandardCharsets;
import java.nio.file.Path;
import java.time.Duration;
import java.time.Instant;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Properties;

import org.apache.avro.generic.GenericRecord;
import org.apache.kafka.clients.consumer.ConsumerConfig;
import org.apache.kafka.clients.consumer.ConsumerRecord;
import org.apache.kafka.clients.consumer.KafkaConsumer;
import org.apache.kafka.common.errors.WakeupException;
import org.apache.kafka.common.serialization.StringDeserializer;

/**
 * Reads nowstream's SEI entity topics ({@code sei.servicenow.<entity>}) from Java and prints one
 * JSON line per record: {@code {"topic", "key", "deleted", "value"}}. A tombstone (null value) is
 * {@code "deleted": true}: the record was deleted in ServiceNow. Decoding is
 * {@link EntityDeserializer}'s; the {@code .avsc} files in {@code schemas/} are all it needs, no
 * schema registry.
 *
 * <pre>
 * mvn -q -B package
 * java -jar target/consume-entities.jar --bootstrap localhost:9092 --schemas ../../../schemas \
 *     --topic sei.servicenow.incident --max-idle 5
 * </pre>
 */
public final class ConsumeEntities {
  private static final String USAGE = "usage: consume-entities --bootstrap HOST:PORT --schemas DIR"
      + " --topic TOPIC [--topic TOPIC]... [--group GROUP] [--max-idle SECONDS]";

  private ConsumeEntities() {}

  public static void main(String[] args) throws IOException {
    Options options;
    EntityDeserializer entities;
    try {
      options = Options.parse(args);
      entities = new EntityDeserializer(options.schemas);
      options.topics.forEach(entities::decoderFor);
    } catch (IllegalArgumentException e) {
      System.err.println(e.getMessage() + "\n" + USAGE);
      System.exit(2);
      return;
    }
    // JSON lines are UTF-8, whatever the platform's default charset.
    PrintStream out = new PrintStream(new FileOutputStream(FileDescriptor.out), true, StandardCharsets.UTF_8);

    Properties config = new Properties();
    config.put(ConsumerConfig.BOOTSTRAP_SERVERS_CONFIG, options.bootstrap);
    config.put(ConsumerConfig.GROUP_ID_CONFIG, options.group);
    config.put(ConsumerConfig.AUTO_OFFSET_RESET_CONFIG, "earliest");
    try (KafkaConsumer<String, GenericRecord> consumer =
        new KafkaConsumer<>(config, new StringDeserializer(), entities)) {
      closeOnShutdown(consumer);
      consumer.subscribe(options.topics);
      Instant lastRecord = Instant.now();
      while (options.maxIdle.isZero()
          || Duration.between(lastRecord, Instant.now()).compareTo(options.maxIdle) < 0) {
        for (ConsumerRecord<String, GenericRecord> record : consumer.poll(Duration.ofSeconds(1))) {
          lastRecord = Instant.now();
          Map<String, Object> line = new LinkedHashMap<>();
          line.put("topic", record.topic());
          line.put("key", record.key());
          line.put("deleted", record.value() == null);
          line.put("value", record.value());
          out.println(entities.toJson(line));
        }
      }
    } catch (WakeupException e) {
      // SIGTERM or Ctrl-C: the consumer closes (committing its offsets) on the way out.
    }
  }

  /** Wakes the polling thread on SIGTERM/Ctrl-C and waits until it has closed the consumer. */
  private static void closeOnShutdown(KafkaConsumer<?, ?> consumer) {
    Thread poller = Thread.currentThread();
    Runtime.getRuntime().addShutdownHook(new Thread(() -> {
      consumer.wakeup();
      try {
        poller.join();
      } catch (InterruptedException e) {
        Thread.currentThread().interrupt();
      }
    }));
  }

  /** The Python example's options. */
  private record Options(String bootstrap, Path schemas, List<String> topics, String group, Duration maxIdle) {
    static Options parse(String[] args) {
      String bootstrap = null;
      Path schemas = null;
      List<String> topics = new ArrayList<>();
      String group = "nowstream-java-example";
      Duration maxIdle = Duration.ZERO;
      for (int i = 0; i < args.length; i += 2) {
        if (i + 1 >= args.length) {
          throw new IllegalArgumentException(args[i] + " needs a value");
        }
        String value = args[i + 1];
        switch (args[i]) {
          case "--bootstrap" -> bootstrap = value;
          case "--schemas" -> schemas = Path.of(value);
          case "--topic" -> topics.add(value);
          case "--group" -> group = value;
          case "--max-idle" -> maxIdle = Duration.ofMillis(Math.round(Double.parseDouble(value) * 1000));
          default -> throw new IllegalArgumentException("unknown option " + args[i]);
        }
      }
      if (bootstrap == null || schemas == null || topics.isEmpty()) {
        throw new IllegalArgumentException("--bootstrap, --schemas and --topic are required");
      }
      return new Options(bootstrap, schemas, topics, group, maxIdle);
    }
  }
}
