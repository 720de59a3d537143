package dev.wahook.example;

import dev.wahook.v1.Delivery;
import dev.wahook.v1.EventServiceGrpc;
import dev.wahook.v1.SubscribeOptions;
import dev.wahook.v1.SubscribeRequest;
import dev.wahook.v1.SubscribeResponse;
import io.grpc.CallOptions;
import io.grpc.Channel;
import io.grpc.ClientCall;
import io.grpc.ClientInterceptor;
import io.grpc.ForwardingClientCall;
import io.grpc.ForwardingClientCallListener;
import io.grpc.Metadata;
import io.grpc.MethodDescriptor;
import io.grpc.Status;
import io.grpc.stub.ClientCallStreamObserver;
import io.grpc.stub.StreamObserver;
import java.time.Duration;
import java.util.EnumSet;
import java.util.Set;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.ExecutionException;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.RejectedExecutionException;
import java.util.concurrent.ScheduledExecutorService;
import java.util.concurrent.ScheduledFuture;
import java.util.concurrent.ThreadFactory;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.TimeoutException;
import java.util.function.Consumer;

/**
 * Runs a wahook consumer-group subscription: opens the Subscribe stream, hands each delivery to a
 * handler, acks what it handled, nacks what threw (with the error), and reconnects with
 * exponential backoff when the stream drops. Acks and nacks name each delivery's lease (its ack
 * id); leases whose handler runs long are extended before their deadline, and the server's
 * confirmations are counted ({@link #stats}). Copy it, with Leases.java, into a service.
 */
public final class Subscriber {

  /**
   * Handles one event. Returning acks it; throwing nacks it (the exception's message, cut to 1024
   * characters, is kept as the event's last error): the group gets it again, until its
   * max_delivery_attempts send it to the dead letters.
   */
  @FunctionalInterface
  public interface Handler {
    void handle(Delivery delivery) throws Exception;
  }

  // Errors a retry can outlive. INVALID_ARGUMENT, FAILED_PRECONDITION and the like answer a wrong
  // request: retrying would repeat them forever.
  private static final Set<Status.Code> RETRYABLE =
      EnumSet.of(
          Status.Code.UNAVAILABLE,
          Status.Code.INTERNAL,
          Status.Code.UNKNOWN,
          Status.Code.ABORTED,
          Status.Code.DEADLINE_EXCEEDED,
          Status.Code.RESOURCE_EXHAUSTED,
          Status.Code.CANCELLED);

  private final EventServiceGrpc.EventServiceStub stub;
  private final SubscribeOptions options;
  private final Handler handler;
  private final Consumer<String> log;
  private final Duration minBackoff = Duration.ofMillis(100);
  private final Duration maxBackoff = Duration.ofSeconds(10);
  private final Duration drainTimeout = Duration.ofSeconds(2);
  // How long a delivery's lease is kept extended while its handler runs; after it the event may go
  // to another subscriber.
  private final Duration maxExtension = Duration.ofHours(1);
  private final CompletableFuture<Void> stopRequested = new CompletableFuture<>();
  private volatile boolean opened;
  private final Leases.Counters counters = new Leases.Counters();
  private final ScheduledExecutorService timer =
      Executors.newSingleThreadScheduledExecutor(daemon("wahook-leases"));
  // Handles the batches, in order, of one stream after another: a slow handler does not hold up
  // reading the stream (each delivery's lease starts when it arrives).
  private final ExecutorService worker = Executors.newSingleThreadExecutor(daemon("wahook-handler"));

  public Subscriber(
      EventServiceGrpc.EventServiceStub stub,
      SubscribeOptions options,
      Handler handler,
      Consumer<String> log) {
    if (options.getConsumerGroup().isEmpty()) {
      throw new IllegalArgumentException("options.consumer_group is required");
    }
    this.stub = stub;
    this.options = options;
    this.handler = handler;
    this.log = log;
  }

  /** Asks {@link #run} to return after acking what was handled. Safe from any thread. */
  public void stop() {
    stopRequested.complete(null);
  }

  /**
   * Whether a stream has opened: the server sends its headers once the subscription is accepted.
   * False after a run that never reached the server.
   */
  public boolean opened() {
    return opened;
  }

  /** Whether {@link #stop} was called. */
  public boolean stopping() {
    return stopRequested.isDone();
  }

  /**
   * Subscribes until {@link #stop} is called; throws the status when the server rejects the
   * subscription with a code retrying cannot fix.
   */
  public void run() throws InterruptedException {
    try {
      subscribe();
    } finally {
      timer.shutdownNow();
      worker.shutdown();
    }
  }

  private void subscribe() throws InterruptedException {
    Duration backoff = minBackoff;
    while (!stopping()) {
      Session session = new Session();
      Status ended = session.run();
      if (stopping()) {
        return;
      }
      if (!RETRYABLE.contains(ended.getCode())) {
        throw ended.asRuntimeException();
      }
      if (session.delivered) {
        backoff = minBackoff;
      }
      log.accept(
          "wahook: stream ended ("
              + ended.getCode()
              + ": "
              + ended.getDescription()
              + "); reconnecting in "
              + backoff.toMillis()
              + " ms");
      try {
        stopRequested.get(backoff.toMillis(), TimeUnit.MILLISECONDS);
        return;
      } catch (TimeoutException e) {
        backoff = backoff.multipliedBy(2).compareTo(maxBackoff) > 0 ? maxBackoff : backoff.multipliedBy(2);
      } catch (ExecutionException e) {
        return;
      }
    }
  }

  /** Sets {@link #opened} when a call's response headers arrive (a refusal sends none). */
  private final class SeeHeaders implements ClientInterceptor {
    @Override
    public <Q, R> ClientCall<Q, R> interceptCall(
        MethodDescriptor<Q, R> method, CallOptions callOptions, Channel next) {
      return new ForwardingClientCall.SimpleForwardingClientCall<>(next.newCall(method, callOptions)) {
        @Override
        public void start(Listener<R> listener, Metadata headers) {
          super.start(
              new ForwardingClientCallListener.SimpleForwardingClientCallListener<>(listener) {
                @Override
                public void onHeaders(Metadata responseHeaders) {
                  opened = true;
                  super.onHeaders(responseHeaders);
                }
              },
              headers);
        }
      };
    }
  }

  /** What the server confirmed so far, over every stream. */
  public Leases.Stats stats() {
    return counters.snapshot();
  }

  /** The options sent: max_receive_bytes defaults to the limit the call is opened with. */
  private SubscribeOptions sentOptions() {
    return options.getMaxReceiveBytes() != 0
        ? options
        : options.toBuilder().setMaxReceiveBytes(Leases.MAX_RECEIVE_BYTES).build();
  }

  /** The stream's ack deadline (the server's default when unset). */
  private static long ackDeadlineNanos(SubscribeOptions o) {
    long nanos =
        o.hasAckDeadline()
            ? o.getAckDeadline().getSeconds() * 1_000_000_000L + o.getAckDeadline().getNanos()
            : 0;
    return nanos > 0 ? nanos : Duration.ofSeconds(30).toNanos();
  }

  /**
   * One Subscribe stream, from the options request to its end. Responses are read on gRPC's thread
   * as they arrive (each delivery's lease starts then, and confirmations are counted); batches are
   * handled in order on the session's own thread, so a slow handler does not hold up the reading.
   */
  private final class Session implements StreamObserver<SubscribeResponse> {
    private final CompletableFuture<Status> ended = new CompletableFuture<>();
    // Held while a batch is handled and acked, so that stopping waits for the batch in hand.
    private final Object batchLock = new Object();
    // Held for every write: the handler thread acks, the timer extends, run() half-closes.
    private final Object writeLock = new Object();
    private final SubscribeOptions sent = sentOptions();
    private final long deadlineNanos = ackDeadlineNanos(sent);
    private final Leases leases = new Leases(deadlineNanos, maxExtension.toNanos(), counters);
    private ClientCallStreamObserver<SubscribeRequest> requests;
    private boolean halfClosed;
    volatile boolean delivered;

    Status run() throws InterruptedException {
      requests =
          (ClientCallStreamObserver<SubscribeRequest>)
              stub.withInterceptors(new SeeHeaders())
                  .withMaxInboundMessageSize((int) sent.getMaxReceiveBytes())
                  .subscribe(this);
      write(SubscribeRequest.newBuilder().setOptions(sent).build());
      long every = deadlineNanos / 4;
      ScheduledFuture<?> extender =
          timer.scheduleAtFixedRate(this::extend, every, every, TimeUnit.NANOSECONDS);
      try {
        CompletableFuture.anyOf(ended, stopRequested).join();
        if (ended.isDone()) {
          return ended.join();
        }
        return drain(extender);
      } finally {
        extender.cancel(false);
      }
    }

    /**
     * Stopping: wait for the batch in hand to be acked and for the server to confirm those acks,
     * half-close, then give the server a moment to end the stream, rather than cutting the
     * connection under them.
     */
    private Status drain(ScheduledFuture<?> extender) throws InterruptedException {
      long until = System.nanoTime() + drainTimeout.toNanos();
      synchronized (batchLock) {
        // stopping() is set: no batch starts after this one.
      }
      try {
        CompletableFuture.anyOf(leases.whenSettled(), ended)
            .get(Math.max(0, until - System.nanoTime()), TimeUnit.NANOSECONDS);
      } catch (TimeoutException | ExecutionException e) {
        // unconfirmed: half-close anyway
      }
      extender.cancel(false);
      synchronized (writeLock) {
        halfClosed = true;
        requests.onCompleted();
      }
      try {
        return ended.get(Math.max(0, until - System.nanoTime()), TimeUnit.NANOSECONDS);
      } catch (TimeoutException | ExecutionException e) {
        requests.cancel("subscriber stopping", null);
        return Status.CANCELLED;
      }
    }

    /** Sends unless half-closed; false when it was not sent. */
    private boolean write(SubscribeRequest req) {
      synchronized (writeLock) {
        if (halfClosed || ended.isDone()) {
          return false;
        }
        requests.onNext(req);
        return true;
      }
    }

    private void extend() {
      SubscribeRequest req = leases.extensions(System.nanoTime());
      if (req != null) {
        write(req);
      }
    }

    @Override
    public void onNext(SubscribeResponse response) {
      int expired = leases.confirm(response.getConfirmation());
      if (expired > 0) {
        log.accept(
            "wahook: "
                + expired
                + " acks or nacks came after their lease ended; those events are delivered again");
      }
      if (response.getDeliveriesCount() > 0) {
        delivered = true;
        leases.received(response.getDeliveriesList(), System.nanoTime());
        try {
          worker.execute(() -> handle(response));
        } catch (RejectedExecutionException e) {
          // The session ended: not handled, not acked, the group gets them again.
        }
      }
    }

    private void handle(SubscribeResponse response) {
      synchronized (batchLock) {
        SubscribeRequest.Builder answers = SubscribeRequest.newBuilder();
        for (Delivery d : response.getDeliveriesList()) {
          if (stopping() || ended.isDone()) {
            break; // not handled, not acked: the group gets these again
          }
          Exception failure = null;
          try {
            handler.handle(d);
          } catch (Exception e) {
            log.accept("wahook: handler failed for sequence " + d.getEvent().getSequence() + ": " + e);
            failure = e;
          }
          leases.answer(answers, d, failure);
        }
        // One request acks the whole batch: fewer messages, same guarantee.
        if (answers.getAckIdsCount() + answers.getAckSequencesCount() + answers.getNacksCount() > 0) {
          SubscribeRequest req = answers.build();
          if (!write(req)) {
            leases.unsent(req);
          }
        }
      }
    }

    @Override
    public void onError(Throwable t) {
      ended.complete(Status.fromThrowable(t));
    }

    @Override
    public void onCompleted() {
      ended.complete(Status.UNAVAILABLE.withDescription("server ended the stream"));
    }
  }

  private static ThreadFactory daemon(String name) {
    return r -> {
      Thread t = new Thread(r, name);
      t.setDaemon(true);
      return t;
    };
  }
}
