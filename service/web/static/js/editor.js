// The line editor beside a finished language's timeline: pick a line, fix its source text, its speaker or its
// translation, see which lines the next render redoes (stale), render again, and hear the line's new take
// against the previous take and the original at that line's time. Every save sends the revision it was made
// from (If-Match); when someone else edited first (412) the current text is reloaded and the person's own text
// is kept on screen to put back, never dropped.

import { api, ApiError } from './api.js';
import { clear, h } from './dom.js';
import { languageName } from './format.js';

const MASTER_KINDS = ['video', 'master_web'];

function clockOf(seconds) {
  const m = Math.floor(seconds / 60);
  return `${m}:${(seconds % 60).toFixed(1).padStart(4, '0')}`;
}

export class LineEditor {
  // view: {jobId, urls, sourceLanguage, onRender(language, after_event), onSourceEdited(editor), onListen()}
  constructor(language, view) {
    this.language = language;
    this.view = view;
    this.base = `/v1/jobs/${view.jobId}`;
    this.transcript = null;
    this.state = null;
    this.selected = null;
    this.takes = new Map(); // revision -> {url, segments} of that render
    this.previousRevision = null;
    this.status = h('p', { class: 'editor-status', role: 'status' });
    this.lines = h('ol', { class: 'editor-lines', 'aria-label': 'Lines' });
    this.form = h('form', { class: 'line-form', hidden: true, novalidate: true,
      onsubmit: (e) => { e.preventDefault(); this.save(); } });
    this.renderButton = h('button', { type: 'button', class: 'primary small render-button',
      onclick: () => this.render() }, `Render ${languageName(language)} again`);
    this.take = h('audio', { class: 'take', preload: 'none', crossorigin: 'anonymous' });
    this.take.addEventListener('timeupdate', () => {
      if (this.stopAt !== null && this.take.currentTime >= this.stopAt) this.take.pause();
    });
    this.element = h('section', { class: 'editor', 'aria-label': `Edit the ${languageName(language)} lines` },
      h('h3', { text: 'Edit the lines' }), this.status, this.lines, this.form,
      h('div', { class: 'editor-actions' }, this.renderButton), this.take);
  }

  async load() {
    const [transcript, state] = await Promise.all([
      api('GET', `${this.base}/transcript`), api('GET', `${this.base}/languages/${this.language}`)]);
    this.transcript = transcript;
    this.state = state;
    this.draw();
  }

  source(id) {
    return this.transcript.segments.find((s) => s.id === id) || null;
  }

  line(id) {
    return this.state.segments.find((s) => s.id === id) || null;
  }

  draw() {
    const stale = this.state.segments.filter((s) => s.stale).length;
    const rendering = !['complete', 'failed', 'cancelled'].includes(this.state.stage);
    this.status.textContent = rendering ? 'Rendering…'
      : stale ? `${stale} ${stale === 1 ? 'line' : 'lines'} changed since this take: render again to hear them.`
        : `Every line is in this take (revision ${this.state.output_revision ?? '–'}).`;
    this.renderButton.disabled = rendering || !stale;
    this.element.dataset.revision = String(this.state.revision);
    const items = this.state.segments.map((line, index) => {
      const src = this.source(line.id);
      return h('li', {}, h('button', {
        type: 'button', class: 'editor-line', 'aria-pressed': String(line.id === this.selected),
        dataset: { segmentId: String(line.id), stale: String(line.stale) },
        onclick: () => this.select(line.id),
      },
      h('span', { class: 'line-head' }, `${index + 1}`, src ? ` · ${clockOf(src.start)}` : '',
        src && src.speaker ? ` · ${src.speaker}` : '',
        line.stale ? h('span', { class: 'badge stale', text: 'changed' }) : null,
        line.edited ? h('span', { class: 'badge edited', text: 'edited' }) : null),
      h('span', { class: 'line-source', text: line.source_text }),
      h('span', { class: 'line-text', text: line.text ?? '(not translated yet)' })));
    });
    clear(this.lines).append(...items);
    if (this.selected !== null && !this.line(this.selected)) this.selected = null;
    if (this.selected !== null && !this.dirty()) this.fillForm();
  }

  select(id) {
    this.selected = id;
    for (const button of this.lines.querySelectorAll('.editor-line')) {
      button.setAttribute('aria-pressed', String(Number(button.dataset.segmentId) === id));
    }
    this.conflict = null;
    this.fillForm();
    this.fields.text.focus();
  }

  fillForm() {
    const line = this.line(this.selected);
    const src = this.source(this.selected);
    if (!line || !src) {
      this.form.hidden = true;
      return;
    }
    const showSpeaker = this.transcript.speakers.length > 0 || src.speaker !== null;
    const area = (name, value, label) => {
      const id = `edit-${this.language}-${name}`;
      const input = name === 'speaker' ? h('input', { id, name, maxlength: '64', value: value ?? '' })
        : h('textarea', { id, name, rows: '2', value: value ?? '' });
      return [input, h('div', { class: 'field' }, h('label', { for: id, text: label }), input)];
    };
    const [source, sourceField] = area('source', src.text, `Original (${languageName(this.view.sourceLanguage)})`);
    const [speaker, speakerField] = area('speaker', src.speaker, 'Speaker');
    const [text, textField] = area('text', line.text, `Translation (${languageName(this.language)})`);
    this.fields = { source, speaker: showSpeaker ? speaker : null, text };
    this.loaded = { source: src.text, speaker: src.speaker ?? '', text: line.text ?? '' };
    // The revisions this form shows: a save says it edited these (a reload meanwhile must not hide an edit).
    this.formRevision = { transcript: this.transcript.revision, language: this.state.revision };
    this.error = h('p', { class: 'field-error', role: 'alert', hidden: true });
    this.conflictBox = h('div', { class: 'conflict', role: 'alert', hidden: !this.conflict });
    if (this.conflict) this.showConflict(this.conflict);
    const listen = h('div', { class: 'listen', role: 'group', 'aria-label': 'Listen to this line' },
      h('span', { class: 'listen-label', text: 'Listen:' }),
      h('button', { type: 'button', class: 'secondary small', dataset: { take: 'latest' },
        onclick: () => this.play('latest') }, `This take (r${this.state.output_revision})`),
      h('button', { type: 'button', class: 'secondary small', dataset: { take: 'previous' },
        disabled: !(this.state.output_revision > 1), onclick: () => this.play('previous') }, 'Previous take'),
      h('button', { type: 'button', class: 'secondary small', dataset: { take: 'original' },
        onclick: () => this.play('original') }, 'Original'));
    clear(this.form).append(h('h4', { text: `Line ${this.state.segments.indexOf(line) + 1}` }),
      sourceField, showSpeaker ? speakerField : null, textField, this.conflictBox, this.error,
      h('div', { class: 'actions' }, h('button', { type: 'submit', class: 'primary small' }, 'Save line')),
      listen);
    this.form.hidden = false;
  }

  dirty() {
    if (!this.fields || this.form.hidden) return false;
    return Object.entries(this.fields).some(([name, input]) => input && input.value !== this.loaded[name]);
  }

  async save() {
    const id = this.selected;
    const wanted = { source: this.fields.source.value.trim(), text: this.fields.text.value.trim(),
      speaker: this.fields.speaker ? this.fields.speaker.value.trim() : this.loaded.speaker };
    const patch = {};
    if (wanted.source !== this.loaded.source) patch.text = wanted.source;
    if (this.fields.speaker && wanted.speaker !== this.loaded.speaker) patch.speaker = wanted.speaker || null;
    const translation = wanted.text !== this.loaded.text ? wanted.text : null;
    this.error.hidden = true;
    let languageRevision = this.formRevision.language;
    try {
      if (Object.keys(patch).length) {
        this.transcript = await api('PATCH', `${this.base}/transcript/segments/${id}`, patch,
          { headers: { 'If-Match': `"${this.formRevision.transcript}"` } });
        languageRevision += 1; // a source edit moves every language on by one revision
        this.view.onSourceEdited(this);
      }
      if (translation !== null) {
        this.state = await api('PATCH', `${this.base}/languages/${this.language}/segments/${id}`,
          { text: translation }, { headers: { 'If-Match': `"${languageRevision}"` } });
      }
      this.conflict = null;
      await this.load();
      this.fillForm();
      this.status.textContent = `Line saved. ${this.status.textContent}`;
    } catch (error) {
      if (error instanceof ApiError && error.status === 412) {
        // Someone else edited first: show theirs (reloaded) and keep ours to put back.
        this.conflict = { mine: wanted, message: error.message };
        await this.load();
        this.fillForm();
        return;
      }
      this.error.textContent = error.message;
      this.error.hidden = false;
    }
  }

  showConflict({ mine }) {
    const putBack = h('button', { type: 'button', class: 'secondary small', onclick: () => {
      this.fields.source.value = mine.source;
      this.fields.text.value = mine.text;
      if (this.fields.speaker) this.fields.speaker.value = mine.speaker;
      this.conflictBox.hidden = true;
      this.conflict = null;
    } }, 'Use my text');
    clear(this.conflictBox).append(
      h('p', { text: 'Someone else edited this dub first, so your change was not saved. The fields now show the '
        + 'current text.' }),
      h('p', { class: 'mine' }, 'Yours was: ', h('q', { text: mine.text })), putBack);
    this.conflictBox.hidden = false;
  }

  async render() {
    this.renderButton.disabled = true;
    try {
      this.previousRevision = this.state.output_revision;
      const started = await api('POST', `${this.base}/languages/${this.language}/render`);
      this.status.textContent = started.started ? 'Rendering…' : 'Nothing to render: this take is up to date.';
      if (started.started) this.view.onRender(this.language, started.after_event);
    } catch (error) {
      this.status.textContent = `Could not render: ${error.message}`;
      this.renderButton.disabled = false;
    }
  }

  // The render of `revision`: its dubbed master's URL and its manifest's line placements.
  async takeOf(revision) {
    if (this.takes.has(revision)) return this.takes.get(revision);
    const listed = (await api('GET', `${this.base}/artifacts?revision=${revision}`)).artifacts
      .filter((a) => a.target_language === this.language);
    const master = MASTER_KINDS.map((k) => listed.find((a) => a.kind === k)).find(Boolean);
    const manifestArtifact = listed.find((a) => a.kind === 'manifest');
    if (!master || !manifestArtifact) return null;
    const response = await fetch(manifestArtifact.download_url, { credentials: 'omit', cache: 'no-store' });
    if (!response.ok) return null;
    const take = { revision, url: master.download_url, segments: (await response.json()).segments };
    this.takes.set(revision, take);
    return take;
  }

  // The render before the latest: the one this page replaced, else the newest earlier revision still kept.
  async previousTake() {
    const latest = this.state.output_revision;
    if (this.previousRevision && this.previousRevision < latest) return this.takeOf(this.previousRevision);
    for (let revision = latest - 1; revision >= 1 && revision >= latest - 20; revision -= 1) {
      const take = await this.takeOf(revision);
      if (take) return take;
    }
    return null;
  }

  async play(which) {
    const id = this.selected;
    let url = null;
    let span = null;
    let revision = '';
    if (which === 'original') {
      const voice = this.view.urls.inputs.get('voice');
      const src = this.source(id);
      if (voice && src) [url, span] = [voice.download_url, [src.start, src.end]];
    } else {
      const take = which === 'latest' ? await this.takeOf(this.state.output_revision) : await this.previousTake();
      const placed = take && take.segments.find((s) => s.id === id);
      if (placed) [url, span, revision] = [take.url, [placed.placed_start, placed.placed_end], String(take.revision)];
    }
    if (!url) {
      this.error.textContent = 'That take of this line is not available (expired, or the line is new).';
      this.error.hidden = false;
      return;
    }
    this.view.onListen(); // the card's player stops: one recording at a time
    this.take.dataset.take = which;
    this.take.dataset.revision = revision;
    if (this.take.src !== url) {
      this.take.src = url;
      await new Promise((resolve) => {
        this.take.addEventListener('loadedmetadata', resolve, { once: true });
        this.take.addEventListener('error', resolve, { once: true });
        this.take.load();
      });
    }
    this.stopAt = span[1];
    this.take.currentTime = span[0];
    await this.take.play().catch(() => {});
  }

  stop() {
    this.take.pause();
    this.take.removeAttribute('src');
  }
}
