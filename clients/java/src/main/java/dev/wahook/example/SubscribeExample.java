package dev.wahook.example;

import dev.wahook.v1.Delivery;
import dev.wahook.v1.Event;
import dev.wahook.v1.EventFilter;
import dev.wahook.v1.EventServiceGrpc;
import dev.wahook.v1.EventType;
import dev.wahook.v1.Media;
import dev.wahook.v1.Message;
import dev.wahook.v1.StartPosition;
import dev.wahook.v1.SubscribeOptions;
import io.grpc.ManagedChannel;
import io.grpc.ManagedChannelBuilder;
import io.grpc.Metadata;
import io.grpc.StatusRuntimeException;
import io.grpc.stub.MetadataUtils;
import java.io.FileDescriptor;
import java.io.FileOutputStream;
import java.io.PrintStream;
import java.nio.charset.StandardCharsets;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Locale;
import java.util.Map;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.Executors;
import java.util.concurrent.ScheduledExecutorService;
import java.util.concurrent.ScheduledFuture;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicInteger;

/**
 * The example a Java service copies: joins a wahook consumer group, switches on each event's typed
 * payload, prints one JSON line per event, and acks it after handling (by the delivery's ack id; the
 * Subscriber extends the lease of a handler that runs long).
 *
 * <pre>
 * java -jar target/wahook-subscribe.jar --target 127.0.0.1:50051 --group billing --event-types message,status
 * </pre>
 *
 * <p>Exit codes: 0 done (a signal included), 1 refused by the server, 3 never reached the server, 4
 * fewer events than --count (clients/README.md).
 */
public final class SubscribeExample {

  // UTF-8 whatever the locale says: message text and reaction emoji are Unicode.
  private static final PrintStream OUT =
      new PrintStream(new FileOutputStream(FileDescriptor.out), true, StandardCharsets.UTF_8);

  private SubscribeExample() {}

  public static void main(String[] argv) throws Exception {
    Map<String, String> flags = parseFlags(argv);
    String target = flags.getOrDefault("target", env("WAHOOK_GRPC_TARGET", "127.0.0.1:50051"));
    String group = flags.getOrDefault("group", env("WAHOOK_GROUP", "java-example"));
    // The sidecar's bearer token, when it asks for one.
    String token = flags.getOrDefault("token", env("WAHOOK_GRPC_TOKEN", ""));
    int count = Integer.parseInt(flags.getOrDefault("count", "0"));
    double idleExit = Double.parseDouble(flags.getOrDefault("idle-exit", "0"));

    SubscribeOptions.Builder options =
        SubscribeOptions.newBuilder()
            .setConsumerGroup(group)
            .setConsumerName("java-example")
            .setMaxDeliveryAttempts(Integer.parseInt(flags.getOrDefault("max-delivery-attempts", "0")));
    List<String> failTypes = split(flags.get("fail-message-types"));
    switch (flags.getOrDefault("from", "earliest")) {
      case "earliest" -> options.setStart(StartPosition.newBuilder().setEarliest(true));
      case "latest" -> options.setStart(StartPosition.newBuilder().setLatest(true));
      default -> throw new IllegalArgumentException("--from must be earliest or latest");
    }
    EventFilter.Builder filter = EventFilter.newBuilder();
    for (String t : split(flags.get("event-types"))) {
      filter.addEventTypes(EventType.valueOf("EVENT_TYPE_" + t.toUpperCase(Locale.ROOT)));
    }
    filter.addAllMessageTypes(split(flags.get("message-types")));
    options.setFilter(filter);

    // Plaintext: the sidecar's gRPC port listens on loopback next to the service. Drop
    // usePlaintext() (TLS) when it is reached over a network.
    ManagedChannelBuilder<?> builder = ManagedChannelBuilder.forTarget(target).usePlaintext();
    if (!token.isEmpty()) {
      Metadata headers = new Metadata();
      headers.put(
          Metadata.Key.of("authorization", Metadata.ASCII_STRING_MARSHALLER), "Bearer " + token);
      builder.intercept(MetadataUtils.newAttachHeadersInterceptor(headers));
    }
    ManagedChannel channel = builder.build();
    ScheduledExecutorService timers = Executors.newSingleThreadScheduledExecutor();
    AtomicInteger handled = new AtomicInteger();
    Subscriber[] self = new Subscriber[1];
    ScheduledFuture<?>[] idle = new ScheduledFuture<?>[1];
    Runnable armIdle =
        () -> {
          if (idleExit > 0) {
            if (idle[0] != null) {
              idle[0].cancel(false);
            }
            idle[0] =
                timers.schedule(() -> self[0].stop(), (long) (idleExit * 1000), TimeUnit.MILLISECONDS);
          }
        };

    Subscriber subscriber =
        new Subscriber(
            EventServiceGrpc.newStub(channel),
            options.build(),
            delivery -> {
              OUT.println(toJson(summarize(delivery)));
              armIdle.run();
              refuse(failTypes, delivery);
              if (count > 0 && handled.incrementAndGet() >= count) {
                self[0].stop(); // run() acks this batch, then returns
              }
            },
            line -> System.err.println(line));
    self[0] = subscriber;
    armIdle.run();

    // SIGINT and SIGTERM run shutdown hooks: stop, let run() ack and return, then end with
    // main's exit code (halt: the JVM would otherwise report 128 + the signal, 143 for SIGTERM).
    AtomicInteger exitCode = new AtomicInteger();
    CountDownLatch finished = new CountDownLatch(1);
    Runtime.getRuntime()
        .addShutdownHook(
            new Thread(
                () -> {
                  subscriber.stop();
                  try {
                    if (finished.await(5, TimeUnit.SECONDS)) {
                      Runtime.getRuntime().halt(exitCode.get());
                    }
                  } catch (InterruptedException e) {
                    Thread.currentThread().interrupt();
                  }
                }));

    int code = 0;
    try {
      subscriber.run();
      if (!subscriber.opened()) {
        System.err.println("wahook: never connected to " + target);
        code = 3;
      } else if (count > 0 && handled.get() < count) {
        System.err.println("wahook: " + handled.get() + " of --count " + count + " events");
        code = 4;
      }
    } catch (StatusRuntimeException e) {
      System.err.println("wahook: subscription rejected: " + e.getStatus());
      code = 1;
    } finally {
      timers.shutdownNow();
      channel.shutdownNow().awaitTermination(2, TimeUnit.SECONDS);
      logStats(subscriber.stats());
    }
    exitCode.set(code);
    finished.countDown();
    System.exit(code);
  }

  /**
   * Stands in for a handler that fails on some events (a poison event): their nack carries the
   * error, and once the group's max_delivery_attempts are used up they wait in its dead letters.
   */
  private static void refuse(List<String> failTypes, Delivery delivery) {
    String type = delivery.getEvent().getMessage().getTypeName();
    if (!type.isEmpty() && failTypes.contains(type)) {
      throw new IllegalStateException("message type " + type + " refused (--fail-message-types)");
    }
  }

  /** What the server confirmed. An expired ack means the event comes again: handle idempotently. */
  private static void logStats(Leases.Stats st) {
    System.err.println(
        "wahook: confirmed "
            + st.acked()
            + " acks, "
            + st.nacked()
            + " nacks, "
            + st.extended()
            + " lease extensions; "
            + st.expired()
            + " expired");
  }

  /**
   * Switches on the typed payload: this is where a service would route each kind of event to its
   * own code. The fields are the ones every example client prints (clients/README.md).
   */
  static Map<String, Object> summarize(Delivery delivery) {
    Event ev = delivery.getEvent();
    Map<String, Object> out = new LinkedHashMap<>();
    out.put("id", ev.getId());
    out.put("sequence", ev.getSequence());
    out.put("attempt", delivery.getAttempt());
    out.put("type", ev.getType().name().substring("EVENT_TYPE_".length()).toLowerCase(Locale.ROOT));
    switch (ev.getPayloadCase()) {
      case MESSAGE -> {
        Message m = ev.getMessage();
        out.put("message_type", m.getTypeName());
        out.put("message_id", m.getId());
        out.put("from", m.getFrom());
        switch (m.getContentCase()) {
          case TEXT -> out.put("text", m.getText().getBody());
          case INTERACTIVE -> {
            switch (m.getInteractive().getReplyCase()) {
              case BUTTON_REPLY -> {
                out.put("reply_id", m.getInteractive().getButtonReply().getId());
                out.put("reply_title", m.getInteractive().getButtonReply().getTitle());
              }
              case LIST_REPLY -> {
                out.put("reply_id", m.getInteractive().getListReply().getId());
                out.put("reply_title", m.getInteractive().getListReply().getTitle());
              }
              case FLOW_REPLY -> out.put("reply_title", m.getInteractive().getFlowReply().getName());
              default -> {}
            }
          }
          case BUTTON -> {
            out.put("reply_id", m.getButton().getPayload());
            out.put("reply_title", m.getButton().getText());
          }
          case IMAGE -> media(out, m.getImage());
          case AUDIO -> media(out, m.getAudio());
          case VIDEO -> media(out, m.getVideo());
          case DOCUMENT -> media(out, m.getDocument());
          case STICKER -> media(out, m.getSticker());
          case LOCATION -> {
            out.put("latitude", m.getLocation().getLatitude());
            out.put("longitude", m.getLocation().getLongitude());
            out.put("location_name", m.getLocation().getName());
          }
          case REACTION -> {
            out.put("emoji", m.getReaction().getEmoji());
            out.put("reacted_to", m.getReaction().getMessageId());
          }
          default -> {}
        }
      }
      case STATUS -> {
        out.put("message_id", ev.getStatus().getId());
        out.put("recipient_id", ev.getStatus().getRecipientId());
        out.put(
            "status",
            ev.getStatus().getState().name().substring("DELIVERY_STATE_".length()).toLowerCase(Locale.ROOT));
      }
      default -> {}
    }
    // Like the other examples, leave out empty strings.
    out.values().removeIf(v -> v instanceof String s && s.isEmpty());
    return out;
  }

  private static void media(Map<String, Object> out, Media m) {
    out.put("media_id", m.getId());
    out.put("mime_type", m.getMimeType());
    out.put("caption", m.getCaption());
  }

  /** A flat JSON object of strings and numbers; enough for this output, no library needed. */
  static String toJson(Map<String, Object> fields) {
    StringBuilder b = new StringBuilder("{");
    for (Map.Entry<String, Object> e : fields.entrySet()) {
      if (b.length() > 1) {
        b.append(',');
      }
      quote(b, e.getKey()).append(':');
      if (e.getValue() instanceof Number n) {
        b.append(n);
      } else {
        quote(b, String.valueOf(e.getValue()));
      }
    }
    return b.append('}').toString();
  }

  private static StringBuilder quote(StringBuilder b, String s) {
    b.append('"');
    for (int i = 0; i < s.length(); i++) {
      char c = s.charAt(i);
      switch (c) {
        case '"' -> b.append("\\\"");
        case '\\' -> b.append("\\\\");
        case '\n' -> b.append("\\n");
        case '\r' -> b.append("\\r");
        case '\t' -> b.append("\\t");
        default -> {
          if (c < 0x20) {
            b.append(String.format("\\u%04x", (int) c));
          } else {
            b.append(c);
          }
        }
      }
    }
    return b.append('"');
  }

  /** --name value and --name=value; a bare --name is "true". */
  private static Map<String, String> parseFlags(String[] argv) {
    Map<String, String> flags = new LinkedHashMap<>();
    for (int i = 0; i < argv.length; i++) {
      String a = argv[i];
      if (!a.startsWith("--")) {
        throw new IllegalArgumentException("unexpected argument " + a);
      }
      String name = a.substring(2);
      int eq = name.indexOf('=');
      if (eq >= 0) {
        flags.put(name.substring(0, eq), name.substring(eq + 1));
      } else if (i + 1 < argv.length && !argv[i + 1].startsWith("--")) {
        flags.put(name, argv[++i]);
      } else {
        flags.put(name, "true");
      }
    }
    return flags;
  }

  private static List<String> split(String s) {
    List<String> out = new ArrayList<>();
    if (s != null) {
      for (String p : s.split(",")) {
        if (!p.isBlank()) {
          out.add(p.strip());
        }
      }
    }
    return out;
  }

  private static String env(String key, String def) {
    String v = System.getenv(key);
    return v == null || v.isEmpty() ? def : v;
  }
}
