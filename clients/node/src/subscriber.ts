// Runs a wahook consumer-group subscription: opens the Subscribe stream, hands
// each delivery to a handler, acks what it handled, nacks what threw, and
// reconnects with exponential backoff when the stream drops. Copy it into a
// service, or import it.
import { status as Code, type ServiceError, type StatusObject } from "@grpc/grpc-js";

import {
  type Delivery,
  type EventServiceClient,
  type SubscribeOptions,
  type SubscribeRequest,
  type SubscribeResponse,
} from "../gen/wahook/v1/service";

/** Handles one event. Resolving acks it; throwing nacks it (delivered again). */
export type Handler = (delivery: Delivery) => Promise<void> | void;

export interface SubscriberConfig {
  client: EventServiceClient;
  options: SubscribeOptions;
  handler: Handler;
  /** Receives one line per reconnect. */
  log?: (line: string) => void;
  /** Bounds of the wait between reconnects; doubles per failure, resets once a stream delivers. */
  minBackoffMs?: number;
  maxBackoffMs?: number;
  /** How long stop() waits for the server to end the stream after the final acks. */
  drainTimeoutMs?: number;
  /**
   * Called each time a stream opens: the server sends its headers once the
   * subscription is accepted. A run that never called it never reached the server.
   */
  onOpen?: () => void;
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
    let delivered = false;
    let halfClosed = false;
    // Batches are handled one after another, in order, even when the handler
    // is async and the next batch arrives meanwhile.
    let chain: Promise<void> = Promise.resolve();

    const handleBatch = async (response: SubscribeResponse): Promise<void> => {
      const ack: SubscribeRequest = {
        options: undefined,
        ackSequences: [],
        nacks: [],
        ackIds: [],
        modifyDeadlines: [],
      };
      for (const d of response.deliveries) {
        delivered = true;
        if (this.stopping) {
          break; // not handled, not acked: the group gets it again
        }
        const seq = d.event?.sequence ?? 0;
        try {
          await this.config.handler(d);
          ack.ackSequences.push(seq);
        } catch (err) {
          this.config.log?.(`wahook: handler failed for sequence ${seq}: ${String(err)}`);
          ack.nacks.push({ sequence: seq, delay: undefined, ackId: "", error: "" });
        }
      }
      // One request acks the whole batch: fewer messages, same guarantee.
      if (!halfClosed && ack.ackSequences.length + ack.nacks.length > 0) {
        stream.write(ack);
      }
    };

    return new Promise((resolve) => {
      let done = false;
      const finish = (status: StatusObject): void => {
        if (!done) {
          done = true;
          resolve({ status, delivered });
        }
      };
      stream.on("metadata", () => this.config.onOpen?.());
      stream.on("data", (response: SubscribeResponse) => {
        chain = chain.then(() => handleBatch(response));
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
      stream.write({
        options: this.config.options,
        ackSequences: [],
        nacks: [],
        ackIds: [],
        modifyDeadlines: [],
      });

      // Stopping: half-close once the batches in hand are acked, then give the
      // server a moment to process those acks and end the stream, rather than
      // cutting the connection under them.
      void this.stopped.then(async () => {
        await chain;
        if (done) {
          return;
        }
        halfClosed = true;
        stream.end();
        const timer = setTimeout(() => stream.cancel(), this.config.drainTimeoutMs ?? 2000);
        stream.on("status", () => clearTimeout(timer));
      });
    });
  }
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}
