// taskhub from Node.js: enqueue a task, watch it to its end, list tasks, and read
// a typed error -- over gRPC, with the protos in ../../protos loaded at run time.
//
//   npm install && node taskhub-example.js [--target 127.0.0.1:50051] [--index movies] [--documents 3]
//   node taskhub-example.js --type sendEmail --details '{"to": "ada@example.com"}' [--custom-metadata TEXT]
//
// With --type, it produces a task of a type registered at the server (`taskhub serve --task-types sendEmail`):
// named in `typeName`, its details any JSON object sent as JSON text (`details.customJson`), an index only
// if --index is given. JSON.parse reads integers past 2**53 rounded; the server keeps them as sent.
//
// Prints one JSON object per line on stdout ({"event": "enqueued" | "state" | "list" | "error", ...});
// tasks are rendered in Meilisearch's task shape, as the HTTP gateway and the Python client do.

import path from "node:path";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";

import grpc from "@grpc/grpc-js";
import protoLoader from "@grpc/proto-loader";
import protobuf from "protobufjs";

const here = path.dirname(fileURLToPath(import.meta.url));
const { values: args } = parseArgs({
  options: {
    target: { type: "string", default: process.env.TASKHUB_TARGET ?? "127.0.0.1:50051" },
    index: { type: "string" },
    documents: { type: "string", default: "3" },
    type: { type: "string" },
    details: { type: "string" },
    "custom-metadata": { type: "string" },
    "api-key": { type: "string", default: process.env.TASKHUB_API_KEY },
  },
});

// google/protobuf/{timestamp,duration,struct}.proto come bundled with protobufjs,
// which proto-loader uses, so only our own folder is on the include path.
const definition = protoLoader.loadSync("taskhub/v1/task_service.proto", {
  includeDirs: [path.join(here, "..", "..", "protos")],
  longs: Number, // uint64 counters fit in a double at any realistic size
  enums: String, // "TASK_STATUS_ENQUEUED" rather than 1
  defaults: true, // `uid: 0` is present; unset messages and `optional` fields stay absent
  oneofs: true, // `details.kind` names the set case
});
const v1 = grpc.loadPackageDefinition(definition).taskhub.v1;

// -- from protobuf objects to Meilisearch's JSON shapes -------------------------

const camel = (name) => name.toLowerCase().replace(/_([a-z])/g, (_, c) => c.toUpperCase());
const status = (value) => value.replace(/^TASK_STATUS_/, "").toLowerCase();
const type = (value) => camel(value.replace(/^TASK_TYPE_/, ""));

function time(ts) {
  if (!ts) return null;
  const micros = String(Math.floor(ts.nanos / 1000)).padStart(6, "0");
  return new Date(ts.seconds * 1000).toISOString().slice(0, 19) + `.${micros}Z`;
}

function duration(d) {
  if (!d) return null;
  const days = Math.floor(d.seconds / 86400);
  const seconds = d.seconds - days * 86400;
  let text = "P" + (days ? `${days}D` : "");
  if (seconds || d.nanos || !days) {
    const ms = d.nanos % 1e6 === 0;
    const fraction = d.nanos === 0 ? "" : ms ? `.${String(d.nanos / 1e6).padStart(3, "0")}` :
      d.nanos % 1e3 === 0 ? `.${String(d.nanos / 1e3).padStart(6, "0")}` : `.${String(d.nanos).padStart(9, "0")}`;
    text += `T${seconds}${fraction}S`;
  }
  return text;
}

function structValue(v) {
  switch (v.kind) {
    case "structValue": return struct(v.structValue);
    case "listValue": return (v.listValue.values ?? []).map(structValue);
    case "nullValue": return null;
    default: return v[v.kind];
  }
}
const struct = (s) => Object.fromEntries(Object.entries(s.fields ?? {}).map(([k, v]) => [k, structValue(v)]));

function details(d) {
  if (!d || !d.kind) return null;
  if (d.kind === "customJson") return JSON.parse(d.customJson); // a registered type's object, as given
  const sub = d[d.kind];
  if (d.kind === "settingsUpdate") return sub.settings ? struct(sub.settings) : {};
  // The proto's field order is Meilisearch's key order; an unset `optional` field is null.
  const fields = definition[`taskhub.v1.${messageOf(d.kind)}`].type.field;
  return Object.fromEntries(fields.map((f) => [f.name, f.name === "swaps" ? sub.swaps : sub[f.name] ?? null]));
}
const messageOf = (kind) => definition["taskhub.v1.TaskDetails"].type.field.find((f) => f.name === kind)
  .typeName.split(".").pop();

// Every task carries its type's name; a registered type's `type` enum is TASK_TYPE_UNSPECIFIED.
const typeOf = (t) => t.typeName || type(t.type);

const task = (t) => ({
  uid: t.uid,
  indexUid: t.indexUid ?? null,
  status: status(t.status),
  type: typeOf(t),
  canceledBy: t.canceledBy ?? null,
  details: details(t.details),
  error: t.error ? { message: t.error.message, code: t.error.code, type: t.error.type, link: t.error.link } : null,
  duration: duration(t.duration),
  enqueuedAt: time(t.enqueuedAt),
  startedAt: time(t.startedAt),
  finishedAt: time(t.finishedAt),
  // Fields beyond Meilisearch's come after its own, only when set.
  ...(t.batchUid !== undefined ? { batchUid: t.batchUid } : {}),
  ...(t.customMetadata !== undefined ? { customMetadata: t.customMetadata } : {}),
  ...(t.runAt ? { runAt: time(t.runAt) } : {}),
  ...(t.attempts !== undefined ? { attempts: t.attempts } : {}),
  ...(t.lastError
    ? { lastError: { message: t.lastError.message, code: t.lastError.code, type: t.lastError.type, link: t.lastError.link } }
    : {}),
  ...(t.requeuedFrom !== undefined ? { requeuedFrom: t.requeuedFrom } : {}),
  ...(t.worker !== undefined ? { worker: t.worker } : {}),
});

const summary = (s) => ({
  taskUid: s.taskUid, indexUid: s.indexUid ?? null, status: status(s.status), type: typeOf(s),
  enqueuedAt: time(s.enqueuedAt),
});

// -- errors: google.rpc.Status with google.rpc.ErrorInfo in the trailers ------

// Two small messages declared inline, so the example needs no googleapis checkout.
const rpc = protobuf.Root.fromJSON({
  nested: {
    Any: { fields: { typeUrl: { type: "string", id: 1 }, value: { type: "bytes", id: 2 } } },
    Status: { fields: { code: { type: "int32", id: 1 }, message: { type: "string", id: 2 },
                        details: { rule: "repeated", type: "Any", id: 3 } } },
    ErrorInfo: { fields: { reason: { type: "string", id: 1 }, domain: { type: "string", id: 2 } } },
  },
});

function taskhubError(err) {
  const [raw] = err.metadata?.get("grpc-status-details-bin") ?? [];
  const found = { grpcCode: grpc.status[err.code], reason: null, message: err.details };
  if (!raw) return found;
  for (const detail of rpc.lookupType("Status").decode(raw).details) {
    if (detail.typeUrl.endsWith("/google.rpc.ErrorInfo")) {
      const info = rpc.lookupType("ErrorInfo").decode(detail.value);
      if (info.domain === "taskhub") found.reason = info.reason.toLowerCase();
    }
  }
  return found;
}

// -- the calls ---------------------------------------------------------------

const client = new v1.TaskService(args.target, grpc.credentials.createInsecure());
const metadata = new grpc.Metadata();
if (args["api-key"]) metadata.set("authorization", `Bearer ${args["api-key"]}`);
const deadline = () => ({ deadline: Date.now() + 10_000 });
const unary = (method, request) => new Promise((resolve, reject) =>
  client[method](request, metadata, deadline(), (err, response) => (err ? reject(err) : resolve(response))));
const print = (event) => process.stdout.write(JSON.stringify(event) + "\n");

async function main() {
  const request = args.type
    ? { typeName: args.type, indexUid: args.index, details: { customJson: args.details ?? "{}" } }
    : {
        type: "TASK_TYPE_DOCUMENT_ADDITION_OR_UPDATE",
        indexUid: args.index ?? "movies",
        details: { documentAdditionOrUpdate: { receivedDocuments: Number(args.documents) } },
      };
  if (args["custom-metadata"] !== undefined) request.customMetadata = args["custom-metadata"];
  const enqueued = await unary("EnqueueTask", request);
  print({ event: "enqueued", task: summary(enqueued.task) });

  // The stream sends the current state at once, then every change, and ends after a terminal status.
  const stream = client.WatchTask({ uid: enqueued.task.taskUid }, metadata);
  for await (const response of stream) print({ event: "state", task: task(response.task) });

  const filter = args.type
    ? { types: { typeNames: [args.type] } }
    : { indexUids: { indexUids: [args.index ?? "movies"] } };
  const page = await unary("ListTasks", { filter, limit: 10 });
  print({ event: "list", page: { results: page.results.map(task), total: page.total, limit: page.limit,
                                 from: page.from ?? null, next: page.next ?? null } });

  try {
    await unary("GetTask", { uid: 4294967295 });
  } catch (err) {
    print({ event: "error", ...taskhubError(err) });
  }
}

main().then(() => client.close(), (err) => {
  process.stderr.write(`taskhub example: ${err.message}\n`);
  client.close();
  process.exitCode = 1;
});
