// Tests of Subscriber against a scripted @grpc/grpc-js server on 127.0.0.1:0:
// batch acks and nacks, reconnect after a dropped stream, drain on stop, and a
// permanent refusal that is thrown, not retried.
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
import { Subscriber, SubscriptionError } from "./subscriber";

type Call = ServerDuplexStream<SubscribeRequest, SubscribeResponse>;
type Script = (call: Call, requests: AsyncIterator<SubscribeRequest>) => Promise<void>;

interface Fake {
  client: EventServiceClient;
  opened: () => number;
  close: () => void;
}

async function serve(scripts: Script[]): Promise<Fake> {
  let opened = 0;
  const server = new Server();
  server.addService(EventServiceService, {
    subscribe: (call: Call) => {
      const script = scripts[Math.min(opened, scripts.length - 1)];
      opened += 1;
      const requests = call[Symbol.asyncIterator]() as AsyncIterator<SubscribeRequest>;
      void requests.next().then(() => script(call, requests));
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
