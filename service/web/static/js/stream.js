// One EventSource per job, on a signed stream URL (EventSource cannot send Authorization).
//
// Every event carries `id:` (its sequence number in the job). When the connection drops, the browser
// reconnects by itself and sends `Last-Event-ID`, so the server replays exactly what was missed. When
// the browser gives up (the ticket expired, the server said no), we ask for a new ticket and start
// again from the last id we saw. The last id is kept per tab, so a reload resumes too.

import { api, apiUrl } from './api.js';

const KINDS = ['stage', 'progress', 'artifact', 'failed', 'done'];
const storageKey = (jobId) => `dubbing.events.${jobId}`;

export class JobStream {
  constructor(jobId, { onEvent, onState, after = 0 }) {
    this.jobId = jobId;
    // Where this tab is in the job's events (kept across reloads; `after`: a render's first event follows it),
    // and how many arrived twice.
    this.lastId = Math.max(after, Number(window.sessionStorage.getItem(storageKey(jobId)) || 0));
    this.duplicates = 0;
    this.onEvent = onEvent;
    this.onState = onState;
    this.source = null;
    this.closed = false;
    this.failures = 0;
    this.timer = null;
  }

  async start() {
    if (this.closed) return;
    this.onState('connecting');
    let ticket;
    try {
      ticket = await api('POST', `/v1/jobs/${this.jobId}/events/ticket`);
    } catch (error) {
      if (error.status === 401 || error.status === 404) {
        this.onState('closed', error);
        return;
      }
      this.retryLater();
      return;
    }
    if (this.closed) return;
    const resume = this.lastId ? `&last_event_id=${this.lastId}` : '';
    const source = new EventSource(apiUrl(`${ticket.path}${resume}`));
    this.source = source;
    for (const kind of KINDS) source.addEventListener(kind, (event) => this.receive(kind, event));
    source.addEventListener('open', () => {
      this.failures = 0;
      this.onState('live');
    });
    source.addEventListener('error', () => {
      if (this.closed || source !== this.source) return;
      if (source.readyState === EventSource.CLOSED) {
        // The browser will not retry (an HTTP error such as an expired ticket): a new ticket, then resume.
        this.source = null;
        this.retryLater();
      } else {
        this.onState('reconnecting'); // the browser retries by itself, with Last-Event-ID
      }
    });
  }

  receive(kind, event) {
    const id = Number(event.lastEventId || 0);
    if (id && id <= this.lastId) {
      this.duplicates += 1;
      console.warn(`dubbing: duplicate event ${id} ignored (last seen ${this.lastId})`);
      return;
    }
    if (id) {
      this.lastId = id;
      window.sessionStorage.setItem(storageKey(this.jobId), String(id));
    }
    let data = {};
    try {
      data = JSON.parse(event.data);
    } catch {
      return;
    }
    this.onEvent(kind, data, id);
    if (kind === 'done') {
      this.close();
      this.onState('done');
    }
  }

  retryLater() {
    if (this.closed) return;
    this.failures += 1;
    const delay = Math.min(30_000, 1000 * 2 ** Math.min(this.failures - 1, 5));
    this.onState('reconnecting');
    clearTimeout(this.timer);
    this.timer = setTimeout(() => this.start(), delay);
  }

  close() {
    this.closed = true;
    clearTimeout(this.timer);
    if (this.source) this.source.close();
    this.source = null;
  }
}
