// "My dubs": the user's jobs, newest first, a page at a time (the API's cursor).

import { api } from './api.js';
import { $, clear, h } from './dom.js';
import { duration, jobTitle, languageLine, languageName, STAGE_LABELS, STATUS_LABELS, when } from './format.js';

const PAGE = 10;

export class MyDubs {
  constructor(section) {
    this.section = section;
    this.list = $('#jobs-list', section);
    this.empty = $('#jobs-empty', section);
    this.more = $('#jobs-more', section);
    this.error = $('#jobs-error', section);
    this.cursor = null;
    this.more.addEventListener('click', () => this.load(false));
    $('#jobs-refresh', section).addEventListener('click', () => this.load(true));
  }

  async load(fresh = true) {
    if (this.loading) return;
    this.loading = true;
    this.error.hidden = true;
    this.section.setAttribute('aria-busy', 'true');
    try {
      const query = new URLSearchParams({ limit: String(PAGE) });
      if (!fresh && this.cursor) query.set('cursor', this.cursor);
      const page = await api('GET', `/v1/jobs?${query}`);
      if (fresh) clear(this.list);
      for (const job of page.jobs) this.list.append(this.row(job));
      this.cursor = page.next_cursor;
      this.more.hidden = !this.cursor;
      this.empty.hidden = this.list.children.length > 0;
    } catch (error) {
      this.error.textContent = error.message;
      this.error.hidden = false;
    } finally {
      this.loading = false;
      this.section.removeAttribute('aria-busy');
    }
  }

  row(job) {
    const voice = job.inputs.voice;
    const title = jobTitle(job);
    const about = [title === languageLine(job) ? '' : languageLine(job),
      voice ? `${duration(voice.duration_seconds)} recording` : '', job.inputs.background ? 'with background' : '',
      when(job.created_at)].filter(Boolean).join(' · ');
    const chips = h('ul', { class: 'lang-chips', 'aria-label': 'Languages' }, job.tasks.map((t) => h('li', {
      class: `lang-chip stage-${t.stage}`, title: `${languageName(t.target_language)}: ${STAGE_LABELS[t.stage] || t.stage}`,
    }, h('span', { class: 'code', text: t.target_language }),
    h('span', { class: 'visually-hidden', text: ` ${languageName(t.target_language)}: ${STAGE_LABELS[t.stage] || t.stage}` }))));
    return h('li', { class: 'job-row', dataset: { jobId: job.id, status: job.status } },
      h('a', { class: 'job-link', href: `#/jobs/${job.id}` },
        h('span', { class: 'job-name', text: title }),
        h('span', { class: 'job-sub', text: about })),
      chips,
      h('span', { class: `status-chip status-${job.status}`, text: STATUS_LABELS[job.status] || job.status }));
  }
}
