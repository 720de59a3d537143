package dev.wahook.example;

import com.google.protobuf.Duration;
import dev.wahook.v1.Delivery;
import dev.wahook.v1.LeaseConfirmation;
import dev.wahook.v1.ModifyDeadline;
import dev.wahook.v1.Nack;
import dev.wahook.v1.SubscribeRequest;
import java.util.HashMap;
import java.util.HashSet;
import java.util.List;
import java.util.Map;
import java.util.Set;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.atomic.AtomicLong;

/**
 * The leases of one Subscribe stream: the deliveries received and not acked or nacked yet,
 * extended while their handler runs, and the ack ids sent and not yet confirmed by the server
 * (SubscribeResponse.confirmation). Thread-safe: the gRPC thread receives, the handler thread
 * answers, a timer extends.
 */
final class Leases {

  /**
   * The largest message a subscriber accepts: the largest event a webhook body under the sidecar's
   * default 4 MiB cap can become (its typed text and its raw JSON copy), plus room for framing: 2 x
   * WAHOOK_MAX_BODY_BYTES + 1 MiB. Raise it with the cap. The server dead-letters an event larger
   * than what a subscriber says it accepts (SubscribeOptions.max_receive_bytes).
   */
  static final int MAX_RECEIVE_BYTES = 9 << 20;

  /** The longest nack error the server accepts, in characters. */
  static final int MAX_NACK_ERROR = 1024;

  /**
   * How long a failed event waits before it is delivered again: 1 s after the first attempt,
   * doubling per attempt up to 1 min, so that a passing outage (a CRM answering 503) is ridden out
   * instead of burning the group's max_delivery_attempts in a second.
   */
  static Duration nackDelay(int attempt) {
    int doublings = Math.min(Math.max(attempt, 1), 8) - 1;
    return Duration.newBuilder().setSeconds(Math.min(1L << doublings, 60L)).build();
  }

  /** Lease operations the server confirmed; {@code expired}: too late, the event comes again. */
  public record Stats(long acked, long nacked, long extended, long expired) {}

  /** Stats as the stream's threads update them. */
  static final class Counters {
    final AtomicLong acked = new AtomicLong();
    final AtomicLong nacked = new AtomicLong();
    final AtomicLong extended = new AtomicLong();
    final AtomicLong expired = new AtomicLong();

    Stats snapshot() {
      return new Stats(acked.get(), nacked.get(), extended.get(), expired.get());
    }
  }

  private record Lease(long receivedNanos, long dueNanos) {}

  private final long deadlineNanos;
  private final long maxHoldNanos;
  private final Counters counters;
  private final Map<String, Lease> held = new HashMap<>();
  private final Set<String> unconfirmed = new HashSet<>();
  private CompletableFuture<Void> settled;

  /**
   * @param deadlineNanos the stream's ack deadline; each extension asks for it again
   * @param maxHoldNanos no extension past this long after receipt
   */
  Leases(long deadlineNanos, long maxHoldNanos, Counters counters) {
    this.deadlineNanos = deadlineNanos;
    this.maxHoldNanos = maxHoldNanos;
    this.counters = counters;
  }

  /**
   * Starts holding a response's deliveries. The server's deadline began a little earlier; extensions
   * start well before it, so that does not matter.
   */
  synchronized void received(List<Delivery> deliveries, long nowNanos) {
    for (Delivery d : deliveries) {
      if (!d.getAckId().isEmpty()) {
        held.put(d.getAckId(), new Lease(nowNanos, nowNanos + deadlineNanos));
      }
    }
  }

  /**
   * Adds the ack ({@code failure} null) or nack of one handled delivery to {@code req}, by ack id (by
   * sequence for a server that gives none), and stops extending its lease.
   */
  synchronized void answer(SubscribeRequest.Builder req, Delivery d, Exception failure) {
    String id = d.getAckId();
    long seq = d.getEvent().getSequence();
    if (!id.isEmpty()) {
      held.remove(id);
      unconfirmed.add(id);
    }
    if (failure == null) {
      if (id.isEmpty()) {
        req.addAckSequences(seq);
      } else {
        req.addAckIds(id);
      }
    } else {
      Nack.Builder nack =
          Nack.newBuilder().setDelay(nackDelay(d.getAttempt())).setError(nackError(failure));
      req.addNacks(id.isEmpty() ? nack.setSequence(seq) : nack.setAckId(id));
    }
  }

  /** A request that could not be sent: no confirmation will come for its ack ids. */
  synchronized void unsent(SubscribeRequest req) {
    req.getAckIdsList().forEach(unconfirmed::remove);
    req.getNacksList().forEach(n -> unconfirmed.remove(n.getAckId()));
    settleIfDone();
  }

  /** A request extending every lease held with under half the ack deadline left, or null. */
  synchronized SubscribeRequest extensions(long nowNanos) {
    SubscribeRequest.Builder req = SubscribeRequest.newBuilder();
    Duration deadline =
        Duration.newBuilder()
            .setSeconds(deadlineNanos / 1_000_000_000L)
            .setNanos((int) (deadlineNanos % 1_000_000_000L))
            .build();
    for (Map.Entry<String, Lease> e : held.entrySet()) {
      Lease h = e.getValue();
      if (h.dueNanos() - nowNanos < deadlineNanos / 2 && nowNanos - h.receivedNanos() < maxHoldNanos) {
        req.addModifyDeadlines(ModifyDeadline.newBuilder().setAckId(e.getKey()).setDeadline(deadline));
        e.setValue(new Lease(h.receivedNanos(), nowNanos + deadlineNanos));
      }
    }
    return req.getModifyDeadlinesCount() > 0 ? req.build() : null;
  }

  /** Counts a confirmation and forgets what it settles; returns how many expired. */
  synchronized int confirm(LeaseConfirmation c) {
    counters.acked.addAndGet(c.getAckedIdsCount());
    counters.nacked.addAndGet(c.getNackedIdsCount());
    counters.extended.addAndGet(c.getModifiedIdsCount());
    counters.expired.addAndGet(c.getExpiredIdsCount());
    c.getAckedIdsList().forEach(unconfirmed::remove);
    c.getNackedIdsList().forEach(unconfirmed::remove);
    for (String id : c.getExpiredIdsList()) {
      unconfirmed.remove(id);
      held.remove(id); // the event comes again; its handler's answer will expire too
    }
    settleIfDone();
    return c.getExpiredIdsCount();
  }

  /** Completes once every ack and nack sent so far is confirmed. */
  synchronized CompletableFuture<Void> whenSettled() {
    if (settled == null) {
      settled = new CompletableFuture<>();
    }
    CompletableFuture<Void> f = settled;
    settleIfDone();
    return f;
  }

  private void settleIfDone() {
    if (unconfirmed.isEmpty() && settled != null) {
      settled.complete(null);
      settled = null;
    }
  }

  /** The handler's error as a nack's reason, cut to what the server accepts (code points). */
  static String nackError(Exception e) {
    String text = e.getMessage() != null ? e.getMessage() : e.toString();
    if (text.codePointCount(0, text.length()) <= MAX_NACK_ERROR) {
      return text;
    }
    return text.substring(0, text.offsetByCodePoints(0, MAX_NACK_ERROR));
  }
}
