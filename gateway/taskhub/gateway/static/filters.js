// What the page shows: GET /tasks's filters, page size, order and `from`, kept in the page's own query
// string (so a view can be bookmarked), and the filter form that edits them.

export const STATUSES = ['enqueued', 'processing', 'succeeded', 'failed', 'canceled'];
export const TYPES = ['indexCreation', 'indexUpdate', 'indexDeletion', 'indexSwap', 'documentAdditionOrUpdate',
  'documentDeletion', 'settingsUpdate', 'dumpCreation', 'taskCancelation', 'taskDeletion', 'snapshotCreation'];
const TEXT_FILTERS = ['indexUids', 'uids', 'canceledBy'];
const DATE_FILTERS = ['afterEnqueuedAt', 'beforeEnqueuedAt', 'afterStartedAt', 'beforeStartedAt',
  'afterFinishedAt', 'beforeFinishedAt'];
const FILTERS = ['uids', 'indexUids', 'statuses', 'types', 'canceledBy', ...DATE_FILTERS];
// What never changes once a task exists. The live stream follows only these, so that it still hears of a
// task that leaves a `statuses` (or canceledBy, startedAt, finishedAt) filter, whose row must then go.
const STABLE_FILTERS = ['uids', 'indexUids', 'types', 'afterEnqueuedAt', 'beforeEnqueuedAt'];
const LIMITS = [10, 20, 50, 100];
const DEFAULT_LIMIT = 20;

export const view = {
  filter: new URLSearchParams(), // the filter parameters, as the API takes them
  limit: DEFAULT_LIMIT,
  reverse: false,
  from: null, // this page's `from`; null on the first page
  previous: [], // the `from` of each earlier page, for "Previous page"
};

export function splitList(value) {
  return value.split(',').map((item) => item.trim()).filter((item) => item !== '');
}

/** `name=value&...` without percent-encoding, for people to read. */
export function describeFilter(filter) {
  return [...filter].map(([name, value]) => `${name}=${value}`).join('&');
}

export function readLocation() {
  const params = new URLSearchParams(location.search);
  view.filter = new URLSearchParams();
  for (const name of FILTERS) {
    if (params.has(name)) view.filter.set(name, params.get(name));
  }
  const limit = Number.parseInt(params.get('limit'), 10);
  view.limit = Number.isInteger(limit) && limit > 0 ? limit : DEFAULT_LIMIT;
  view.reverse = params.get('reverse') === 'true';
  const from = params.get('from');
  view.from = from !== null && /^\d+$/.test(from) ? Number(from) : null;
  view.previous = [];
}

/** GET /tasks's query string for the current page. */
export function listQuery() {
  const query = new URLSearchParams(view.filter);
  if (view.limit !== DEFAULT_LIMIT) query.set('limit', String(view.limit));
  if (view.from !== null) query.set('from', String(view.from));
  if (view.reverse) query.set('reverse', 'true');
  return query;
}

export function writeLocation() {
  const query = listQuery().toString();
  history.replaceState(null, '', location.pathname + (query ? `?${query}` : ''));
}

/** GET /tasks/events's query string: the filters a task cannot leave. */
export function streamQuery() {
  const query = new URLSearchParams();
  for (const name of STABLE_FILTERS) {
    if (view.filter.has(name)) query.set(name, view.filter.get(name));
  }
  const text = query.toString();
  return text ? `?${text}` : '';
}

// datetime-local inputs show local time; the API takes RFC 3339.
function toLocalInput(raw, name) {
  let moment;
  if (/^\d{4}-\d{2}-\d{2}$/.test(raw)) {
    // A bare date is midnight UTC of that day for before*, of the next day for after* (the API's rule).
    moment = new Date(`${raw}T00:00:00Z`);
    if (name.startsWith('after')) moment = new Date(moment.getTime() + 86_400_000);
  } else {
    moment = new Date(raw);
  }
  if (Number.isNaN(moment.getTime())) return '';
  const pad = (n) => String(n).padStart(2, '0');
  return `${moment.getFullYear()}-${pad(moment.getMonth() + 1)}-${pad(moment.getDate())}`
    + `T${pad(moment.getHours())}:${pad(moment.getMinutes())}:${pad(moment.getSeconds())}`;
}

function fromLocalInput(value) {
  const moment = new Date(value);
  return Number.isNaN(moment.getTime()) ? value : moment.toISOString();
}

function addChoice(container, group, value) {
  const label = document.createElement('label');
  label.className = 'choice';
  label.htmlFor = `f-${group}-${value}`;
  const box = document.createElement('input');
  Object.assign(box, { type: 'checkbox', id: label.htmlFor, name: group, value });
  label.append(box, ` ${value}`);
  container.append(label);
}

/** The status and type checkboxes, each with its label. */
export function buildChoices(form) {
  for (const status of STATUSES) addChoice(form.querySelector('#status-choices'), 'statuses', status);
  for (const type of TYPES) addChoice(form.querySelector('#type-choices'), 'types', type);
}

/** A checkbox for a type registered at the server (`sendEmail`), once the page meets its name. */
export function addTypeChoice(form, type) {
  const boxes = [...form.querySelectorAll('input[name="types"]')];
  const known = boxes.some((box) => box.value.toLowerCase() === type.toLowerCase());
  if (!known && type !== '*' && /^[a-z][A-Za-z0-9]{0,63}$/.test(type)) {
    addChoice(form.querySelector('#type-choices'), 'types', type);
  }
}

export function fillForm(form) {
  for (const type of splitList(view.filter.get('types') ?? '')) addTypeChoice(form, type);
  for (const group of ['statuses', 'types']) {
    const raw = view.filter.get(group);
    const chosen = new Set(raw === null ? [] : splitList(raw).map((item) => item.toLowerCase()));
    for (const box of form.querySelectorAll(`input[name="${group}"]`)) {
      box.checked = chosen.has(box.value.toLowerCase()) && !chosen.has('*');
    }
  }
  for (const name of TEXT_FILTERS) form.elements[name].value = view.filter.get(name) ?? '';
  for (const name of DATE_FILTERS) {
    const raw = view.filter.get(name);
    form.elements[name].value = raw === null || raw === '*' ? '' : toLocalInput(raw, name);
  }
  const { limit, order } = form.elements;
  if (!LIMITS.includes(view.limit) && ![...limit.options].some((o) => o.value === String(view.limit))) {
    limit.append(new Option(String(view.limit)));
  }
  limit.value = String(view.limit);
  order.value = view.reverse ? 'oldest' : 'newest';
  const active = markActive(form);
  if (active.types) form.querySelector('#types-more').open = true;
  if (active.dates) form.querySelector('#dates-more').open = true;
}

/** "Types (2 chosen)", "Dates (1 set)": what a closed part of the form holds. */
export function markActive(form) {
  const active = {
    types: form.querySelectorAll('input[name="types"]:checked').length,
    dates: DATE_FILTERS.filter((name) => form.elements[name].value).length,
  };
  form.querySelector('[data-count-of="types"]').textContent = active.types ? `(${active.types} chosen)` : '';
  form.querySelector('[data-count-of="dates"]').textContent = active.dates ? `(${active.dates} set)` : '';
  return active;
}

export function readForm(form) {
  const filter = new URLSearchParams();
  for (const name of FILTERS) {
    if (name === 'statuses' || name === 'types') {
      const chosen = [...form.querySelectorAll(`input[name="${name}"]:checked`)].map((box) => box.value);
      if (chosen.length) filter.set(name, chosen.join(','));
    } else if (TEXT_FILTERS.includes(name)) {
      const raw = form.elements[name].value.trim();
      // `uids=` (empty) would match nothing: an empty box means "no filter" here.
      if (raw !== '') filter.set(name, splitList(raw).join(','));
    } else {
      const raw = form.elements[name].value;
      if (raw) filter.set(name, fromLocalInput(raw));
    }
  }
  view.filter = filter;
  view.limit = Number(form.elements.limit.value);
  view.reverse = form.elements.order.value === 'oldest';
  view.from = null;
  view.previous = [];
}
