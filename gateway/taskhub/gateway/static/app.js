// The taskhub dashboard: plain JavaScript modules over the gateway's own routes; no framework, no build step.
//
// Counts are GET /tasks?statuses=X&limit=0 `total`s and the table is GET /tasks, both under the filters
// in the page's query string. GET /tasks/events tells of every change (events.js): the row changes at
// once, and a throttled reload of the page and the counts follows, so the server stays the one truth.
// The workers, the chart of tasks finished per second and the counts per index (operations.js) come from
// GET /leases and GET /activity, whole at load, then again after changes and every few seconds.
import { api, ApiError, storedKey, storeKey, whenAnswered } from './api.js';
import { LiveStream } from './events.js';
import {
  addTypeChoice, buildChoices, describeFilter, fillForm, listQuery, markActive, readForm, readLocation, splitList,
  STATUSES, streamQuery, view, writeLocation,
} from './filters.js';
import { showActivity, showIndexes, showLeases, SHOWN_LEASES } from './operations.js';
import { renderTask, TaskRows } from './tasks.js';

const $ = (id) => document.getElementById(id);
const form = $('filters');
let page = null; // the last GET /tasks answer
let detailUid = null; // the task in the detail dialog
const rows = new TaskRows($('task-rows'), (uid, button) => openTask(uid, button));

// -- notices, the banner and the live indicator -----------------------------------------------------------

let noticeUnreachable = false; // the notice says the gateway cannot be reached

function showNotice(text, kind, { unreachable = false } = {}) {
  noticeUnreachable = unreachable;
  const notice = $('notice');
  notice.dataset.kind = kind;
  notice.setAttribute('role', kind === 'error' ? 'alert' : 'status');
  $('notice-text').textContent = text;
  notice.hidden = false;
}

function hideNotice() {
  noticeUnreachable = false;
  $('notice').hidden = true;
}

whenAnswered(() => {
  if (noticeUnreachable) hideNotice(); // it answers again
});

/** Any failure of a call: the key dialog for 401 and 403, else the API's own message. */
function failed(error) {
  if (!(error instanceof ApiError)) {
    console.error(error);
    showNotice(`Something went wrong in the page: ${error.message}`, 'error');
  } else if (error.needsKey) {
    askForKey(error.body.message);
  } else {
    const code = error.body.code ? ` (${error.body.code})` : '';
    showNotice(error.body.message + code, 'error', { unreachable: error.unreachable });
  }
}

function setLive(state, text) {
  $('live').dataset.state = state;
  $('live').textContent = text;
}

let bannerTimer = null;
let dropped = false;

const live = new LiveStream({
  query: streamQuery,
  onTask(task) {
    rows.update(task); // at once; the reload then puts the page in order
    if (detailUid === task.uid) showDetail(task);
    reload();
    reloadOps();
  },
  onDeleted(task) {
    rows.deleted(task.uid);
    if (detailUid === task.uid) {
      $('task-title').textContent = `Task #${task.uid} (deleted)`;
      $('task-cancel').hidden = true;
      $('task-delete').hidden = true;
    }
    reload();
    reloadOps();
  },
  onOpen() {
    setLive('live', 'Live');
    if (dropped) {
      dropped = false;
      const banner = $('banner');
      banner.dataset.kind = 'ok';
      banner.textContent = 'Reconnected: live updates are back.';
      clearTimeout(bannerTimer);
      bannerTimer = setTimeout(() => { banner.hidden = true; }, 4000);
    }
    reload(); // whatever happened while the stream was not open
  },
  onDrop(reason, delay) {
    dropped = true;
    clearTimeout(bannerTimer);
    setLive('reconnecting', 'Reconnecting…');
    const banner = $('banner');
    banner.dataset.kind = 'warning';
    banner.textContent = `Live updates were interrupted. ${reason} Reconnecting in ${Math.ceil(delay / 1000)} s…`;
    banner.hidden = false;
  },
  onRefused(status, body) {
    if (status === 401 || status === 403) {
      setLive('off', 'Not live: the API needs a key');
      askForKey(body.message);
      return true;
    }
    if (status === 400) { // a bad filter: GET /tasks says so too
      setLive('off', 'Not live: check the filters');
      return true;
    }
    return false; // too many watches, the server unavailable, ...: try again later
  },
});

// -- loading ----------------------------------------------------------------------------------------------

let pageToken = 0;
let countToken = 0;

async function loadPage() {
  const token = ++pageToken; // a newer load makes older answers void
  try {
    const answer = await api('GET', `/tasks?${listQuery()}`);
    if (token === pageToken) showPage(answer);
  } catch (error) {
    if (token === pageToken) failed(error);
  }
}

async function loadCounts() {
  const token = ++countToken;
  const base = new URLSearchParams(view.filter);
  base.delete('statuses');
  base.set('limit', '0');
  try {
    const totals = await Promise.all(STATUSES.map((status) => {
      const query = new URLSearchParams(base);
      query.set('statuses', status);
      return api('GET', `/tasks?${query}`).then((answer) => answer.total);
    }));
    if (token !== countToken) return;
    STATUSES.forEach((status, i) => {
      document.querySelector(`.count[data-status="${status}"] .n`).textContent = String(totals[i]);
    });
  } catch (error) {
    if (token === countToken) failed(error);
  }
}

/** At most one `run` at a time; calls meanwhile make one more after it, at least `gap` ms apart. */
function throttled(run, gap) {
  let running = false;
  let again = false;
  let timer = null;
  let last = 0;
  function schedule() {
    if (running || timer !== null) {
      again = true;
      return;
    }
    timer = setTimeout(async () => {
      timer = null;
      running = true;
      again = false;
      last = Date.now();
      try {
        await run();
      } finally {
        running = false;
        if (again) {
          again = false;
          schedule();
        }
      }
    }, Math.max(0, last + gap - Date.now()));
  }
  return schedule;
}

let opsToken = 0;
let opsRefused = false; // the key may not read them: the timer stops asking until another key is set

/** The leases, the activity chart and the counts per index, from the server as they are now. */
async function loadOps() {
  const token = ++opsToken;
  try {
    const [leases, activity] = await Promise.all([api('GET', `/leases?limit=${SHOWN_LEASES}`), api('GET', '/activity')]);
    if (token !== opsToken) return;
    $('leases-more').textContent = showLeases($('lease-rows'), leases, openTask);
    $('no-leases').hidden = leases.results.length > 0;
    showActivity($('activity'), activity);
    showIndexes($('index-rows'), activity.indexes, showIndex);
    $('no-indexes').hidden = activity.indexes.length > 0;
    opsRefused = false;
  } catch (error) {
    if (token !== opsToken) return;
    opsRefused = error instanceof ApiError && error.needsKey;
    failed(error);
  }
}

const refresh = () => Promise.all([loadPage(), loadCounts(), loadOps()]); // the user's own actions: now
const reload = throttled(refresh, 300); // live changes: a few times a second at most
// The chart and the leases after changes, at most once a second: a busy queue's window is a count of many tasks.
const reloadOps = throttled(loadOps, 1000);
// The window slides and deadlines near with no change at all (a renewal is no task change).
const OPS_EVERY = 5000;

function showPage(answer) {
  page = answer;
  for (const task of answer.results) addTypeChoice(form, task.type);
  rows.show(answer.results);
  const count = answer.results.length;
  $('empty').hidden = count > 0;
  $('task-table').classList.toggle('is-empty', count === 0);
  const of = `${answer.total} matching task${answer.total === 1 ? '' : 's'}`;
  $('summary').textContent = count === 0 ? `0 of ${of}` : `${count} shown of ${of}`;
  $('first-page').disabled = view.from === null;
  $('prev-page').disabled = view.previous.length === 0;
  $('next-page').disabled = answer.next === null;
}

function showScope() {
  const others = new URLSearchParams(view.filter);
  others.delete('statuses');
  $('counts-scope').textContent = others.toString() ? `(${describeFilter(others)})` : '(all tasks)';
  const chosen = new Set(splitList(view.filter.get('statuses') ?? '').map((s) => s.toLowerCase()));
  for (const button of document.querySelectorAll('.count')) {
    button.setAttribute('aria-pressed', String(chosen.has(button.dataset.status)));
  }
}

/** After the filters changed: the first page, the counts, and (unless only statuses changed) a new stream. */
function applyFilters({ restartLive = true } = {}) {
  writeLocation();
  showScope();
  refresh();
  if (restartLive) {
    setLive('connecting', 'Connecting…');
    live.start();
  }
}

/** The table and the counts of one index, as if typed into the filters. */
function showIndex(name) {
  view.filter.set('indexUids', name);
  view.from = null;
  view.previous = [];
  fillForm(form);
  applyFilters();
}

function goToPage(from, previous) {
  view.from = from;
  view.previous = previous;
  writeLocation();
  loadPage();
}

// -- dialogs ----------------------------------------------------------------------------------------------

// A modal <dialog> keeps focus inside and closes on Escape; focus goes back where it was when it closes.
function openDialog(dialog, opener = document.activeElement) {
  if (dialog.open) return;
  dialog.returnFocus = opener instanceof HTMLElement ? opener : null;
  dialog.returnValue = '';
  dialog.showModal();
}

function setUpDialogs() {
  for (const dialog of document.querySelectorAll('dialog')) {
    dialog.addEventListener('close', () => {
      const target = dialog.returnFocus;
      dialog.returnFocus = null;
      if (target && target.isConnected) target.focus();
      else $('tasks').focus();
    });
    dialog.addEventListener('click', (event) => {
      if (event.target.closest('[data-close]')) dialog.close('dismiss');
    });
  }
  $('task-dialog').addEventListener('close', () => { detailUid = null; });
}

function showDetail(task) {
  $('task-title').textContent = `Task #${task.uid}`;
  renderTask($('task-body'), task, showTask);
  const running = task.status === 'enqueued' || task.status === 'processing';
  $('task-cancel').hidden = !running;
  $('task-delete').hidden = running;
  $('task-requeue').hidden = !REQUEUED.includes(task.status);
}

async function showTask(uid) {
  detailUid = uid;
  try {
    const task = await api('GET', `/tasks/${uid}`);
    if (detailUid === uid) showDetail(task);
  } catch (error) {
    if (detailUid !== uid) return;
    $('task-title').textContent = `Task #${uid}`;
    const message = document.createElement('p');
    message.className = 'error-text';
    message.textContent = error.message;
    $('task-body').replaceChildren(message);
    $('task-cancel').hidden = true;
    $('task-delete').hidden = true;
    $('task-requeue').hidden = true;
    if (error instanceof ApiError && error.needsKey) askForKey(error.body.message);
  }
}

function openTask(uid, opener) {
  detailUid = uid;
  const known = rows.task(uid);
  if (known) showDetail(known); // what the table knows, at once; then the task as it is now
  openDialog($('task-dialog'), opener);
  showTask(uid);
}

// -- cancel, delete and requeue -----------------------------------------------------------------------------

let pendingAction = null;
// The statuses a requeue takes, whatever the filter says; and the most it takes at once (POST /tasks/requeue).
const REQUEUED = ['failed', 'canceled'];
const MAX_REQUEUE = 1000;
const VERBS = { cancel: 'Cancel', delete: 'Delete', requeue: 'Requeue' };

/** The filter a requeue acts on: the given one, its statuses narrowed to failed and canceled. */
function requeueQuery(filter) {
  const query = new URLSearchParams(filter);
  const named = query.get('statuses');
  const statuses = named === null || named.split(',').includes('*')
    ? REQUEUED
    : REQUEUED.filter((status) => named.split(',').includes(status));
  query.set('statuses', statuses.join(','));
  return query;
}

/** The confirmation first says how many tasks the filter matches: the `total` of GET /tasks with it. */
async function confirmAction(kind, filter, opener) {
  const verb = VERBS[kind];
  const dialog = $('confirm-dialog');
  const yes = $('confirm-yes');
  $('confirm-title').textContent = `${verb} tasks`;
  $('confirm-filter').textContent = filter.toString() ? `?${describeFilter(filter)}` : '(none)';
  yes.textContent = verb;
  yes.disabled = true;
  pendingAction = null;
  if (!filter.toString()) {
    $('confirm-text').textContent = `No filter is set. Choose the tasks to ${kind} with the filters first`
      + ' (the API acts on no task without one).';
    openDialog(dialog, opener);
    return;
  }
  $('confirm-text').textContent = 'Counting the matching tasks…';
  openDialog(dialog, opener);
  const query = kind === 'requeue' ? requeueQuery(filter) : new URLSearchParams(filter);
  query.set('limit', '0');
  let total = 0;
  try {
    // A filter naming neither failed nor canceled leaves a requeue nothing to take.
    if (query.get('statuses') !== '') total = (await api('GET', `/tasks?${query}`)).total;
  } catch (error) {
    dialog.close();
    failed(error);
    return;
  }
  if (!dialog.open) return;
  if (total === 0) {
    $('confirm-text').textContent = `No task matches this filter right now: there is nothing to ${kind}.`;
    return;
  }
  const tasks = `${total} task${total === 1 ? '' : 's'}`;
  const match = `${tasks} match${total === 1 ? 'es' : ''} this filter right now.`;
  if (kind === 'requeue' && total > MAX_REQUEUE) {
    $('confirm-text').textContent = `${total} failed or canceled tasks match this filter: at most ${MAX_REQUEUE}`
      + ' are requeued at once. Narrow the filter first.';
    return;
  }
  $('confirm-text').textContent = {
    cancel: `${match} Those still enqueued or processing will be canceled; finished ones are left as they are.`,
    delete: `${match} Those finished (succeeded, failed or canceled) will be deleted for good; enqueued and`
      + ' processing ones stay.',
    requeue: `${total} failed or canceled task${total === 1 ? '' : 's'} match${total === 1 ? 'es' : ''} this`
      + ' filter right now. Each will be enqueued again as a new task; the originals stay as they are.',
  }[kind];
  yes.textContent = `${verb} ${tasks}`;
  yes.disabled = false;
  pendingAction = { kind, filter };
}

async function runAction() {
  const action = pendingAction;
  pendingAction = null;
  $('confirm-dialog').close('confirm');
  if (!action) return;
  if (action.kind === 'requeue') {
    try {
      const { results } = await api('POST', `/tasks/requeue?${action.filter}`);
      const uids = results.map((task) => `#${task.uid}`).join(', ');
      showNotice(results.length
        ? `Requeued ${results.length} task${results.length === 1 ? '' : 's'} as ${uids}.`
        : 'No failed or canceled task matched any more: nothing was requeued.', 'ok');
    } catch (error) {
      failed(error);
    }
    return;
  }
  const [method, path] = action.kind === 'cancel' ? ['POST', '/tasks/cancel'] : ['DELETE', '/tasks'];
  try {
    const summary = await api(method, `${path}?${action.filter}`);
    showNotice(`Task #${summary.taskUid} (${summary.type}) is enqueued; the server runs it next.`, 'ok');
  } catch (error) {
    failed(error);
  }
}

// -- the API key ------------------------------------------------------------------------------------------

let keyReason = null; // the API's refusal that opened the key dialog
let keyDeclined = false; // "Not now": no more asking until the user asks (the API key button)

function askForKey(reason) {
  const dialog = $('key-dialog');
  if (keyDeclined && !dialog.open) {
    showNotice(reason, 'error');
    return;
  }
  keyReason = reason;
  $('key-reason').textContent = `The API answered: ${reason}`;
  $('key-forget').hidden = storedKey() === null;
  if (!dialog.open) {
    $('key-input').value = '';
    openDialog(dialog);
  }
}

function askForKeyByHand() {
  keyReason = null;
  $('key-reason').textContent = storedKey() === null
    ? 'No key is set. Enter the master key or an API key if the server has a master key.'
    : 'A key is set for this tab. Enter another one to replace it.';
  $('key-forget').hidden = storedKey() === null;
  $('key-input').value = '';
  openDialog($('key-dialog'));
}

function useKey(key) {
  keyDeclined = false;
  hideNotice();
  if (!storeKey(key)) showNotice('This browser allows no session storage: the key cannot be kept.', 'error');
  refresh();
  setLive('connecting', 'Connecting…');
  live.start();
}

// -- wiring -------------------------------------------------------------------------------------------------

function start() {
  buildChoices(form);
  setUpDialogs();
  readLocation();
  fillForm(form);
  showScope();
  if (window.matchMedia('(max-width: 40rem)').matches) $('filters-panel').open = false;

  form.addEventListener('submit', (event) => {
    event.preventDefault();
    readForm(form);
    applyFilters();
  });
  form.addEventListener('change', () => markActive(form));
  $('clear-filters').addEventListener('click', () => {
    form.reset();
    readForm(form);
    fillForm(form);
    applyFilters();
  });
  for (const button of document.querySelectorAll('.count')) {
    button.addEventListener('click', () => {
      // One status at a time; pressing the chosen one again shows every status.
      if (button.getAttribute('aria-pressed') === 'true') view.filter.delete('statuses');
      else view.filter.set('statuses', button.dataset.status);
      view.from = null;
      view.previous = [];
      fillForm(form);
      applyFilters({ restartLive: false }); // the stream does not follow statuses
    });
  }
  $('first-page').addEventListener('click', () => goToPage(null, []));
  $('prev-page').addEventListener('click', () => goToPage(view.previous.at(-1), view.previous.slice(0, -1)));
  $('next-page').addEventListener('click', () => {
    if (page && page.next !== null) goToPage(page.next, [...view.previous, view.from]);
  });
  $('cancel-matching').addEventListener('click', (e) => confirmAction('cancel', view.filter, e.currentTarget));
  $('delete-matching').addEventListener('click', (e) => confirmAction('delete', view.filter, e.currentTarget));
  $('requeue-matching').addEventListener('click', (e) => confirmAction('requeue', view.filter, e.currentTarget));
  const thisTask = () => new URLSearchParams({ uids: String(detailUid) });
  $('task-cancel').addEventListener('click', (e) => confirmAction('cancel', thisTask(), e.currentTarget));
  $('task-delete').addEventListener('click', (e) => confirmAction('delete', thisTask(), e.currentTarget));
  $('task-requeue').addEventListener('click', (e) => confirmAction('requeue', thisTask(), e.currentTarget));
  $('confirm-yes').addEventListener('click', runAction);
  $('notice-close').addEventListener('click', hideNotice);
  $('key-button').addEventListener('click', askForKeyByHand);
  $('key-form').addEventListener('submit', (event) => {
    event.preventDefault();
    const key = $('key-input').value.trim();
    if (!key) {
      $('key-input').focus();
      return;
    }
    $('key-dialog').close('save');
    useKey(key);
  });
  $('key-forget').addEventListener('click', () => {
    $('key-dialog').close('forget');
    useKey(null);
  });
  $('key-dialog').addEventListener('close', () => {
    const value = $('key-dialog').returnValue;
    if (value !== 'save' && value !== 'forget') {
      keyDeclined = true;
      if (keyReason) showNotice(keyReason, 'error'); // dismissed: the API's own words stay on the page
    }
    keyReason = null;
  });

  refresh();
  live.start();
  setInterval(() => {
    if (!document.hidden && !opsRefused) reloadOps();
  }, OPS_EVERY);
}

start();
