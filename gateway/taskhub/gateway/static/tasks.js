// Tasks on the page: the table's rows, kept by uid so that a reload only touches what changed, and the
// detail of one task (details, error, timings).
import { formatDuration, humanSeconds, statusBadge, timeElement } from './format.js';

const COLUMNS = ['Uid', 'Status', 'Type', 'Index', 'Enqueued', 'Started', 'Finished', 'Duration'];

function dateCell(td, value) {
  if (value) td.replaceChildren(timeElement(value));
  else td.textContent = '—';
}

export class TaskRows {
  /** Rows in `tbody`; `onOpen(uid, button)` when a task's uid button is pressed. */
  constructor(tbody, onOpen) {
    this.tbody = tbody;
    this.onOpen = onOpen;
    this.rows = new Map(); // uid -> {tr, task}
  }

  has(uid) {
    return this.rows.has(uid);
  }

  task(uid) {
    return this.rows.get(uid)?.task;
  }

  /** The page's tasks, in order. Rows move only when their place changes, so focus and highlights stay. */
  show(tasks) {
    const shown = new Set();
    let cursor = this.tbody.firstElementChild;
    for (const task of tasks) {
      shown.add(task.uid);
      let row = this.rows.get(task.uid);
      if (row) this.update(task);
      else row = this.make(task);
      if (row.tr === cursor) cursor = cursor.nextElementSibling;
      else this.tbody.insertBefore(row.tr, cursor);
    }
    for (const [uid, row] of this.rows) {
      if (!shown.has(uid)) {
        row.tr.remove();
        this.rows.delete(uid);
      }
    }
  }

  /** A new state of a task on the page; a status change flashes its row. */
  update(task) {
    const row = this.rows.get(task.uid);
    if (!row) return;
    const changed = row.task !== null && row.task.status !== task.status;
    row.task = task;
    const { tr } = row;
    tr.dataset.uid = String(task.uid);
    tr.dataset.status = task.status;
    const open = tr.cells[0].firstChild;
    open.textContent = `#${task.uid}`;
    open.setAttribute('aria-label', `Task ${task.uid}: details`);
    tr.cells[1].replaceChildren(statusBadge(task.status));
    tr.cells[2].textContent = task.type;
    tr.cells[3].textContent = task.indexUid ?? '—';
    dateCell(tr.cells[4], task.enqueuedAt);
    dateCell(tr.cells[5], task.startedAt);
    dateCell(tr.cells[6], task.finishedAt);
    tr.cells[7].textContent = formatDuration(task.duration);
    if (changed) {
      tr.classList.remove('changed');
      void tr.offsetWidth; // restarts the highlight
      tr.classList.add('changed');
    }
  }

  /** The task is gone (a taskDeletion): its row stays, struck through, until the next reload. */
  deleted(uid) {
    this.rows.get(uid)?.tr.classList.add('deleted');
  }

  make(task) {
    const tr = document.createElement('tr');
    for (const label of COLUMNS) {
      const td = document.createElement('td');
      td.dataset.label = label; // the label of a cell when rows are cards on a narrow screen
      tr.append(td);
    }
    const open = document.createElement('button');
    open.type = 'button';
    open.className = 'uid';
    open.setAttribute('aria-haspopup', 'dialog');
    open.addEventListener('click', () => this.onOpen(task.uid, open));
    tr.cells[0].append(open);
    const row = { tr, task: null };
    this.rows.set(task.uid, row);
    this.update(task);
    return row;
  }
}

function field(list, term, value) {
  const dt = document.createElement('dt');
  dt.textContent = term;
  const dd = document.createElement('dd');
  if (value instanceof Node) dd.append(value);
  else dd.textContent = value;
  list.append(dt, dd);
}

function facts(className = 'facts') {
  const list = document.createElement('dl');
  list.className = className;
  return list;
}

function heading(text) {
  const h3 = document.createElement('h3');
  h3.textContent = text;
  return h3;
}

/** One task's every field into `body`; `onShowTask(uid)` opens another (the cancelation that canceled it). */
export function renderTask(body, task, onShowTask) {
  const about = facts();
  field(about, 'Status', statusBadge(task.status));
  field(about, 'Type', task.type);
  field(about, 'Index', task.indexUid ?? '— (global task)');
  if (task.canceledBy !== null) {
    const link = document.createElement('button');
    link.type = 'button';
    link.className = 'uid';
    link.textContent = `#${task.canceledBy}`;
    link.setAttribute('aria-label', `Task ${task.canceledBy}, the cancelation: details`);
    link.addEventListener('click', () => onShowTask(task.canceledBy));
    field(about, 'Canceled by', link);
  }
  if (task.requeuedFrom !== undefined) {
    const link = document.createElement('button');
    link.type = 'button';
    link.className = 'uid';
    link.textContent = `#${task.requeuedFrom}`;
    link.setAttribute('aria-label', `Task ${task.requeuedFrom}, the one requeued: details`);
    link.addEventListener('click', () => onShowTask(task.requeuedFrom));
    field(about, 'Requeued from', link);
  }

  if (task.worker !== undefined) field(about, 'Worker', task.worker);
  if (task.batchUid !== undefined) field(about, 'Batch', `#${task.batchUid}`);
  if (task.attempts !== undefined) field(about, 'Failed attempts', String(task.attempts));
  if (task.runAt !== undefined) field(about, 'Not run before', timeElement(task.runAt, true));

  const times = facts();
  const when = (value) => (value ? timeElement(value, true) : '—');
  field(times, 'Enqueued', when(task.enqueuedAt));
  field(times, 'Started', when(task.startedAt));
  field(times, 'Finished', when(task.finishedAt));
  if (task.startedAt) {
    const waited = (new Date(task.startedAt) - new Date(task.enqueuedAt)) / 1000;
    field(times, 'Waited in the queue', humanSeconds(Math.max(0, waited)));
  }
  field(times, 'Duration', task.duration ? `${formatDuration(task.duration)} (${task.duration})` : '—');

  const details = document.createElement('pre');
  details.className = 'json';
  details.id = 'task-details';
  details.textContent = JSON.stringify(task.details, null, 2);
  body.replaceChildren(about, heading('Timings'), times, heading('Details'), details);

  if (task.error) {
    const error = facts('facts error-facts');
    error.id = 'task-error';
    field(error, 'Message', task.error.message);
    field(error, 'Code', task.error.code);
    field(error, 'Type', task.error.type);
    // As text, not a link: the page makes no request outside this gateway, and follows none.
    if (task.error.link) field(error, 'Documentation', task.error.link);
    body.append(heading('Error'), error);
  }
  if (task.lastError) { // a retryable failure: the task waits for its next attempt
    const last = facts('facts error-facts');
    last.id = 'task-last-error';
    field(last, 'Message', task.lastError.message);
    field(last, 'Code', task.lastError.code);
    body.append(heading('Last attempt'), last);
  }
}
