// Drives the gateway's /dashboard in Debian's chromium with playwright-core (run by tests/test_dashboard_browser.py).
//
//   node dashboard.mjs open|key GATEWAY_URL ARTIFACTS_DIR [MASTER_KEY]
//
// `open` runs against a gateway without a master key, `key` against one with MASTER_KEY. When the page needs
// the test's side to act (move a task as a worker would, stop or start the gateway), this script prints
// `@@ {"op": ...}` on stdout and reads the answer, one JSON line, on stdin. It ends with `@@ {"done": ...}`.
import assert from 'node:assert/strict';
import path from 'node:path';
import readline from 'node:readline';
import { chromium } from 'playwright-core';

const [mode, url, artifacts, masterKey] = process.argv.slice(2);
const CHROMIUM = process.env.TASKHUB_CHROMIUM || '/usr/bin/chromium';
const ARGS = ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
  '--disable-background-networking', '--disable-component-update', '--disable-sync'];

const replies = readline.createInterface({ input: process.stdin })[Symbol.asyncIterator]();
async function ask(request) {
  process.stdout.write(`@@ ${JSON.stringify(request)}\n`);
  const { value, done } = await replies.next();
  if (done) throw new Error(`no answer to ${JSON.stringify(request)}`);
  const reply = JSON.parse(value);
  if (reply.error) throw new Error(`${request.op}: ${reply.error}`);
  return reply;
}

let checks = 0;
function step(text) {
  checks += 1;
  console.log(`ok ${checks} - ${text}`);
}

const origin = new URL(url).origin;
const outside = [];
const pageErrors = [];

function watch(page) {
  page.setDefaultTimeout(10_000);
  page.on('request', (request) => {
    const target = request.url();
    if (!target.startsWith(`${origin}/`) && !target.startsWith('data:')) outside.push(target);
  });
  page.on('pageerror', (error) => pageErrors.push(error.message));
}

// -- reading the page ---------------------------------------------------------------------------------------

const uids = (page) => page.$$eval('#task-rows tr', (rows) => rows.map((tr) => Number(tr.dataset.uid)));

async function waitForRows(page, expected) {
  await page.waitForFunction(
    (want) => JSON.stringify([...document.querySelectorAll('#task-rows tr')].map((tr) => Number(tr.dataset.uid)))
      === JSON.stringify(want),
    expected,
  ).catch(async (error) => {
    throw new Error(`rows ${JSON.stringify(await uids(page))}, expected ${JSON.stringify(expected)}: ${error.message}`);
  });
}

async function counts(page) {
  return page.$$eval('.count', (buttons) => Object.fromEntries(
    buttons.map((b) => [b.dataset.status, Number(b.querySelector('.n').textContent)]),
  ));
}

async function waitForCounts(page, expected) {
  const want = { enqueued: 0, processing: 0, succeeded: 0, failed: 0, canceled: 0, ...expected };
  await page.waitForFunction(
    (w) => [...document.querySelectorAll('.count')].every(
      (b) => b.querySelector('.n').textContent === String(w[b.dataset.status]),
    ),
    want,
  ).catch(async (error) => {
    throw new Error(`counts ${JSON.stringify(await counts(page))}, expected ${JSON.stringify(want)}: ${error.message}`);
  });
}

const activity = (page) => page.$eval('#activity', (figure) => ({ ...figure.dataset }));

async function waitForActivity(page, expected) {
  const want = { succeeded: '0', failed: '0', canceled: '0', seconds: '900', ...expected };
  await page.waitForFunction(
    (w) => Object.entries(w).every(([k, v]) => document.querySelector('#activity').dataset[k] === v),
    want,
  ).catch(async (error) => {
    throw new Error(`activity ${JSON.stringify(await activity(page))}, expected ${JSON.stringify(want)}: ${error.message}`);
  });
}

// Each lease as `worker:uids`, oldest first.
const leases = (page) => page.$$eval('#lease-rows tr', (rows) => rows.map((tr) => `${tr.dataset.worker}:${tr.dataset.uids}`));

async function waitForLeases(page, expected) {
  await page.waitForFunction(
    (want) => JSON.stringify([...document.querySelectorAll('#lease-rows tr')].map(
      (tr) => `${tr.dataset.worker}:${tr.dataset.uids}`,
    )) === JSON.stringify(want),
    expected,
  ).catch(async (error) => {
    throw new Error(`leases ${JSON.stringify(await leases(page))}, expected ${JSON.stringify(expected)}: ${error.message}`);
  });
}

async function waitForStatus(page, uid, status) {
  await page.waitForSelector(`#task-rows tr[data-uid="${uid}"][data-status="${status}"]`);
}

const closed = (page, id) => page.waitForFunction((i) => !document.getElementById(i).open, id);
// Focus comes back in the dialog's `close` event, a moment after it closed.
const focusBack = (page, selector) => page.waitForFunction((s) => document.activeElement === document.querySelector(s),
  selector);
const focusedInside = (page, selector) => page.evaluate((s) => Boolean(document.activeElement?.closest(s)), selector);

async function launch() {
  const browser = await chromium.launch({ executablePath: CHROMIUM, args: ARGS });
  // UTC and a fixed locale: the screenshot and the date inputs read the same on every machine.
  const context = await browser.newContext({ viewport: { width: 1280, height: 900 }, timezoneId: 'UTC', locale: 'en-GB' });
  return { browser, context };
}

// -- without a key ----------------------------------------------------------------------------------------------

async function withoutKey() {
  const { browser, context } = await launch();
  try {
    const page = await context.newPage();
    watch(page);
    await page.goto(`${url}/`);
    assert.equal(new URL(page.url()).pathname, '/dashboard');
    await page.waitForSelector('#live[data-state="live"]');
    step('/ leads to /dashboard, which follows the event stream');

    await waitForCounts(page, { enqueued: 2, processing: 1, succeeded: 2, failed: 1 });
    await waitForRows(page, [5, 4, 3, 2, 1, 0]);
    assert.match(await page.textContent('#summary'), /6 shown of 6 matching tasks/);
    step('counts by status and the task table');

    // Keyboard: the first Tab lands on the skip link, with a visible focus ring.
    await page.keyboard.press('Tab');
    const ring = await page.evaluate(() => {
      const el = document.activeElement;
      return { cls: el.className, outline: getComputedStyle(el).outlineStyle };
    });
    assert.deepEqual(ring, { cls: 'skip-link', outline: 'solid' });
    step('keyboard focus is visible');

    // The workers in view, from the server as the page loads: the chart is full at once (tasks 0 and 4
    // succeeded, 1 failed, all within the last 15 minutes), the lease of task 3, each index's tasks.
    await waitForActivity(page, { succeeded: '2', failed: '1' });
    const bars = await page.$$eval('#activity path', (paths) => Object.fromEntries(
      paths.map((p) => [p.dataset.status, (p.getAttribute('d').match(/M/g) ?? []).length]),
    ));
    assert.ok(bars.succeeded >= 1 && bars.succeeded <= 2 && bars.failed === 1 && bars.canceled === 0,
      `bars ${JSON.stringify(bars)}`);
    assert.match(await page.textContent('#activity figcaption'), /In the last 15 minutes: 2 succeeded, 1 failed, 0 canceled/);
    await waitForLeases(page, ['tests:3']);
    assert.match(await page.textContent('#lease-rows tr td[data-label="Deadline"]'), /\(in \d+ (s|min)\)/);
    const perIndex = await page.$$eval('#index-rows tr', (rows) => rows.map((tr) => [
      tr.dataset.index, ...[...tr.querySelectorAll('td[data-status]')].map((td) => Number(td.textContent)),
    ]));
    assert.deepEqual(perIndex, [['books', 0, 1, 0, 1, 0], ['movies', 2, 0, 1, 0, 0], ['', 0, 0, 1, 0, 0]]);
    await page.click('#lease-rows tr button.uid');
    await page.waitForSelector('#task-dialog[open]');
    await page.waitForFunction(() => /Worker\s*tests/.test(document.querySelector('#task-body').textContent)
      && document.querySelector('#task-title').textContent === 'Task #3');
    await page.keyboard.press('Escape');
    await closed(page, 'task-dialog');
    step('at load: the chart of tasks finished per second, the lease held and by whom, counts per index');

    // The detail of the failed task, in a modal dialog that takes focus and gives it back.
    const opener = '#task-rows tr[data-uid="1"] button.uid';
    await page.focus(opener);
    await page.keyboard.press('Enter');
    await page.waitForSelector('#task-dialog[open] #task-error');
    assert.equal(await page.textContent('#task-title'), 'Task #1');
    assert.match(await page.textContent('#task-error'), /Index `books` already exists\..*index_already_exists/s);
    assert.match(await page.textContent('#task-body'), /Timings.*Enqueued.*Started.*Finished.*Duration/s);
    assert.match(await page.textContent('#task-body'), /Worker\s*tests.*Batch\s*#1/s);
    assert.ok(await focusedInside(page, '#task-dialog'), 'focus moves into the dialog');
    await page.keyboard.press('Escape');
    await closed(page, 'task-dialog');
    await focusBack(page, opener);
    step('task detail: details, error and timings; Escape closes it and focus returns');

    await page.fill('#f-indexUids', 'movies');
    await page.click('#filters button[type="submit"]');
    await waitForRows(page, [5, 2, 0]);
    await waitForCounts(page, { enqueued: 2, succeeded: 1 });
    assert.equal(new URL(page.url()).search, '?indexUids=movies');
    step('an index filter narrows the table and the counts, and lands in the address bar');

    // Enqueued through the API: the row appears on its own, then follows the task.
    const response = await fetch(`${url}/tasks`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ type: 'documentAdditionOrUpdate', indexUid: 'movies', details: { receivedDocuments: 7 } }),
    });
    assert.equal(response.status, 202);
    const { taskUid } = await response.json();
    assert.equal(taskUid, 6);
    await waitForStatus(page, 6, 'enqueued');
    await waitForRows(page, [6, 5, 2, 0]);
    await waitForCounts(page, { enqueued: 3, succeeded: 1 });
    // A worker leases the head of the movies queue (2): 6 waits behind it, as in production.
    await ask({ op: 'start', uid: 2 });
    await waitForStatus(page, 2, 'processing');
    await waitForCounts(page, { enqueued: 2, processing: 1, succeeded: 1 });
    await waitForLeases(page, ['tests:3', 'tests:2']);
    step('a task enqueued through the API appears live, and a leased one changes status live, lease too');

    // The gateway goes away (the task finishes meanwhile) and comes back: a banner says so, nothing is missed.
    await ask({ op: 'stop-gateway', finish: 2 });
    await page.waitForSelector('#banner:not([hidden])');
    assert.match(await page.textContent('#banner'), /Live updates were interrupted\..*Reconnecting in/s);
    await page.waitForSelector('#live[data-state="reconnecting"]');
    step('a visible banner when the stream drops');
    await ask({ op: 'start-gateway' });
    await page.waitForSelector('#live[data-state="live"]', { timeout: 20_000 });
    assert.match(await page.textContent('#banner'), /Reconnected/);
    await waitForStatus(page, 2, 'succeeded');
    await waitForCounts(page, { enqueued: 2, succeeded: 2 });
    await waitForLeases(page, ['tests:3']);
    await waitForActivity(page, { succeeded: '3', failed: '1' });
    step('it reconnects by itself and catches up, the leases and the chart too');

    // Cancel through the UI: the confirmation shows how many tasks match first.
    await page.check('#f-statuses-enqueued');
    await page.click('#filters button[type="submit"]');
    await waitForRows(page, [6, 5]);
    await page.click('#cancel-matching');
    await page.waitForSelector('#confirm-dialog[open]');
    await page.waitForSelector('#confirm-yes:not([disabled])');
    assert.match(await page.textContent('#confirm-text'), /^2 tasks match this filter right now\./);
    assert.equal(await page.textContent('#confirm-filter'), '?indexUids=movies&statuses=enqueued');
    assert.equal(await page.textContent('#confirm-yes'), 'Cancel 2 tasks');
    assert.equal(await page.evaluate(() => document.activeElement.id), 'confirm-no', 'the safe choice has focus');
    await page.click('#confirm-yes');
    await closed(page, 'confirm-dialog');
    await focusBack(page, '#cancel-matching');
    await page.waitForSelector('#notice:not([hidden])');
    assert.match(await page.textContent('#notice'), /Task #7 \(taskCancelation\) is enqueued/);
    await waitForRows(page, []); // canceled: they leave the `enqueued` filter
    await page.waitForSelector('#empty:not([hidden])');
    await waitForCounts(page, { succeeded: 2, canceled: 2 });
    await waitForActivity(page, { succeeded: '4', failed: '1', canceled: '2' }); // with the cancelation itself
    step('cancel through the UI, after a confirmation with the count; the chart follows live');

    await page.click('.count[data-status="canceled"]');
    await waitForRows(page, [6, 5]);
    assert.equal(new URL(page.url()).search, '?indexUids=movies&statuses=canceled');
    await page.click('#task-rows tr[data-uid="5"] button.uid');
    await page.waitForSelector('#task-dialog[open]');
    await page.waitForFunction(() => /Canceled by\s*#7/.test(document.querySelector('#task-body').textContent));
    await page.click('#task-dialog [data-close]');
    step('a status count filters by that status; the detail names the cancelation');

    // Requeue through the UI: the confirmation counts the failed or canceled tasks; the originals stay.
    await page.click('#requeue-matching');
    await page.waitForSelector('#confirm-yes:not([disabled])');
    assert.match(await page.textContent('#confirm-text'), /^2 failed or canceled tasks match this filter right now\. Each will be enqueued again/);
    assert.equal(await page.textContent('#confirm-yes'), 'Requeue 2 tasks');
    await page.click('#confirm-yes');
    await page.waitForFunction(() => /Requeued 2 tasks as #8, #9\./.test(document.querySelector('#notice').textContent));
    await waitForRows(page, [6, 5]);
    await waitForCounts(page, { enqueued: 2, succeeded: 2, canceled: 2 });
    step('requeue through the UI, after a confirmation with the count');

    // Delete through the UI: the rows go as the deletion runs.
    await page.click('#delete-matching');
    await page.waitForSelector('#confirm-yes:not([disabled])');
    assert.match(await page.textContent('#confirm-text'), /^2 tasks match this filter right now\. Those finished/);
    assert.equal(await page.textContent('#confirm-yes'), 'Delete 2 tasks');
    await page.click('#confirm-yes');
    await page.waitForFunction(() => /Task #10 \(taskDeletion\) is enqueued/.test(document.querySelector('#notice').textContent));
    await waitForRows(page, []);
    await waitForCounts(page, { enqueued: 2, succeeded: 2 }); // in movies; the taskDeletion is global
    step('delete through the UI, after a confirmation with the count');

    // A bad filter: the API's own message.
    await page.fill('#f-uids', 'doggo');
    await page.click('#filters button[type="submit"]');
    await page.waitForSelector('#notice:not([hidden])[data-kind="error"]');
    await page.waitForFunction(() => document.querySelector('#notice-text').textContent.includes(
      'Invalid value in parameter `uids`: could not parse `doggo` as a positive integer (invalid_task_uids)'));
    step("the API's error messages are shown");

    await page.click('#clear-filters');
    await page.click('#notice-close');
    await waitForRows(page, [10, 9, 8, 7, 4, 3, 2, 1, 0]);
    await waitForCounts(page, { enqueued: 2, processing: 1, succeeded: 5, failed: 1 });
    await page.click('#task-rows tr[data-uid="8"] button.uid');
    await page.waitForSelector('#task-dialog[open]');
    await page.waitForFunction(() => /Requeued from\s*#5/.test(document.querySelector('#task-body').textContent));
    assert.ok(await page.isHidden('#task-requeue'), 'an enqueued task has no requeue button');
    await page.click('#task-dialog [data-close]');
    await page.click('#task-rows tr[data-uid="1"] button.uid');
    await page.waitForFunction(() => /Index `books` already exists/.test(document.querySelector('#task-body').textContent));
    assert.ok(await page.isVisible('#task-requeue'), 'a failed task has a requeue button');
    await page.click('#task-dialog [data-close]');
    step('a requeued task names its original; failed tasks offer a requeue');
    await page.waitForSelector('#banner', { state: 'hidden' });
    await page.screenshot({ path: path.join(artifacts, 'dashboard.png'), fullPage: true });

    await page.setViewportSize({ width: 390, height: 844 });
    const overflow = await page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
    assert.ok(overflow <= 0, `the page is ${overflow}px wider than a narrow screen`);
    assert.equal(await page.$eval('.task-table thead', (el) => getComputedStyle(el).display), 'none');
    await page.screenshot({ path: path.join(artifacts, 'dashboard-narrow.png'), fullPage: true });
    step('screenshots; on a narrow screen nothing overflows and rows become cards');

    await page.setViewportSize({ width: 1280, height: 900 });
    await page.click('#index-rows tr[data-index="books"] button');
    await waitForRows(page, [3, 1]);
    assert.equal(new URL(page.url()).search, '?indexUids=books');
    step('an index in the counts per index filters the table by it');
  } finally {
    await browser.close();
  }
}

// -- with a master key ----------------------------------------------------------------------------------------

async function withKey() {
  const { browser, context } = await launch();
  try {
    const page = await context.newPage();
    watch(page);
    await page.goto(`${url}/dashboard`);
    await page.waitForSelector('#key-dialog[open]');
    assert.match(await page.textContent('#key-reason'),
      /The Authorization header is missing\. It must use the bearer authorization method\./);
    assert.equal(await page.evaluate(() => document.activeElement.id), 'key-input');
    await page.waitForSelector('#live[data-state="off"]');
    step("the page asks for a key with the API's message");

    await page.fill('#key-input', 'not-the-key');
    await page.keyboard.press('Enter');
    await page.waitForFunction(() => document.querySelector('#key-dialog').open
      && document.querySelector('#key-reason').textContent.includes('The provided API key is invalid.'));
    step('a wrong key is refused, in the API\'s words');

    await page.fill('#key-input', masterKey);
    await page.keyboard.press('Enter');
    await closed(page, 'key-dialog');
    await waitForCounts(page, { enqueued: 2 });
    await waitForRows(page, [1, 0]);
    await page.waitForSelector('#live[data-state="live"]');
    assert.equal(await page.evaluate(() => sessionStorage.getItem('taskhub.apiKey')), masterKey);
    assert.equal(await page.evaluate(() => localStorage.length), 0);
    step('with the key: data, and the key kept in sessionStorage only');

    const response = await fetch(`${url}/tasks`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', authorization: `Bearer ${masterKey}` },
      body: JSON.stringify({ type: 'indexCreation', indexUid: 'books' }),
    });
    assert.equal(response.status, 202);
    await waitForRows(page, [2, 1, 0]);
    await waitForCounts(page, { enqueued: 3 });
    step('the event stream carries the key: a new task shows up live');

    await page.reload();
    await waitForRows(page, [2, 1, 0]);
    assert.equal(await page.evaluate(() => document.querySelector('#key-dialog').open), false);
    step('a reload in the same tab keeps the key');

    // A new browser session has no key; "Not now" leaves the API's message on the page.
    const other = await browser.newContext({ viewport: { width: 1280, height: 900 } });
    const fresh = await other.newPage();
    watch(fresh);
    await fresh.goto(`${url}/dashboard`);
    await fresh.waitForSelector('#key-dialog[open]');
    await fresh.click('#key-dialog [data-close]');
    await fresh.waitForSelector('#notice:not([hidden])');
    assert.match(await fresh.textContent('#notice-text'), /The Authorization header is missing/);
    assert.equal(await fresh.$$eval('#task-rows tr', (rows) => rows.length), 0);
    await fresh.click('#key-button');
    await fresh.waitForSelector('#key-dialog[open]');
    await fresh.fill('#key-input', masterKey);
    await fresh.click('#key-dialog button[type="submit"]');
    await waitForRows(fresh, [2, 1, 0]);
    await other.close();
    step('another session asks again; "Not now" shows the message; the API key button asks by hand');
  } finally {
    await browser.close();
  }
}

const started = Date.now();
try {
  if (mode === 'open') await withoutKey();
  else if (mode === 'key') await withKey();
  else throw new Error(`unknown mode ${mode}`);
  assert.deepEqual(outside, [], 'the page made requests outside the gateway');
  assert.deepEqual(pageErrors, [], 'the page threw');
  process.stdout.write(`@@ ${JSON.stringify({ done: true, checks, seconds: (Date.now() - started) / 1000 })}\n`);
  process.exit(0);
} catch (error) {
  console.error(error.stack || String(error));
  if (outside.length) console.error('outside requests:', outside);
  if (pageErrors.length) console.error('page errors:', pageErrors);
  process.exit(1);
}
