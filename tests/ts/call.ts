// Calls a running taskhub over gRPC with the TypeScript stubs `buf generate` made in gen/ (protoc-gen-es),
// through Connect's gRPC transport for Node: enqueue, read back, list, and read a failed call's error code.
// Prints one JSON object per line. tests/test_ts_stubs.py generates gen/, compiles this and runs it.
import { BinaryReader } from "@bufbuild/protobuf/wire";
import { Code, ConnectError, createClient } from "@connectrpc/connect";
import { createGrpcTransport } from "@connectrpc/connect-node";

import { TaskService } from "./gen/ts/taskhub/v1/task_service_pb.js";
import { TaskStatus, TaskType } from "./gen/ts/taskhub/v1/task_pb.js";

const [target, indexUid] = process.argv.slice(2);
const transport = createGrpcTransport({ baseUrl: `http://${target}` });
const tasks = createClient(TaskService, transport);
const print = (event: object) =>
  process.stdout.write(JSON.stringify(event, (_, v) => (typeof v === "bigint" ? Number(v) : v)) + "\n");

// The public error code is the `reason` of the google.rpc.ErrorInfo detail (its field 1) of domain "taskhub".
function reason(err: ConnectError): string | undefined {
  for (const detail of err.details) {
    if ("type" in detail && detail.type === "google.rpc.ErrorInfo") {
      const reader = new BinaryReader(detail.value);
      while (reader.pos < reader.len) {
        const [field, wireType] = reader.tag();
        if (field === 1) return reader.string();
        reader.skip(wireType);
      }
    }
  }
  return undefined;
}

const { task: summary } = await tasks.enqueueTask({
  type: TaskType.DOCUMENT_ADDITION_OR_UPDATE,
  indexUid,
  details: { kind: { case: "documentAdditionOrUpdate", value: { receivedDocuments: 3n } } },
});
print({ event: "enqueued", uid: summary?.taskUid, status: TaskStatus[summary?.status ?? 0] });

const { task } = await tasks.getTask({ uid: summary?.taskUid });
const kind = task?.details?.kind;
print({ event: "get", uid: task?.uid, indexUid: task?.indexUid, type: TaskType[task?.type ?? 0],
        receivedDocuments: kind?.case === "documentAdditionOrUpdate" ? kind.value.receivedDocuments : null });

const page = await tasks.listTasks({ filter: { indexUids: { indexUids: [indexUid] } }, limit: 10 });
print({ event: "list", uids: page.results.map((t) => t.uid), total: page.total });

try {
  await tasks.getTask({ uid: 4294967295 });
} catch (err) {
  const error = ConnectError.from(err);
  print({ event: "error", code: Code[error.code], reason: reason(error), message: error.rawMessage });
}
