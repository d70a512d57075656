// Drives a running taskhub gateway with the official Meilisearch JS SDK, unchanged,
// and asserts what the SDK parses. Run by tests/test_gateway_sdk.py:
//   node sdk.mjs http://127.0.0.1:PORT '{"commitSha": ..., "commitDate": ..., "pkgVersion": ...}'
// (the second argument: what GET /version must answer).
// The server runs its own tasks (dump, cancel, delete) in the background.
import assert from "node:assert/strict";
import { Meilisearch, MeilisearchApiError } from "meilisearch";

const host = process.argv[2];
const expectedVersion = JSON.parse(process.argv[3]);
const client = new Meilisearch({ host });
let checks = 0;

function check(actual, expected, what) {
  assert.deepEqual(actual, expected, what);
  checks += 1;
}

async function enqueue(body) {
  const response = await fetch(`${host}/tasks`, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify(body) });
  assert.equal(response.status, 202);
  return (await response.json()).taskUid;
}

async function apiError(promise) {
  try {
    await promise;
  } catch (error) {
    assert.ok(error instanceof MeilisearchApiError, `not an API error: ${error}`);
    return [error.response.status, error.cause.code, error.cause.type, error.cause.link];
  }
  assert.fail("the call succeeded");
}

const uids = (results) => results.results.map((task) => task.uid);

check(await client.health(), { status: "available" }, "health");
check(await client.isHealthy(), true, "isHealthy");

const movies = await enqueue({ type: "documentAdditionOrUpdate", indexUid: "movies", details: { receivedDocuments: 3 } });
const books = await enqueue({ type: "indexCreation", indexUid: "books", details: { primaryKey: "isbn" } });
const dump = await enqueue({ type: "dumpCreation" });
check([movies, books, dump], [0, 1, 2], "uids");

const dumped = await client.tasks.waitForTask(dump, { timeout: 10_000, interval: 20 });
check([dumped.status, dumped.type, dumped.indexUid], ["succeeded", "dumpCreation", null], "waitForTask");
assert.match(dumped.details.dumpUid, /^\d{8}-\d{9}$/);
assert.match(dumped.duration, /^PT\d+(\.\d{3}|\.\d{6}|\.\d{9})?S$/);
assert.ok(!Number.isNaN(Date.parse(dumped.finishedAt)));

const task = await client.tasks.getTask(movies);
check(
  { ...task, enqueuedAt: typeof task.enqueuedAt },
  {
    uid: 0, indexUid: "movies", status: "enqueued", type: "documentAdditionOrUpdate", canceledBy: null,
    details: { receivedDocuments: 3, indexedDocuments: null }, error: null, duration: null,
    enqueuedAt: "string", startedAt: null, finishedAt: null,
  },
  "getTask",
);

const all = await client.tasks.getTasks();
check([uids(all), all.total, all.limit, all.from, all.next], [[2, 1, 0], 3, 20, 2, null], "getTasks");
check(uids(await client.tasks.getTasks({ statuses: ["enqueued"] })), [1, 0], "statuses");
check(uids(await client.tasks.getTasks({ types: ["indexCreation", "dumpCreation"] })), [2, 1], "types");
check(uids(await client.tasks.getTasks({ indexUids: ["books"] })), [1], "indexUids");
check(uids(await client.tasks.getTasks({ uids: [0, 2] })), [2, 0], "uids");
check(uids(await client.tasks.getTasks({ reverse: true })), [0, 1, 2], "reverse");
const page = await client.tasks.getTasks({ limit: 1, from: 1 });
check([uids(page), page.total, page.limit, page.from, page.next], [[1], 3, 1, 1, 0], "limit/from");
// Bounds are exclusive, and the dates keep microseconds, so a task's own date is a sharp bound.
check(uids(await client.tasks.getTasks({ afterEnqueuedAt: task.enqueuedAt })), [2, 1], "afterEnqueuedAt");
check(uids(await client.tasks.getTasks({ beforeEnqueuedAt: all.results[1].enqueuedAt })), [0], "beforeEnqueuedAt");
// The SDK sends a Date as `toISOString()`, with milliseconds.
check(uids(await client.tasks.getTasks({ beforeEnqueuedAt: new Date("2100-01-01") })), [2, 1, 0], "a Date bound");
check(uids(await client.tasks.getTasks({ afterFinishedAt: "2000-01-01" })), [2], "afterFinishedAt");

const canceled = await client.tasks.cancelTasks({ uids: [movies], statuses: ["enqueued", "processing"] }).waitTask();
check(
  [canceled.status, canceled.type, canceled.details],
  ["succeeded", "taskCancelation", {
    matchedTasks: 1, canceledTasks: 1, originalFilter: "?uids=0&statuses=enqueued%2Cprocessing",
  }],
  "cancelTasks",
);
check(uids(await client.tasks.getTasks({ canceledBy: [canceled.uid] })), [movies], "canceledBy");

const deleted = await client.tasks.deleteTasks({ statuses: ["canceled"] }).waitTask();
check([deleted.type, deleted.details.deletedTasks], ["taskDeletion", 1], "deleteTasks");
const link = "https://docs.meilisearch.com/errors#";
check(await apiError(client.tasks.getTask(movies)), [404, "task_not_found", "invalid_request", `${link}task_not_found`],
  "deleted task");
check(await apiError(client.tasks.getTasks({ statuses: ["doggo"] })),
  [400, "invalid_task_statuses", "invalid_request", `${link}invalid_task_statuses`], "bad status");
check(await apiError(client.tasks.cancelTasks({})),
  [400, "missing_task_filters", "invalid_request", `${link}missing_task_filters`], "no filter");

// Dumps and snapshots: a summarized task each, run by the server itself.
const enqueuedDump = await client.createDump();
check(
  [enqueuedDump.indexUid, enqueuedDump.status, enqueuedDump.type],
  [null, "enqueued", "dumpCreation"],
  "createDump",
);
const dumpDone = await client.tasks.waitForTask(enqueuedDump.taskUid, { timeout: 10_000, interval: 20 });
check(dumpDone.status, "succeeded", "createDump ran");
assert.match(dumpDone.details.dumpUid, /^\d{8}-\d{9}$/);
const snapshotDone = await client.createSnapshot().waitTask({ timeout: 10_000, interval: 20 });
check([snapshotDone.type, snapshotDone.status, snapshotDone.details], ["snapshotCreation", "succeeded", null],
  "createSnapshot");

const version = await client.getVersion();
check(Object.keys(version), ["commitSha", "commitDate", "pkgVersion"], "getVersion keys");
check(version, expectedVersion, "getVersion");

// Batches: the server ran each of its tasks in a batch of its own (dump 0, cancelation 1, deletion 2, dump 3,
// snapshot 4); the cancelation's batch took the task it canceled, as Meilisearch's does.
const batches = await client.batches.getBatches();
check([uids(batches), batches.total, batches.limit, batches.from, batches.next], [[4, 3, 2, 1, 0], 5, 20, 4, null],
  "getBatches");
check(uids(await client.batches.getBatches({ types: ["taskCancelation"] })), [1], "getBatches types");
check(uids(await client.batches.getBatches({ uids: [canceled.uid] })), [1], "getBatches uids (task uids)");
check(uids(await client.batches.getBatches({ statuses: ["canceled"] })), [1], "getBatches statuses");
check(uids(await client.batches.getBatches({ batchUids: [1, 3] })), [3, 1], "getBatches batchUids");
const batchPage = await client.batches.getBatches({ limit: 1, from: 2 });
check([uids(batchPage), batchPage.from, batchPage.next], [[2], 2, 1], "getBatches limit/from");
check(uids(await client.batches.getBatches({ reverse: true })), [0, 1, 2, 3, 4], "getBatches reverse");
check(await client.batches.getBatches({ batchUids: [99999] }),
  { results: [], total: 0, limit: 20, from: null, next: null }, "no batch");
const batch = await client.batches.getBatch(1);
check(
  { ...batch, duration: typeof batch.duration, startedAt: typeof batch.startedAt, finishedAt: typeof batch.finishedAt },
  {
    uid: 1, progress: null,
    details: {
      receivedDocuments: 3, indexedDocuments: 0, matchedTasks: 1, canceledTasks: 1,
      originalFilter: "?uids=0&statuses=enqueued%2Cprocessing",
    },
    stats: {
      totalNbTasks: 2, status: { succeeded: 1, canceled: 1 },
      types: { documentAdditionOrUpdate: 1, taskCancelation: 1 }, indexUids: { movies: 1 },
    },
    duration: "string", startedAt: "string", finishedAt: "string",
    batchStrategy: `created batch containing only task with id ${canceled.uid} of type \`taskCancelation\``
      + " that cannot be batched with any other task.",
  },
  "getBatch",
);
check(await apiError(client.batches.getBatch(99999)),
  [404, "batch_not_found", "invalid_request", `${link}batch_not_found`], "unknown batch");
// Task 0 was deleted since: it left the batch, whose counts stay as they were.
check(uids(await client.tasks.getTasks({ batchUids: [1] })), [canceled.uid], "getTasks batchUids");
check((await client.tasks.getTask(canceled.uid)).batchUid, 1, "a task's batchUid");
check("batchUid" in (await client.tasks.getTask(books)), false, "a task never run has no batchUid");

console.log(JSON.stringify({ ok: true, checks }));
