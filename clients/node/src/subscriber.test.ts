// Tests of Subscriber against a scripted @grpc/grpc-js server on 127.0.0.1:0:
// batch acks and nacks (by ack id, with the error), confirmations counted and
// awaited before the half-close, lease extension while a handler runs,
// reconnect after a dropped stream, drain on stop, and a permanent refusal
// that is thrown, not retried.
import assert from "node:assert/strict";
import { test } from "node:test";

import {
  credentials,
  Server,
  ServerCredentials,
  status as Code,
  type ServerDuplexStream,
} from "@grpc/grpc-js";

import {
  EventServiceClient,
  EventServiceService,
  SubscribeOptions,
  type SubscribeRequest,
  SubscribeResponse,
} from "../gen/wahook/v1/service";
import { Leases, nackDelayMs, nackError } from "./leases";
import { MAX_RECEIVE_BYTES, Subscriber, SubscriptionError } from "./subscriber";

type Call = ServerDuplexStream<SubscribeRequest, SubscribeResponse>;
type Script = (call: Call, requests: AsyncIterator<SubscribeRequest>) => Promise<void>;

interface Fake {
  client: EventServiceClient;
  opened: () => number;
  /** The options of each stream's first request. */
  options: SubscribeOptions[];
  close: () => void;
}

async function serve(scripts: Script[]): Promise<Fake> {
  let opened = 0;
  const options: SubscribeOptions[] = [];
  const server = new Server();
  server.addService(EventServiceService, {
    subscribe: (call: Call) => {
      const script = scripts[Math.min(opened, scripts.length - 1)];
      opened += 1;
      const requests = call[Symbol.asyncIterator]() as AsyncIterator<SubscribeRequest>;
      void requests.next().then(({ value }) => {
        options.push(value.options);
        return script(call, requests);
      });
    },
    getEvent: () => undefined,
    listEvents: () => undefined,
    getMessageStatus: () => undefined,
    getConsumerGroup: () => undefined,
  });
  const port = await new Promise<number>((resolve, reject) =>
    server.bindAsync("127.0.0.1:0", ServerCredentials.createInsecure(), (err, p) =>
      err ? reject(err) : resolve(p),
    ),
  );
  const client = new EventServiceClient(`127.0.0.1:${port}`, credentials.createInsecure());
  return {
    client,
    opened: () => opened,
    options,
    close: () => {
      client.close();
      server.forceShutdown();
    },
  };
}

function deliveries(...seqs: number[]): SubscribeResponse {
  return SubscribeResponse.fromPartial({
    deliveries: seqs.map((s) => ({ event: { id: "evt_test", sequence: s }, attempt: 1 })),
  });
}

test("acks and nacks each batch, reconnects, drains on stop", async () => {
  const acks: number[] = [];
  const nacks: number[] = [];
  let halfClosed = false;
  const record = async (requests: AsyncIterator<SubscribeRequest>): Promise<void> => {
    const { value } = await requests.next();
    acks.push(...value.ackSequences);
    nacks.push(...value.nacks.map((n: { sequence: number }) => n.sequence));
  };
  const fake = await serve([
    async (call, requests) => {
      call.write(deliveries(1, 2));
      await record(requests);
      call.emit("error", { code: Code.UNAVAILABLE, details: "restarting" });
    },
    async (call, requests) => {
      call.write(deliveries(3));
      await record(requests);
      halfClosed = (await requests.next()).done === true;
      call.end();
    },
  ]);
  const handled: number[] = [];
  const sub: Subscriber = new Subscriber({
    client: fake.client,
    options: SubscribeOptions.fromPartial({ consumerGroup: "g1" }),
    minBackoffMs: 10,
    // This grpc-js test server sends no status after it sees the half-close, so the
    // subscriber ends the call itself after the drain timeout (wahook's server answers
    // at once). What matters here is that the last ack went out before the half-close.
    drainTimeoutMs: 200,
    handler: (d) => {
      const seq = d.event!.sequence;
      handled.push(seq);
      if (seq === 2) {
        throw new Error("not now");
      }
      if (seq === 3) {
        sub.stop();
      }
    },
  });
  try {
    await sub.run();
  } finally {
    fake.close();
  }
  assert.deepEqual(handled, [1, 2, 3]);
  assert.deepEqual(acks, [1, 3]);
  assert.deepEqual(nacks, [2]);
  assert.equal(fake.opened(), 2);
  assert.ok(halfClosed, "the subscriber half-closes after its last ack");
});

test("a permanent refusal is thrown, not retried", async () => {
  const fake = await serve([
    async (call) => {
      call.emit("error", { code: Code.INVALID_ARGUMENT, details: "consumer_group: bad" });
    },
  ]);
  const sub = new Subscriber({
    client: fake.client,
    options: SubscribeOptions.fromPartial({ consumerGroup: "g" }),
    handler: () => undefined,
  });
  try {
    await assert.rejects(sub.run(), (err: unknown) => {
      assert.ok(err instanceof SubscriptionError);
      assert.equal(err.status.code, Code.INVALID_ARGUMENT);
      return true;
    });
  } finally {
    fake.close();
  }
  assert.equal(fake.opened(), 1);
});

/** Deliveries with ack ids ("a<seq>"), as a server with leases sends them. */
function leased(...seqs: number[]): SubscribeResponse {
  const resp = deliveries(...seqs);
  resp.deliveries.forEach((d) => (d.ackId = `a${d.event!.sequence}`));
  return resp;
}

test("acks and nacks by ack id, counts confirmations and awaits them before the half-close", async () => {
  const sent: SubscribeRequest[] = [];
  let halfClosed = false;
  const fake = await serve([
    async (call, requests) => {
      call.write(leased(1, 2, 3));
      const { value } = await requests.next();
      sent.push(value);
      // a1 took effect, a2 was nacked, a3's lease had ended (it comes again).
      call.write(
        SubscribeResponse.fromPartial({
          confirmation: { ackedIds: ["a1"], nackedIds: ["a2"], expiredIds: ["a3"] },
        }),
      );
      halfClosed = (await requests.next()).done === true;
      call.end();
    },
  ]);
  const logged: string[] = [];
  const sub: Subscriber = new Subscriber({
    client: fake.client,
    options: SubscribeOptions.fromPartial({ consumerGroup: "g1" }),
    drainTimeoutMs: 200, // this grpc-js test server sends no status after the half-close
    log: (line) => logged.push(line),
    handler: (d) => {
      const seq = d.event!.sequence;
      if (seq === 2) {
        throw new Error(`crm said 503 ${"é".repeat(2000)}`);
      }
      if (seq === 3) {
        sub.stop(); // run() acks the batch, waits for its confirmation, resolves
      }
    },
  });
  try {
    await sub.run();
  } finally {
    fake.close();
  }
  assert.equal(sent.length, 1);
  assert.deepEqual(sent[0].ackIds, ["a1", "a3"]);
  assert.deepEqual(sent[0].ackSequences, []);
  assert.equal(sent[0].nacks.length, 1);
  assert.equal(sent[0].nacks[0].ackId, "a2");
  assert.equal(sent[0].nacks[0].sequence, 0);
  assert.deepEqual(sent[0].nacks[0].delay, { seconds: 1, nanos: 0 });
  assert.equal(sent[0].nacks[0].error, `crm said 503 ${"é".repeat(1024 - "crm said 503 ".length)}`);
  assert.deepEqual(sub.stats, { acked: 1, nacked: 1, extended: 0, expired: 1 });
  assert.ok(
    logged.some((l) => l.includes("1 acks or nacks came after their lease ended")),
    logged.join("\n"),
  );
  assert.equal(fake.options[0].maxReceiveBytes, MAX_RECEIVE_BYTES);
  assert.ok(halfClosed, "the subscriber half-closes after the confirmation");
});

test("extends the lease while the handler runs", async () => {
  const sent: SubscribeRequest[] = [];
  let extended!: () => void;
  const extendedNow = new Promise<void>((resolve) => (extended = resolve));
  const fake = await serve([
    async (call, requests) => {
      call.write(leased(7));
      sent.push((await requests.next()).value); // the extension: the handler still runs
      extended();
      sent.push((await requests.next()).value); // then the ack
      // Unconfirmed, the subscriber half-closes and cancels after its drain timeout.
      await requests.next().catch(() => undefined);
      call.end();
    },
  ]);
  const sub: Subscriber = new Subscriber({
    client: fake.client,
    options: SubscribeOptions.fromPartial({ consumerGroup: "g1", ackDeadline: { seconds: 1, nanos: 0 } }),
    drainTimeoutMs: 100, // the fake confirms nothing
    // A handler slower than the 1 s deadline: it returns once the server has
    // seen the lease extended.
    handler: async () => {
      await extendedNow;
      sub.stop();
    },
  });
  try {
    await sub.run();
  } finally {
    fake.close();
  }
  assert.deepEqual(
    sent[0].modifyDeadlines.map((m) => [m.ackId, m.deadline]),
    [["a7", { seconds: 1, nanos: 0 }]],
  );
  assert.deepEqual(sent[1].ackIds, ["a7"]);
});

test("leases are extended with under half the deadline left, up to the max extension", () => {
  const stats = { acked: 0, nacked: 0, extended: 0, expired: 0 };
  const leases = new Leases(10_000, 60_000, stats);
  leases.received(leased(1, 2).deliveries, 0);
  assert.equal(leases.extensions(4_000), undefined);
  assert.equal(leases.extensions(6_000)?.modifyDeadlines.length, 2);
  assert.equal(leases.extensions(61_000), undefined, "held past the max extension");
  assert.equal(nackError(new Error("x".repeat(5000))).length, 1024);
});

test("the nack delay doubles per attempt up to a minute", () => {
  assert.deepEqual(
    [0, 1, 2, 3, 6, 7, 8, 1000].map(nackDelayMs),
    [1000, 1000, 2000, 4000, 32_000, 60_000, 60_000, 60_000],
  );
});
