// The leases of one Subscribe stream: the deliveries received and not acked or
// nacked yet, extended while their handler runs, and the ack ids sent and not
// yet confirmed by the server (SubscribeResponse.confirmation).
import type { Duration } from "../gen/google/protobuf/duration";
import {
  type Delivery,
  type LeaseConfirmation,
  SubscribeRequest,
  type SubscribeOptions,
} from "../gen/wahook/v1/service";

/**
 * The largest message a subscriber accepts: the largest event a webhook body
 * under the sidecar's default 4 MiB cap can become (its typed text and its raw
 * JSON copy), plus room for framing: 2 x WAHOOK_MAX_BODY_BYTES + 1 MiB. Raise
 * it with the cap. The server dead-letters an event larger than what a
 * subscriber says it accepts (SubscribeOptions.maxReceiveBytes).
 */
export const MAX_RECEIVE_BYTES = 9 * 1024 * 1024;

/** Channel options for the EventServiceClient a Subscriber uses: the receive limit it announces. */
export const CHANNEL_OPTIONS = { "grpc.max_receive_message_length": MAX_RECEIVE_BYTES };

/** The longest nack error the server accepts, in characters. */
const MAX_NACK_ERROR = 1024;

/**
 * How long a failed event waits before it is delivered again: 1 s after the
 * first attempt, doubling per attempt up to 1 min, so that a passing outage (a
 * CRM answering 503) is ridden out instead of burning the group's
 * max_delivery_attempts in a second.
 */
export function nackDelayMs(attempt: number): number {
  return Math.min(1000 * 2 ** (Math.min(Math.max(attempt, 1), 8) - 1), 60_000);
}

/** Lease operations the server confirmed. */
export interface Stats {
  acked: number;
  nacked: number;
  extended: number;
  /**
   * Acks, nacks and extensions that came after their lease ended (the deadline
   * passed, the stream ended, the group was sought): ignored, the event comes again.
   */
  expired: number;
}

/** The stream's ack deadline in ms (the server's default when unset). */
export function ackDeadlineMs(options: SubscribeOptions): number {
  const d = options.ackDeadline;
  const ms = d ? d.seconds * 1000 + d.nanos / 1e6 : 0;
  return ms > 0 ? ms : 30_000;
}

function duration(ms: number): Duration {
  return { seconds: Math.floor(ms / 1000), nanos: Math.round(ms % 1000) * 1e6 };
}

/** The handler's error as a nack's reason, cut to what the server accepts. */
export function nackError(err: unknown): string {
  const text = err instanceof Error ? err.message : String(err);
  return Array.from(text).slice(0, MAX_NACK_ERROR).join("");
}

export class Leases {
  private readonly held = new Map<string, { received: number; due: number }>();
  private readonly unconfirmed = new Set<string>();
  private waiters: (() => void)[] = [];

  /**
   * deadlineMs: the stream's ack deadline (each extension asks for it again);
   * maxHoldMs: no extension past this long after receipt.
   */
  constructor(
    private readonly deadlineMs: number,
    private readonly maxHoldMs: number,
    private readonly stats: Stats,
  ) {}

  /**
   * Start holding a response's deliveries. The server's deadline began a little
   * earlier; extensions start well before it, so that does not matter.
   */
  received(deliveries: Delivery[], now: number): void {
    for (const d of deliveries) {
      if (d.ackId) {
        this.held.set(d.ackId, { received: now, due: now + this.deadlineMs });
      }
    }
  }

  /**
   * Add the ack (failure undefined) or nack of one handled delivery to req, by
   * ack id (by sequence for a server that gives none); stop extending it.
   */
  answer(req: SubscribeRequest, d: Delivery, failure?: { error: unknown }): void {
    const id = d.ackId;
    const seq = d.event?.sequence ?? 0;
    if (id) {
      this.held.delete(id);
      this.unconfirmed.add(id);
    }
    if (failure === undefined) {
      if (id) {
        req.ackIds.push(id);
      } else {
        req.ackSequences.push(seq);
      }
    } else {
      const error = nackError(failure.error);
      const delay = duration(nackDelayMs(d.attempt));
      req.nacks.push({ ackId: id, sequence: id ? 0 : seq, delay, error });
    }
  }

  /** A request that could not be sent: no confirmation will come for its ack ids. */
  unsent(req: SubscribeRequest): void {
    for (const id of [...req.ackIds, ...req.nacks.map((n) => n.ackId)]) {
      this.unconfirmed.delete(id);
    }
    this.settleIfDone();
  }

  /** A request extending every lease held with under half the ack deadline left, if any. */
  extensions(now: number): SubscribeRequest | undefined {
    const changes = [];
    for (const [id, h] of this.held) {
      if (h.due - now < this.deadlineMs / 2 && now - h.received < this.maxHoldMs) {
        changes.push({ ackId: id, deadline: duration(this.deadlineMs) });
        h.due = now + this.deadlineMs;
      }
    }
    return changes.length > 0 ? SubscribeRequest.fromPartial({ modifyDeadlines: changes }) : undefined;
  }

  /** Count a confirmation and forget what it settles; returns how many expired. */
  confirm(c: LeaseConfirmation | undefined): number {
    if (c === undefined) {
      return 0;
    }
    this.stats.acked += c.ackedIds.length;
    this.stats.nacked += c.nackedIds.length;
    this.stats.extended += c.modifiedIds.length;
    this.stats.expired += c.expiredIds.length;
    for (const id of [...c.ackedIds, ...c.nackedIds, ...c.expiredIds]) {
      this.unconfirmed.delete(id);
    }
    for (const id of c.expiredIds) {
      this.held.delete(id); // the event comes again; its handler's answer will expire too
    }
    this.settleIfDone();
    return c.expiredIds.length;
  }

  /** Resolves once every ack and nack sent so far is confirmed. */
  whenSettled(): Promise<void> {
    return new Promise((resolve) => {
      this.waiters.push(resolve);
      this.settleIfDone();
    });
  }

  private settleIfDone(): void {
    if (this.unconfirmed.size === 0) {
      const waiters = this.waiters;
      this.waiters = [];
      waiters.forEach((resolve) => resolve());
    }
  }
}
