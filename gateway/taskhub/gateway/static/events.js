// Following GET /tasks/events with fetch(), so that the Authorization header goes along: an EventSource
// cannot send one. The body is read with a server-sent events parser after the HTML standard's; when the
// stream drops, it reconnects after a growing pause and resumes with Last-Event-ID, so no change is missed.
import { errorBody, requestHeaders } from './api.js';

const sleep = (ms) => new Promise((resolve) => { setTimeout(resolve, ms); });

export class LiveStream {
  /**
   * `query()` is the stream's query string; `onTask(task)` and `onDeleted(task)` get each change;
   * `onOpen()` runs when the stream is (again) open, `onDrop(reason, delay)` when it broke and waits
   * `delay` ms to reconnect; `onRefused(status, body)` gets a refusal (400, 401, 403, 429, ...) and
   * answers true to stop there, false to try again after a pause.
   */
  constructor({ query, onTask, onDeleted, onOpen, onDrop, onRefused }) {
    Object.assign(this, { query, onTask, onDeleted, onOpen, onDrop, onRefused });
    this.generation = 0; // each start() or stop() ends the loops before it
    this.controller = null;
    this.lastId = null;
  }

  /** Follows the changes from now on (after a filter change, a new key, ...). */
  start() {
    this.stop();
    this.lastId = null;
    this.follow(this.generation);
  }

  stop() {
    this.generation += 1;
    if (this.controller) this.controller.abort();
  }

  async follow(generation) {
    let attempt = 0;
    while (generation === this.generation) {
      const controller = new AbortController();
      this.controller = controller;
      let reason;
      try {
        const headers = requestHeaders({ Accept: 'text/event-stream' });
        if (this.lastId !== null) headers['Last-Event-ID'] = this.lastId;
        const response = await fetch(`/tasks/events${this.query()}`,
          { headers, signal: controller.signal, cache: 'no-store' });
        if (response.ok) {
          attempt = 0;
          this.onOpen();
          reason = await this.read(response.body, generation);
        } else {
          const body = await errorBody(response);
          if (generation !== this.generation) return;
          if (body.code === 'invalid_watch_cursor' && this.lastId !== null) {
            // The history to resume from is gone: follow from now on (onOpen reloads what is there).
            this.lastId = null;
            continue;
          }
          if (this.onRefused(response.status, body)) return;
          reason = body.message;
        }
      } catch (error) {
        if (controller.signal.aborted || generation !== this.generation) return;
        reason = `The connection failed (${error.message}).`;
      }
      if (generation !== this.generation) return;
      attempt += 1;
      const delay = Math.min(15_000, 500 * 2 ** Math.min(attempt - 1, 5)) * (0.8 + Math.random() * 0.4);
      this.onDrop(reason, delay);
      await sleep(delay);
    }
  }

  /** Reads events until the stream ends; answers why it ended (an `event: error`'s message, or that it did). */
  async read(body, generation) {
    const reader = body.pipeThrough(new TextDecoderStream()).getReader();
    let failure = null;
    const parser = new EventParser((type, data, id) => {
      this.lastId = id; // also for an id-only frame: the point the stream started after
      if (data === null) return;
      let payload;
      try {
        payload = JSON.parse(data);
      } catch {
        return;
      }
      if (type === 'task') this.onTask(payload);
      else if (type === 'deleted') this.onDeleted(payload);
      else if (type === 'error') failure = payload.message;
    }, this.lastId);
    try {
      for (;;) {
        const { value, done } = await reader.read();
        if (done || generation !== this.generation) break;
        parser.push(value);
      }
    } finally {
      reader.cancel().catch(() => {});
    }
    return failure ?? 'The stream ended.';
  }
}

/** Cuts text/event-stream text into events: `dispatch(type, data, lastEventId)`, data null for an id-only frame. */
export class EventParser {
  constructor(dispatch, lastId = null) {
    this.dispatch = dispatch;
    this.buffer = '';
    this.data = [];
    this.event = '';
    this.id = lastId; // the last event id persists from frame to frame
  }

  push(text) {
    this.buffer += text;
    // A `\r` at the end may be half of a `\r\n`: keep it for the next chunk.
    const end = this.buffer.endsWith('\r') ? this.buffer.length - 1 : this.buffer.length;
    const lines = this.buffer.slice(0, end).split(/\r\n|\r|\n/);
    this.buffer = lines.pop() + this.buffer.slice(end);
    for (const line of lines) this.line(line);
  }

  line(line) {
    if (line === '') {
      const data = this.data.length ? this.data.join('\n') : null;
      const type = this.event || 'message';
      this.data = [];
      this.event = '';
      this.dispatch(type, data, this.id);
      return;
    }
    if (line.startsWith(':')) return; // a comment: the keep-alive
    const colon = line.indexOf(':');
    const name = colon === -1 ? line : line.slice(0, colon);
    let value = colon === -1 ? '' : line.slice(colon + 1);
    if (value.startsWith(' ')) value = value.slice(1);
    if (name === 'data') this.data.push(value);
    else if (name === 'event') this.event = value;
    else if (name === 'id' && !value.includes('\0')) this.id = value;
  }
}
