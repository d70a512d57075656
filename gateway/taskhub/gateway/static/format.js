// How tasks' values read on the page: local dates, durations in words, status badges.

const TIME = { hour: '2-digit', minute: '2-digit', second: '2-digit' };
const DAY_AND_TIME = { month: 'short', day: 'numeric', ...TIME };
const FULL = { year: 'numeric', ...DAY_AND_TIME };

/** Local time: just the time for today, the day too otherwise (or always, `full`). */
export function formatDate(value, full = false) {
  if (!value) return '—';
  const moment = new Date(value);
  if (Number.isNaN(moment.getTime())) return value;
  if (full) return moment.toLocaleString(undefined, FULL);
  const today = new Date().toDateString() === moment.toDateString();
  return moment.toLocaleString(undefined, today ? TIME : DAY_AND_TIME);
}

/** A <time> element for an RFC 3339 value, which stays readable as is in its title. */
export function timeElement(value, full = false) {
  const time = document.createElement('time');
  time.dateTime = value;
  time.title = value;
  time.textContent = full ? `${formatDate(value, true)} (${value})` : formatDate(value);
  return time;
}

export function humanSeconds(seconds) {
  if (seconds < 1) return `${Number((seconds * 1000).toPrecision(3))} ms`;
  if (seconds < 60) return `${Number(seconds.toFixed(3))} s`;
  const days = Math.floor(seconds / 86400);
  const hours = Math.floor((seconds % 86400) / 3600);
  const minutes = Math.floor((seconds % 3600) / 60);
  const rest = Math.round(seconds % 60);
  return [days && `${days} d`, hours && `${hours} h`, minutes && `${minutes} min`, rest && `${rest} s`]
    .filter(Boolean).join(' ');
}

/** ISO 8601 durations as the API writes them (`PT0.006034S`, `PT1S`, `P1DT2S`), in words. */
export function formatDuration(value) {
  if (!value) return '—';
  const match = /^P(?:(\d+)D)?(?:T(?:(\d+)H)?(?:(\d+)M)?(?:(\d+(?:\.\d+)?)S)?)?$/.exec(value);
  if (!match) return value;
  const [, d, h, m, s] = match;
  return humanSeconds(Number(d ?? 0) * 86400 + Number(h ?? 0) * 3600 + Number(m ?? 0) * 60 + Number(s ?? 0));
}

/** The status as a word in a coloured outline (the word carries it, not the colour alone). */
export function statusBadge(status) {
  const badge = document.createElement('span');
  badge.className = `badge status-${status}`;
  badge.textContent = status;
  return badge;
}
