// The example a Node service copies: joins a wahook consumer group, switches
// on each event's typed payload, prints one JSON line per event, and acks it
// after handling (by the delivery's ack id; the Subscriber extends the lease of
// a handler that runs long).
//
//   node dist/src/subscribe.js --target 127.0.0.1:50051 --group billing --event-types message,status
//
// Exit codes: 0 done, 1 refused by the server, 3 never reached the server, 4
// fewer events than --count (clients/README.md).
import { parseArgs } from "node:util";

import { credentials, InterceptingCall, type Interceptor } from "@grpc/grpc-js";

import { EventType, eventTypeToJSON } from "../gen/wahook/v1/event";
import type { Media } from "../gen/wahook/v1/message";
import { type Delivery, EventServiceClient, SubscribeOptions } from "../gen/wahook/v1/service";
import { deliveryStateToJSON } from "../gen/wahook/v1/status";
import { CHANNEL_OPTIONS, type Stats, Subscriber, SubscriptionError } from "./subscriber";

/** The one-line summary printed per event; the same fields in every example client. */
type Line = Record<string, string | number>;

/**
 * Switches on the typed payload: this is where a service would route each
 * kind of event to its own code. TypeScript narrows `value` in each case.
 */
export function summarize(d: Delivery): Line {
  const ev = d.event!;
  const out: Line = {
    id: ev.id,
    sequence: ev.sequence,
    attempt: d.attempt,
    type: eventTypeToJSON(ev.type).replace(/^EVENT_TYPE_/, "").toLowerCase(),
  };
  const payload = ev.payload;
  switch (payload?.$case) {
    case "message": {
      const m = payload.value;
      Object.assign(out, { message_type: m.typeName, message_id: m.id, from: m.from });
      const c = m.content;
      switch (c?.$case) {
        case "text":
          out.text = c.value.body;
          break;
        case "interactive": {
          const r = c.value.reply;
          if (r?.$case === "buttonReply" || r?.$case === "listReply") {
            Object.assign(out, { reply_id: r.value.id, reply_title: r.value.title });
          } else if (r?.$case === "flowReply") {
            out.reply_title = r.value.name;
          }
          break;
        }
        case "button":
          Object.assign(out, { reply_id: c.value.payload, reply_title: c.value.text });
          break;
        case "image":
        case "audio":
        case "video":
        case "document":
        case "sticker":
          media(out, c.value);
          break;
        case "location":
          Object.assign(out, {
            latitude: c.value.latitude,
            longitude: c.value.longitude,
            location_name: c.value.name,
          });
          break;
        case "reaction":
          Object.assign(out, { emoji: c.value.emoji, reacted_to: c.value.messageId });
          break;
        default:
          break;
      }
      break;
    }
    case "status":
      Object.assign(out, {
        message_id: payload.value.id,
        recipient_id: payload.value.recipientId,
        status: deliveryStateToJSON(payload.value.state).replace(/^DELIVERY_STATE_/, "").toLowerCase(),
      });
      break;
    default:
      break;
  }
  // Like the other examples, leave out empty strings.
  for (const [k, v] of Object.entries(out)) {
    if (v === "") {
      delete out[k];
    }
  }
  return out;
}

function media(out: Line, m: Media): void {
  Object.assign(out, { media_id: m.id, mime_type: m.mimeType, caption: m.caption });
}

/**
 * Stands in for a handler that fails on some events (a poison event): their
 * nack carries the error, and once the group's max_delivery_attempts are used
 * up they wait in its dead letters.
 */
function refuser(types: string[]): (d: Delivery) => void {
  return (d) => {
    const p = d.event?.payload;
    if (p?.$case === "message" && p.value.typeName !== "" && types.includes(p.value.typeName)) {
      throw new Error(`message type ${p.value.typeName} refused (--fail-message-types)`);
    }
  };
}

/** What the server confirmed. An expired ack means the event comes again: handle idempotently. */
function logStats(st: Stats): void {
  console.error(
    `wahook: confirmed ${st.acked} acks, ${st.nacked} nacks, ${st.extended} lease extensions; ${st.expired} expired`,
  );
}

function split(s: string | undefined): string[] {
  return (s ?? "")
    .split(",")
    .map((p) => p.trim())
    .filter((p) => p !== "");
}

async function main(): Promise<number> {
  const { values } = parseArgs({
    options: {
      target: { type: "string", default: process.env.WAHOOK_GRPC_TARGET || "127.0.0.1:50051" },
      group: { type: "string", default: process.env.WAHOOK_GROUP || "node-example" },
      token: { type: "string", default: process.env.WAHOOK_GRPC_TOKEN || "" },
      "event-types": { type: "string" },
      "message-types": { type: "string" },
      from: { type: "string", default: "earliest" },
      count: { type: "string", default: "0" },
      "idle-exit": { type: "string", default: "0" },
      "max-delivery-attempts": { type: "string", default: "0" },
      "fail-message-types": { type: "string" },
    },
  });
  const count = Number(values.count);
  const idleExitMs = Number(values["idle-exit"]) * 1000;
  if (values.from !== "earliest" && values.from !== "latest") {
    throw new Error("--from must be earliest or latest");
  }
  const options = SubscribeOptions.fromPartial({
    consumerGroup: values.group!,
    maxDeliveryAttempts: Number(values["max-delivery-attempts"]),
    consumerName: "node-example",
    start: {
      position:
        values.from === "latest" ? { $case: "latest", value: true } : { $case: "earliest", value: true },
    },
    filter: {
      eventTypes: split(values["event-types"]).map((t) => {
        const v = EventType[`EVENT_TYPE_${t.toUpperCase()}` as keyof typeof EventType];
        if (v === undefined) {
          throw new Error(`unknown event type ${t}`);
        }
        return v;
      }),
      messageTypes: split(values["message-types"]),
    },
  });
  const refused = refuser(split(values["fail-message-types"]));

  // Plaintext: the sidecar's gRPC port listens on loopback next to the
  // service. Use credentials.createSsl() when it is reached over a network.
  // The sidecar's bearer token (env WAHOOK_GRPC_TOKEN), when it asks for one.
  const bearer: Interceptor = (options, nextCall) =>
    new InterceptingCall(nextCall(options), {
      start: (metadata, listener, next) => {
        metadata.set("authorization", `Bearer ${values.token}`);
        next(metadata, listener);
      },
    });
  const client = new EventServiceClient(values.target!, credentials.createInsecure(), {
    ...CHANNEL_OPTIONS,
    interceptors: values.token ? [bearer] : [],
  });
  let handled = 0;
  let opened = false;
  let idle: NodeJS.Timeout | undefined;
  const armIdle = (): void => {
    if (idleExitMs > 0) {
      clearTimeout(idle);
      idle = setTimeout(() => subscriber.stop(), idleExitMs);
    }
  };
  const subscriber: Subscriber = new Subscriber({
    client,
    options,
    log: (line) => console.error(line),
    onOpen: () => (opened = true),
    handler: (d) => {
      process.stdout.write(`${JSON.stringify(summarize(d))}\n`);
      armIdle();
      refused(d);
      handled += 1;
      if (count > 0 && handled >= count) {
        subscriber.stop(); // run() acks this batch, then resolves
      }
    },
  });
  for (const sig of ["SIGINT", "SIGTERM"] as const) {
    process.on(sig, () => subscriber.stop());
  }
  armIdle();
  try {
    await subscriber.run();
    if (!opened) {
      console.error(`wahook: never connected to ${values.target}`);
      return 3;
    }
    if (count > 0 && handled < count) {
      console.error(`wahook: ${handled} of --count ${count} events`);
      return 4;
    }
    return 0;
  } catch (err) {
    if (err instanceof SubscriptionError) {
      console.error(`wahook: ${err.message}`);
      return 1;
    }
    throw err;
  } finally {
    clearTimeout(idle);
    client.close();
    logStats(subscriber.stats);
  }
}

if (require.main === module) {
  main().then((code) => {
    process.exitCode = code;
  });
}
