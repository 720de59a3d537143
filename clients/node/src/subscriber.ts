// Runs a wahook consumer-group subscription: opens the Subscribe stream, hands
// each delivery to a handler, acks what it handled, nacks what threw (with the
// error), and reconnects with exponential backoff when the stream drops. Acks
// and nacks name each delivery's lease (its ack id); leases whose handler runs
// long are extended before their deadline, and the server's confirmations are
// counted (stats). Copy it into a service, or import it.
import { status as Code, type ServiceError, type StatusObject } from "@grpc/grpc-js";

import {
  type Delivery,
  type EventServiceClient,
  type SubscribeOptions,
  SubscribeRequest,
  type SubscribeResponse,
} from "../gen/wahook/v1/service";
import { ackDeadlineMs, Leases, MAX_RECEIVE_BYTES, type Stats } from "./leases";

export { CHANNEL_OPTIONS, MAX_RECEIVE_BYTES, type Stats } from "./leases";

/**
 * Handles one event. Resolving acks it; throwing nacks it (the error's message,
 * cut to 1024 characters, is kept as the event's last error): it is delivered
 * again, until the group's max_delivery_attempts send it to the dead letters.
 */
export type Handler = (delivery: Delivery) => Promise<void> | void;

export interface SubscriberConfig {
  /** Created with CHANNEL_OPTIONS (the receive limit sent as options.maxReceiveBytes). */
  client: EventServiceClient;
  options: SubscribeOptions;
  handler: Handler;
  /** Receives one line per reconnect. */
  log?: (line: string) => void;
  /** Bounds of the wait between reconnects; doubles per failure, resets once a stream delivers. */
  minBackoffMs?: number;
  maxBackoffMs?: number;
  /** How long stop() waits for the server to confirm the final acks and end the stream. */
  drainTimeoutMs?: number;
  /**
   * Called each time a stream opens: the server sends its headers once the
   * subscription is accepted. A run that never called it never reached the server.
   */
  onOpen?: () => void;
  /** How long a delivery's lease is kept extended while its handler runs (default 1 h). */
  maxExtensionMs?: number;
}

// Errors a retry can outlive. INVALID_ARGUMENT, FAILED_PRECONDITION and the
// like answer a wrong request: retrying would repeat them forever.
const RETRYABLE = new Set<Code>([
  Code.UNAVAILABLE,
  Code.INTERNAL,
  Code.UNKNOWN,
  Code.ABORTED,
  Code.DEADLINE_EXCEEDED,
  Code.RESOURCE_EXHAUSTED,
  Code.CANCELLED,
]);

/** The subscription was refused with a status that retrying cannot fix. */
export class SubscriptionError extends Error {
  constructor(readonly status: StatusObject) {
    super(`subscription rejected: ${Code[status.code]}: ${status.details}`);
  }
}

export class Subscriber {
  private stopping = false;
  private readonly stopped: Promise<void>;
  private resolveStopped!: () => void;
  /** What the server confirmed so far, over every stream. */
  readonly stats: Stats = { acked: 0, nacked: 0, extended: 0, expired: 0 };

  constructor(private readonly config: SubscriberConfig) {
    if (!config.options.consumerGroup) {
      throw new Error("options.consumerGroup is required");
    }
    this.stopped = new Promise((resolve) => (this.resolveStopped = resolve));
  }

  /** Asks run() to resolve after acking what was handled. */
  stop(): void {
    this.stopping = true;
    this.resolveStopped();
  }

  /** Subscribes until stop(); rejects with SubscriptionError on a permanent refusal. */
  async run(): Promise<void> {
    const min = this.config.minBackoffMs ?? 100;
    const max = this.config.maxBackoffMs ?? 10_000;
    let backoff = min;
    while (!this.stopping) {
      const { status, delivered } = await this.session();
      if (this.stopping) {
        return;
      }
      if (!RETRYABLE.has(status.code)) {
        throw new SubscriptionError(status);
      }
      if (delivered) {
        backoff = min;
      }
      this.config.log?.(
        `wahook: stream ended (${Code[status.code]}: ${status.details}); reconnecting in ${backoff} ms`,
      );
      await Promise.race([this.stopped, sleep(backoff)]);
      backoff = Math.min(backoff * 2, max);
    }
  }

  /** One Subscribe stream, from the options request to its end. */
  private session(): Promise<{ status: StatusObject; delivered: boolean }> {
    const stream = this.config.client.subscribe();
    const options = {
      ...this.config.options,
      maxReceiveBytes: this.config.options.maxReceiveBytes || MAX_RECEIVE_BYTES,
    };
    const deadlineMs = ackDeadlineMs(options);
    const leases = new Leases(deadlineMs, this.config.maxExtensionMs ?? 3_600_000, this.stats);
    let delivered = false;
    let halfClosed = false;
    let done = false;
    const send = (req: SubscribeRequest): void => {
      if (halfClosed || done) {
        leases.unsent(req);
      } else {
        stream.write(req);
      }
    };
    // Leases with under half the deadline left are extended while held.
    const extender = setInterval(() => {
      const req = leases.extensions(Date.now());
      if (req !== undefined) {
        send(req);
      }
    }, deadlineMs / 4);
    // Batches are handled one after another, in order, even when the handler
    // is async and the next batch arrives meanwhile.
    let chain: Promise<void> = Promise.resolve();

    const handleBatch = async (response: SubscribeResponse): Promise<void> => {
      const req = SubscribeRequest.fromPartial({});
      for (const d of response.deliveries) {
        if (this.stopping) {
          break; // not handled, not acked: the group gets it again
        }
        try {
          await this.config.handler(d);
          leases.answer(req, d);
        } catch (error) {
          this.config.log?.(`wahook: handler failed for sequence ${d.event?.sequence}: ${String(error)}`);
          leases.answer(req, d, { error });
        }
      }
      // One request acks the whole batch: fewer messages, same guarantee.
      if (req.ackIds.length + req.ackSequences.length + req.nacks.length > 0) {
        send(req);
      }
    };

    let drainTimer: NodeJS.Timeout | undefined;
    let ended!: () => void;
    const endedPromise = new Promise<void>((resolve) => (ended = resolve));
    return new Promise((resolve) => {
      const finish = (status: StatusObject): void => {
        if (!done) {
          done = true;
          clearInterval(extender);
          clearTimeout(drainTimer);
          ended();
          resolve({ status, delivered });
        }
      };
      stream.on("metadata", () => this.config.onOpen?.());
      stream.on("data", (response: SubscribeResponse) => {
        const expired = leases.confirm(response.confirmation);
        if (expired > 0) {
          this.config.log?.(
            `wahook: ${expired} acks or nacks came after their lease ended; those events are delivered again`,
          );
        }
        if (response.deliveries.length > 0) {
          delivered = true;
          // The lease starts now, even if the handler is busy with an earlier batch.
          leases.received(response.deliveries, Date.now());
          chain = chain.then(() => handleBatch(response));
        }
      });
      // grpc-js emits "error" for every non-OK end; "status" follows it.
      stream.on("error", (err: ServiceError) => finish(err));
      stream.on("status", (status: StatusObject) =>
        finish(
          status.code === Code.OK
            ? { ...status, code: Code.UNAVAILABLE, details: "server ended the stream" }
            : status,
        ),
      );
      stream.write(SubscribeRequest.fromPartial({ options }));

      // Stopping: once the batches in hand are acked and the server confirmed
      // those acks, half-close, then give the server a moment to end the
      // stream, rather than cutting the connection under them.
      void this.stopped.then(async () => {
        await chain;
        const drain = new Promise<void>((resolve) => {
          drainTimer = setTimeout(resolve, this.config.drainTimeoutMs ?? 2000);
        });
        await Promise.race([leases.whenSettled(), drain, endedPromise]);
        if (done) {
          return;
        }
        halfClosed = true;
        clearInterval(extender);
        stream.end();
        await Promise.race([drain, endedPromise]);
        if (!done) {
          stream.cancel();
        }
      });
    });
  }
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}
