package dev.wahook.example;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTimeoutPreemptively;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.wahook.v1.Delivery;
import dev.wahook.v1.Event;
import com.google.protobuf.Duration;
import dev.wahook.v1.EventServiceGrpc;
import dev.wahook.v1.LeaseConfirmation;
import dev.wahook.v1.Nack;
import dev.wahook.v1.SubscribeOptions;
import dev.wahook.v1.SubscribeRequest;
import dev.wahook.v1.SubscribeResponse;
import io.grpc.Grpc;
import io.grpc.InsecureChannelCredentials;
import io.grpc.InsecureServerCredentials;
import io.grpc.ManagedChannel;
import io.grpc.Server;
import io.grpc.Status;
import io.grpc.StatusRuntimeException;
import io.grpc.stub.StreamObserver;
import java.util.List;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.CopyOnWriteArrayList;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicBoolean;
import java.util.concurrent.atomic.AtomicInteger;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.Test;

/**
 * Subscriber against a scripted gRPC server on 127.0.0.1:0: batch acks and nacks (by ack id, with
 * the error), confirmations counted and awaited before the half-close, lease extension while a
 * handler runs, reconnect after a dropped stream, half-close after the last ack on stop, and a
 * permanent refusal thrown.
 */
class SubscriberTest {

  /** What a scripted stream does when the subscriber sends its n-th request (0: options). */
  private interface Script {
    void onRequest(int n, SubscribeRequest req, StreamObserver<SubscribeResponse> out);
  }

  private final List<Long> acks = new CopyOnWriteArrayList<>();
  private final List<Long> nacks = new CopyOnWriteArrayList<>();
  // By ack id: acks, nacks ("id: error") and deadline changes ("id: seconds").
  private final List<String> ackIds = new CopyOnWriteArrayList<>();
  private final List<String> nackIds = new CopyOnWriteArrayList<>();
  private final List<String> modified = new CopyOnWriteArrayList<>();
  private final List<SubscribeOptions> options = new CopyOnWriteArrayList<>();
  private final AtomicInteger opened = new AtomicInteger();
  private final AtomicBoolean halfClosed = new AtomicBoolean();
  private Server server;
  private ManagedChannel channel;

  private EventServiceGrpc.EventServiceStub serve(List<Script> scripts) throws Exception {
    server =
        Grpc.newServerBuilderForPort(0, InsecureServerCredentials.create())
            .addService(
                new EventServiceGrpc.EventServiceImplBase() {
                  @Override
                  public StreamObserver<SubscribeRequest> subscribe(
                      StreamObserver<SubscribeResponse> out) {
                    Script script = scripts.get(Math.min(opened.getAndIncrement(), scripts.size() - 1));
                    return new StreamObserver<>() {
                      private int n;

                      @Override
                      public void onNext(SubscribeRequest req) {
                        if (req.hasOptions()) {
                          options.add(req.getOptions());
                        }
                        acks.addAll(req.getAckSequencesList());
                        ackIds.addAll(req.getAckIdsList());
                        for (Nack x : req.getNacksList()) {
                          if (x.getAckId().isEmpty()) {
                            nacks.add(x.getSequence());
                          } else {
                            nackIds.add(
                                x.getAckId() + " after " + x.getDelay().getSeconds() + "s: " + x.getError());
                          }
                        }
                        req.getModifyDeadlinesList()
                            .forEach(m -> modified.add(m.getAckId() + ": " + m.getDeadline().getSeconds()));
                        script.onRequest(n++, req, out);
                      }

                      @Override
                      public void onError(Throwable t) {}

                      @Override
                      public void onCompleted() {
                        halfClosed.set(true);
                        out.onCompleted();
                      }
                    };
                  }
                })
            .build()
            .start();
    channel =
        Grpc.newChannelBuilderForAddress(
                "127.0.0.1", server.getPort(), InsecureChannelCredentials.create())
            .build();
    return EventServiceGrpc.newStub(channel);
  }

  @AfterEach
  void close() throws Exception {
    if (channel != null) {
      channel.shutdownNow().awaitTermination(5, TimeUnit.SECONDS);
    }
    if (server != null) {
      server.shutdownNow().awaitTermination(5, TimeUnit.SECONDS);
    }
  }

  private static SubscribeResponse deliveries(long... seqs) {
    SubscribeResponse.Builder b = SubscribeResponse.newBuilder();
    for (long s : seqs) {
      b.addDeliveries(
          Delivery.newBuilder().setAttempt(1).setEvent(Event.newBuilder().setId("evt_test").setSequence(s)));
    }
    return b.build();
  }

  private static SubscribeOptions group(String name) {
    return SubscribeOptions.newBuilder().setConsumerGroup(name).build();
  }

  @Test
  void acksNacksReconnectsAndHalfClosesOnStop() throws Exception {
    EventServiceGrpc.EventServiceStub stub =
        serve(
            List.of(
                // First stream: two events, one ack request back, then the server drops it.
                (n, req, out) -> {
                  if (n == 0) {
                    out.onNext(deliveries(1, 2));
                  } else {
                    out.onError(Status.UNAVAILABLE.withDescription("restarting").asRuntimeException());
                  }
                },
                // Second stream: one more event; the subscriber acks it and half-closes.
                (n, req, out) -> {
                  if (n == 0) {
                    out.onNext(deliveries(3));
                  }
                }));
    List<Long> handled = new CopyOnWriteArrayList<>();
    Subscriber[] self = new Subscriber[1];
    self[0] =
        new Subscriber(
            stub,
            group("g1"),
            d -> {
              long seq = d.getEvent().getSequence();
              handled.add(seq);
              if (seq == 2) {
                throw new IllegalStateException("not now"); // nacked
              }
              if (seq == 3) {
                self[0].stop(); // run() acks 3, half-closes and returns
              }
            },
            line -> {});
    assertTimeoutPreemptively(java.time.Duration.ofSeconds(20), () -> self[0].run());
    assertEquals(List.of(1L, 2L, 3L), handled);
    assertEquals(List.of(1L, 3L), acks);
    assertEquals(List.of(2L), nacks);
    assertEquals(2, opened.get());
    assertTrue(halfClosed.get(), "the subscriber half-closes after its last ack");
  }

  @Test
  void permanentRefusalIsThrownNotRetried() throws Exception {
    EventServiceGrpc.EventServiceStub stub =
        serve(
            List.of(
                (n, req, out) ->
                    out.onError(
                        Status.INVALID_ARGUMENT.withDescription("consumer_group: bad").asRuntimeException())));
    Subscriber s = new Subscriber(stub, group("g"), d -> {}, line -> {});
    StatusRuntimeException e =
        assertThrows(
            StatusRuntimeException.class, () -> assertTimeoutPreemptively(java.time.Duration.ofSeconds(20), s::run));
    assertEquals(Status.Code.INVALID_ARGUMENT, e.getStatus().getCode());
    assertEquals(1, opened.get());
  }

  /** Deliveries with ack ids ("a<seq>"), as a server with leases sends them. */
  private static SubscribeResponse leased(long... seqs) {
    SubscribeResponse.Builder b = deliveries(seqs).toBuilder();
    for (Delivery.Builder d : b.getDeliveriesBuilderList()) {
      d.setAckId("a" + d.getEvent().getSequence());
    }
    return b.build();
  }

  @Test
  void acksAndNacksByAckIdAndCountsConfirmations() throws Exception {
    List<String> logged = new CopyOnWriteArrayList<>();
    EventServiceGrpc.EventServiceStub stub =
        serve(
            List.of(
                (n, req, out) -> {
                  if (n == 0) {
                    out.onNext(leased(1, 2, 3));
                  } else {
                    // a1 took effect, a2 was nacked, a3's lease had ended (it comes again).
                    out.onNext(
                        SubscribeResponse.newBuilder()
                            .setConfirmation(
                                LeaseConfirmation.newBuilder()
                                    .addAckedIds("a1")
                                    .addNackedIds("a2")
                                    .addExpiredIds("a3"))
                            .build());
                  }
                }));
    Subscriber[] self = new Subscriber[1];
    self[0] =
        new Subscriber(
            stub,
            group("g1"),
            d -> {
              long seq = d.getEvent().getSequence();
              if (seq == 2) {
                throw new IllegalStateException("crm said 503 " + "é".repeat(2000));
              }
              if (seq == 3) {
                self[0].stop(); // run() acks, waits for the confirmation, half-closes
              }
            },
            logged::add);
    assertTimeoutPreemptively(java.time.Duration.ofSeconds(20), () -> self[0].run());
    assertEquals(List.of("a1", "a3"), ackIds);
    assertEquals(List.of(), acks);
    assertEquals(List.of("a2 after 1s: crm said 503 " + "é".repeat(1024 - "crm said 503 ".length())), nackIds);
    assertEquals(new Leases.Stats(1, 1, 0, 1), self[0].stats());
    assertTrue(
        logged.stream().anyMatch(l -> l.contains("1 acks or nacks came after their lease ended")),
        String.join("\n", logged));
    assertEquals(Leases.MAX_RECEIVE_BYTES, options.get(0).getMaxReceiveBytes());
    assertTrue(halfClosed.get(), "the subscriber half-closes after the confirmation");
  }

  @Test
  void extendsTheLeaseWhileTheHandlerRuns() throws Exception {
    CountDownLatch extended = new CountDownLatch(1);
    EventServiceGrpc.EventServiceStub stub =
        serve(
            List.of(
                (n, req, out) -> {
                  if (n == 0) {
                    out.onNext(leased(7));
                  } else if (req.getModifyDeadlinesCount() > 0) {
                    extended.countDown();
                  } else if (req.getAckIdsCount() > 0) {
                    out.onNext(
                        SubscribeResponse.newBuilder()
                            .setConfirmation(LeaseConfirmation.newBuilder().addAckedIds("a7"))
                            .build());
                  }
                }));
    SubscribeOptions opts =
        SubscribeOptions.newBuilder()
            .setConsumerGroup("g1")
            .setAckDeadline(Duration.newBuilder().setSeconds(1))
            .build();
    Subscriber[] self = new Subscriber[1];
    self[0] =
        new Subscriber(
            stub,
            opts,
            d -> {
              // A handler slower than the 1 s deadline: it returns once the server has seen the
              // lease extended.
              extended.await();
              self[0].stop();
            },
            line -> {});
    assertTimeoutPreemptively(java.time.Duration.ofSeconds(20), () -> self[0].run());
    assertEquals("a7: 1", modified.get(0));
    assertEquals(List.of("a7"), ackIds);
    assertEquals(1, self[0].stats().acked());
  }

  @Test
  void nackDelayDoublesPerAttemptUpToAMinute() {
    assertEquals(
        List.of(1L, 1L, 2L, 4L, 32L, 60L, 60L, 60L),
        java.util.stream.IntStream.of(0, 1, 2, 3, 6, 7, 8, 1000)
            .mapToObj(a -> Leases.nackDelay(a).getSeconds())
            .toList());
  }

  @Test
  void nackErrorIsCutTo1024CodePoints() {
    String error = Leases.nackError(new RuntimeException("😀".repeat(1500)));
    assertEquals(1024, error.codePointCount(0, error.length()));
  }

  @Test
  void groupIsRequired() {
    assertThrows(
        IllegalArgumentException.class,
        () -> new Subscriber(null, SubscribeOptions.getDefaultInstance(), d -> {}, line -> {}));
  }
}
