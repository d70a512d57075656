// The workers in view: who holds which leases (GET /leases), tasks finished per second over the last
// 15 minutes (GET /activity, so the chart is full as soon as the page loads) and the tasks of each index.
// Neither follows the page's filters: they show every task the key sees.
import { timeElement } from './format.js';

const FINISHED = ['succeeded', 'failed', 'canceled'];
const STATUSES = ['enqueued', 'processing', ...FINISHED];
export const SHOWN_LEASES = 50; // rows at most (GET /leases?limit=); a line says how many there are
const SHOWN_TASKS = 12; // task buttons a lease at most

function cell(tr, content, label) {
  const td = document.createElement('td');
  td.dataset.label = label;
  if (content instanceof Node) td.append(content);
  else td.textContent = content;
  tr.append(td);
  return td;
}

function uidButton(uid, onOpen) {
  const button = document.createElement('button');
  button.type = 'button';
  button.className = 'uid';
  button.textContent = `#${uid}`;
  button.setAttribute('aria-haspopup', 'dialog');
  button.setAttribute('aria-label', `Task ${uid}: details`);
  button.addEventListener('click', () => onOpen(uid, button));
  return button;
}

function inWords(milliseconds) {
  const seconds = Math.round(Math.abs(milliseconds) / 1000);
  const text = seconds < 90 ? `${seconds} s` : `${Math.round(seconds / 60)} min`;
  return milliseconds >= 0 ? `in ${text}` : `${text} overdue`;
}

/** The leases table: a row a lease, oldest first; `onOpen(uid, button)` opens a task. */
export function showLeases(tbody, answer, onOpen) {
  const rows = [];
  const now = Date.now();
  for (const lease of answer.results) {
    const tr = document.createElement('tr');
    tr.dataset.worker = lease.worker;
    tr.dataset.uids = lease.tasks.map((task) => task.uid).join(',');
    cell(tr, lease.worker || '(unnamed)', 'Worker');
    cell(tr, lease.batchUid === null ? '—' : `#${lease.batchUid}`, 'Batch');
    const tasks = cell(tr, '', 'Tasks');
    tasks.className = 'lease-tasks';
    for (const task of lease.tasks.slice(0, SHOWN_TASKS)) {
      tasks.append(uidButton(task.uid, onOpen));
      if (task.attempts > 0) {
        const retry = document.createElement('span');
        retry.className = 'attempts';
        retry.textContent = `attempt ${task.attempts + 1}`;
        tasks.append(retry);
      }
    }
    if (lease.tasks.length > SHOWN_TASKS) tasks.append(` +${lease.tasks.length - SHOWN_TASKS} more`);
    cell(tr, timeElement(lease.since), 'Since');
    const deadline = cell(tr, timeElement(lease.deadline), 'Deadline');
    const left = Date.parse(lease.deadline) - now;
    deadline.append(` (${inWords(left)})`);
    if (left < 0) tr.classList.add('overdue');
    rows.push(tr);
  }
  tbody.replaceChildren(...rows);
  return answer.total > rows.length ? `(${answer.total} leases, the ${rows.length} oldest shown)` : '';
}

/** The tasks of each index by status; `onIndex(name)` filters the table by one. */
export function showIndexes(tbody, indexes, onIndex) {
  const rows = indexes.map((entry) => {
    const tr = document.createElement('tr');
    tr.dataset.index = entry.indexUid ?? '';
    if (entry.indexUid === null) {
      cell(tr, '(global tasks)', 'Index');
    } else {
      const button = document.createElement('button');
      button.type = 'button';
      button.className = 'plain index-name';
      button.textContent = entry.indexUid;
      button.setAttribute('aria-label', `Show the tasks of ${entry.indexUid}`);
      button.addEventListener('click', () => onIndex(entry.indexUid));
      cell(tr, button, 'Index');
    }
    for (const status of STATUSES) {
      const td = cell(tr, String(entry.statuses[status]), status);
      td.dataset.status = status;
      if (entry.statuses[status] === 0) td.classList.add('zero');
    }
    return tr;
  });
  tbody.replaceChildren(...rows);
}

/** The stacked bars of tasks finished per second, one path a status, drawn in the SVG's own units. */
export function showActivity(figure, activity) {
  const svg = figure.querySelector('svg');
  const { seconds } = activity;
  const series = FINISHED.map((status) => activity.finished[status]);
  const totals = series[0].map((_, i) => series.reduce((sum, counts) => sum + counts[i], 0));
  const peak = Math.max(1, ...totals);
  svg.setAttribute('viewBox', `0 0 ${seconds} 100`);
  const base = new Array(seconds).fill(0);
  FINISHED.forEach((status, k) => {
    let path = '';
    series[k].forEach((count, i) => {
      if (!count) return;
      const bottom = 100 - (base[i] / peak) * 100;
      const top = 100 - ((base[i] + count) / peak) * 100;
      path += `M${i} ${bottom.toFixed(2)}V${top.toFixed(2)}h1V${bottom.toFixed(2)}z`;
      base[i] += count;
    });
    svg.querySelector(`path[data-status="${status}"]`).setAttribute('d', path);
  });
  const sums = Object.fromEntries(FINISHED.map((status, k) => [status, series[k].reduce((a, b) => a + b, 0)]));
  for (const status of FINISHED) figure.dataset[status] = String(sums[status]);
  figure.dataset.seconds = String(seconds);
  const minutes = Math.round(seconds / 60);
  const words = FINISHED.map((status) => `${sums[status]} ${status}`).join(', ');
  const summary = `In the last ${minutes} minutes: ${words}; at most ${Math.max(0, ...totals)} a second.`;
  figure.querySelector('figcaption').textContent = summary;
  svg.setAttribute('aria-label', summary);
  figure.querySelector('.peak').textContent = `${peak}/s`;
  figure.querySelector('.start').textContent = `${minutes} min ago`;
}
