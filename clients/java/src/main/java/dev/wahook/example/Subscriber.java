package dev.wahook.example;

import dev.wahook.v1.Delivery;
import dev.wahook.v1.EventServiceGrpc;
import dev.wahook.v1.Nack;
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
import java.util.concurrent.TimeUnit;
import java.util.concurrent.TimeoutException;
import java.util.function.Consumer;

/**
 * Runs a wahook consumer-group subscription: opens the Subscribe stream, hands each delivery to a
 * handler, acks what it handled, nacks what threw, and reconnects with exponential backoff when
 * the stream drops. Copy it into a service.
 */
public final class Subscriber {

  /** Handles one event. Returning acks it; throwing nacks it (the group gets it again). */
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
  private final CompletableFuture<Void> stopRequested = new CompletableFuture<>();
  private volatile boolean opened;

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

  /** One Subscribe stream, from the options request to its end. */
  private final class Session implements StreamObserver<SubscribeResponse> {
    private final CompletableFuture<Status> ended = new CompletableFuture<>();
    private final Object sendLock = new Object();
    private ClientCallStreamObserver<SubscribeRequest> requests;
    private boolean halfClosed;
    volatile boolean delivered;

    Status run() throws InterruptedException {
      requests =
          (ClientCallStreamObserver<SubscribeRequest>)
              stub.withInterceptors(new SeeHeaders()).subscribe(this);
      synchronized (sendLock) {
        requests.onNext(SubscribeRequest.newBuilder().setOptions(options).build());
      }
      CompletableFuture.anyOf(ended, stopRequested).join();
      if (ended.isDone()) {
        return ended.join();
      }
      // Stopping: half-close after the batch in hand is acked, then give the server a moment to
      // process those acks and end the stream, rather than cutting the connection under them.
      synchronized (sendLock) {
        halfClosed = true;
        requests.onCompleted();
      }
      try {
        return ended.get(drainTimeout.toMillis(), TimeUnit.MILLISECONDS);
      } catch (TimeoutException | ExecutionException e) {
        requests.cancel("subscriber stopping", null);
        return Status.CANCELLED;
      }
    }

    @Override
    public void onNext(SubscribeResponse response) {
      // The whole batch is handled and acked under the lock, so a stop() in the middle cannot
      // half-close the stream before this batch's acks are sent.
      synchronized (sendLock) {
        if (halfClosed) {
          return; // not handled, not acked: the group gets these again
        }
        SubscribeRequest.Builder acks = SubscribeRequest.newBuilder();
        for (Delivery d : response.getDeliveriesList()) {
          delivered = true;
          if (stopping()) {
            break;
          }
          long seq = d.getEvent().getSequence();
          try {
            handler.handle(d);
            acks.addAckSequences(seq);
          } catch (Exception e) {
            log.accept("wahook: handler failed for sequence " + seq + ": " + e);
            acks.addNacks(Nack.newBuilder().setSequence(seq));
          }
        }
        // One request acks the whole batch: fewer messages, same guarantee.
        if (acks.getAckSequencesCount() + acks.getNacksCount() > 0) {
          requests.onNext(acks.build());
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
}
