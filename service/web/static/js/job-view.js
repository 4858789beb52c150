// One job: a card per target language with its stage and progress, live from the job's event stream;
// each finished language becomes a player with captions, timeline, figures and downloads.

import { api, ApiError } from './api.js';
import { clear, h, icon } from './dom.js';
import {
  bytes, duration, jobTitle, languageLine, languageName, percent, signed, STAGE_LABELS, STAGE_RANK,
  STATUS_LABELS,
  TERMINAL_STAGES, TERMINAL_STATUSES, when,
} from './format.js';
import { LineEditor } from './editor.js';
import { Player } from './player.js';
import { JobStream } from './stream.js';

const ARTIFACT_LABELS = {
  video: 'Dubbed video',
  master_web: 'Dubbed mix',
  master_wav: 'Dubbed mix',
  voice_stem: 'Dubbed voice only',
  captions_vtt: 'Captions',
  captions_srt: 'Captions',
  manifest: 'Manifest',
  transcript_json: 'Transcript',
  transcript_srt: 'Transcript',
  transcript_vtt: 'Transcript',
  isolated_voice: 'Original voice, separated',
  background_stem: 'Background, separated',
};
const ARTIFACT_ORDER = ['video', 'master_web', 'master_wav', 'voice_stem', 'captions_vtt', 'captions_srt', 'manifest',
  'transcript_json', 'transcript_srt', 'transcript_vtt', 'isolated_voice', 'background_stem'];
const REFRESH_MARGIN_MS = 30_000;

function formatOf(artifact) {
  // The name the service gives the download (input and language: "interview_es.mp3").
  const name = artifact.download_name || artifact.object_path.split('/').pop();
  const extension = (name.split('.').pop() || '').toUpperCase();
  return { name, label: extension === 'VTT' ? 'WebVTT' : extension };
}

// Signed download URLs of the job's artifacts and inputs, refreshed before they expire.
class SignedUrls {
  constructor(jobId) {
    this.jobId = jobId;
    this.artifacts = new Map(); // id -> artifact with download_url, download_expires_at
    this.inputs = new Map(); // kind -> input with download_url
    this.listeners = new Set();
    this.timer = null;
    this.pending = null;
  }

  async refresh() {
    if (!this.pending) {
      this.pending = (async () => {
        const [artifacts, inputs] = await Promise.all([
          api('GET', `/v1/jobs/${this.jobId}/artifacts`),
          api('GET', `/v1/jobs/${this.jobId}/inputs`).catch(() => ({ inputs: [] })),
        ]);
        this.artifacts = new Map(artifacts.artifacts.map((a) => [a.id, a]));
        this.inputs = new Map(inputs.inputs.map((i) => [i.kind, i]));
        this.schedule();
        for (const listener of this.listeners) listener();
      })().finally(() => { this.pending = null; });
    }
    return this.pending;
  }

  schedule() {
    clearTimeout(this.timer);
    const expiries = [...this.artifacts.values(), ...this.inputs.values()]
      .map((item) => Date.parse(item.download_expires_at)).filter(Number.isFinite);
    if (!expiries.length) return;
    const wait = Math.max(5_000, Math.min(...expiries) - Date.now() - 2 * REFRESH_MARGIN_MS);
    this.timer = setTimeout(() => this.refresh().catch(() => {}), Math.min(wait, 2 ** 31 - 1));
  }

  expired(item) {
    return !item || Date.parse(item.download_expires_at) - Date.now() < REFRESH_MARGIN_MS;
  }

  forLanguage(language) {
    return [...this.artifacts.values()].filter((a) => a.target_language === language);
  }

  jobLevel() {
    return [...this.artifacts.values()].filter((a) => !a.target_language);
  }

  byKind(language, kind) {
    return this.forLanguage(language).find((a) => a.kind === kind) || null;
  }

  stop() {
    clearTimeout(this.timer);
    this.listeners.clear();
  }
}

function downloadLink(urls, artifact) {
  const { name, label } = formatOf(artifact);
  const link = h('a', {
    class: 'download', href: artifact.download_url, download: name, rel: 'noopener',
    dataset: { artifactId: artifact.id, kind: artifact.kind, expiresAt: artifact.download_expires_at },
  }, icon('download', 16), h('span', { class: 'download-label', text: ARTIFACT_LABELS[artifact.kind] || artifact.kind }),
  h('span', { class: 'download-format', text: label }), h('span', { class: 'download-size', text: bytes(artifact.size_bytes) }));
  // A link kept open past its URL's lifetime fetches a fresh URL first.
  link.addEventListener('click', async (event) => {
    if (link.dataset.fresh === 'true') {
      delete link.dataset.fresh;
      return;
    }
    if (Date.parse(link.dataset.expiresAt) - Date.now() >= REFRESH_MARGIN_MS) return;
    event.preventDefault();
    await urls.refresh();
    const fresh = urls.artifacts.get(artifact.id);
    if (!fresh) return;
    link.href = fresh.download_url;
    link.dataset.expiresAt = fresh.download_expires_at;
    link.dataset.fresh = 'true';
    link.click();
  });
  const update = () => {
    if (!link.isConnected) {
      urls.listeners.delete(update);
      return;
    }
    const fresh = urls.artifacts.get(artifact.id);
    if (fresh) {
      link.href = fresh.download_url;
      link.dataset.expiresAt = fresh.download_expires_at;
    }
  };
  urls.listeners.add(update);
  return link;
}

function downloadList(urls, artifacts) {
  const sorted = [...artifacts].sort((a, b) => ARTIFACT_ORDER.indexOf(a.kind) - ARTIFACT_ORDER.indexOf(b.kind));
  return h('ul', { class: 'downloads' }, sorted.map((artifact) => h('li', {}, downloadLink(urls, artifact))));
}

function figure(label, value, unit, note, state) {
  return h('div', { class: `figure ${state || ''}` },
    h('dt', { text: label }),
    h('dd', {}, h('span', { class: 'figure-value' }, value, unit ? h('span', { class: 'figure-unit', text: ` ${unit}` }) : null),
      note ? h('span', { class: 'figure-note', text: note }) : null));
}

function figures(manifest) {
  const { sync, loudness } = manifest;
  const lines = manifest.segments.length;
  const loudOk = Math.abs(loudness.integrated_lufs - loudness.target_lufs) <= 1;
  const peakOk = loudness.true_peak_dbtp <= loudness.true_peak_ceiling_dbtp + 0.05;
  return h('section', { class: 'figures', 'aria-label': 'Sync and loudness' },
    h('h3', { text: 'Sync, measured from the audio' }),
    h('dl', { class: 'figure-grid' },
      figure('Speech overlap', `${Math.round(sync.speech_iou * 100)}`, '%', 'with the original',
        sync.speech_iou >= 0.85 ? 'good' : 'meh'),
      figure('In time', `${Math.round(sync.within_10_percent * 100)}`, '%', 'of lines within ±10 % of the original',
        sync.within_10_percent >= 0.9 ? 'good' : 'meh'),
      figure('Start offset', sync.onset_offset_p95_ms === null ? '–' : `${sync.onset_offset_p95_ms}`, 'ms',
        '95 % of lines start this close', sync.onset_offset_p95_ms !== null && sync.onset_offset_p95_ms <= 100 ? 'good' : 'meh'),
      figure('Ran long', `${sync.planned.overflow_count}`, `of ${lines}`, 'lines',
        sync.planned.overflow_count === 0 ? 'good' : 'meh')),
    h('h3', { text: 'Loudness' }),
    h('dl', { class: 'figure-grid' },
      figure('Integrated', signed(loudness.integrated_lufs), 'LUFS', `target ${signed(loudness.target_lufs)}`,
        loudOk ? 'good' : 'meh'),
      figure('True peak', signed(loudness.true_peak_dbtp), 'dBTP', `ceiling ${signed(loudness.true_peak_ceiling_dbtp)}`,
        peakOk ? 'good' : 'meh'),
      figure('Range', loudness.loudness_range_lu.toFixed(1), 'LU', 'loudness range', '')));
}

function segmentTable(manifest, onSeek) {
  const rows = manifest.segments.map((s, index) => h('tr', {},
    h('td', {}, h('button', { type: 'button', class: 'link', onclick: () => onSeek(s.placed_start),
      'aria-label': `Play line ${index + 1} from ${s.placed_start.toFixed(1)} seconds`, text: String(index + 1) })),
    h('td', { text: s.source_text }),
    h('td', { text: s.target_text }),
    h('td', { class: 'num', text: `${s.source_start.toFixed(1)}–${s.source_end.toFixed(1)}` }),
    h('td', { class: 'num', text: `${s.placed_start.toFixed(1)}–${s.placed_end.toFixed(1)}` }),
    h('td', { class: 'num', text: `${(s.rate * s.stretch).toFixed(2)}×` })));
  return h('details', { class: 'segments' },
    h('summary', { text: `All ${manifest.segments.length} lines, as text` }),
    h('div', { class: 'table-wrap' }, h('table', {},
      h('thead', {}, h('tr', {}, ['#', 'Original', 'Dubbed', 'Original (s)', 'Dubbed (s)', 'Speed'].map(
        (t) => h('th', { scope: 'col', text: t })))),
      h('tbody', {}, rows))));
}

class LanguageCard {
  constructor(view, task) {
    this.view = view;
    this.language = task.target_language;
    this.stage = task.stage;
    this.progress = task.progress || 0;
    this.player = null;
    this.resultShown = false;
    this.bar = h('progress', { max: '100', value: '0', 'aria-label': `${languageName(this.language)} progress` });
    this.pct = h('span', { class: 'pct', text: '0 %' });
    this.stageText = h('span', { class: 'stage', text: '' });
    this.note = h('p', { class: 'lang-note', hidden: true });
    this.error = h('p', { class: 'lang-error', role: 'alert', hidden: true });
    this.result = h('div', { class: 'result', hidden: true });
    this.element = h('article', { class: 'lang card', dataset: { lang: this.language },
      'aria-labelledby': `lang-${this.language}-title` },
      h('header', { class: 'lang-head' },
        h('h2', { id: `lang-${this.language}-title` }, languageName(this.language),
          h('span', { class: 'code', text: this.language })),
        this.stageText),
      h('div', { class: 'lang-progress' }, this.bar, this.pct),
      this.note, this.error, this.result);
    this.render(task.error);
  }

  // Events can arrive older than what the page already shows (a snapshot, then the stream): never go back.
  apply(stage, progress, data = {}) {
    const current = STAGE_RANK[this.stage] ?? 0;
    const next = STAGE_RANK[stage] ?? current;
    if (TERMINAL_STAGES.has(this.stage) && stage !== this.stage) return;
    if (next < current) return;
    if (next === current && stage === this.stage && progress !== null && progress < this.progress) {
      if (!data.retrying_in_seconds) return;
    }
    const announce = stage !== this.stage;
    this.stage = stage;
    if (progress !== null && progress !== undefined) this.progress = Math.max(progress, next > current ? 0 : this.progress);
    if (Number.isFinite(data.remaining_seconds)) this.remaining = { seconds: data.remaining_seconds, at: Date.now() };
    if (data.retrying_in_seconds && data.error) {
      this.note.textContent = `Retrying in ${Math.round(data.retrying_in_seconds)} s after: ${data.error.message}`;
      this.note.hidden = false;
    } else if (announce) {
      this.note.hidden = true;
    }
    this.render(data.error || null);
    if (announce) this.view.announce(`${languageName(this.language)}: ${STAGE_LABELS[stage] || stage}`);
  }

  render(error) {
    const value = this.stage === 'complete' ? 100 : Math.round(this.progress * 100);
    this.bar.value = value;
    this.bar.setAttribute('aria-valuetext', `${STAGE_LABELS[this.stage] || this.stage}, ${value} %`);
    this.pct.textContent = [percent(value / 100), this.timeLeft()].filter(Boolean).join(' · ');
    this.stageText.textContent = STAGE_LABELS[this.stage] || this.stage;
    this.element.dataset.stage = this.stage;
    this.stageText.className = `stage stage-${this.stage}`;
    if (this.stage === 'failed') {
      this.error.textContent = error && error.message ? error.message : 'This language could not be dubbed.';
      this.error.hidden = false;
      this.note.hidden = true;
    }
    if (this.stage === 'complete' && !this.resultShown) {
      this.resultShown = true;
      this.view.showResult(this).catch((e) => this.resultFailed(e));
    }
  }

  // A rough time remaining, from the service's estimate (its progress rate so far), counted down since it came.
  timeLeft() {
    if (!this.remaining || TERMINAL_STAGES.has(this.stage)) return '';
    const seconds = this.remaining.seconds - (Date.now() - this.remaining.at) / 1000;
    return seconds >= 1 ? `about ${duration(Math.round(seconds))} left` : 'almost done';
  }

  resultFailed(error) {
    this.resultShown = false;
    clear(this.result).append(h('p', { class: 'lang-note', text: `This language cannot be played here: ${error.message}` }));
    this.result.hidden = false;
  }

  // A render of a finished language: back to work, the old take stays until the new one is complete.
  restart(stage) {
    this.stage = stage;
    this.progress = 0;
    this.resultShown = false;
    this.render(null);
  }

  destroy() {
    if (this.player) this.player.destroy();
    if (this.editor) this.editor.stop();
  }
}

export class JobView {
  constructor(root, jobId, { onNotFound }) {
    this.root = root;
    this.jobId = jobId;
    this.onNotFound = onNotFound;
    this.cards = new Map();
    this.urls = new SignedUrls(jobId);
    this.manifests = new Map();
    this.stream = null;
    this.job = null;
  }

  async open() {
    clear(this.root).append(h('p', { class: 'loading', text: 'Loading the dub…' }));
    try {
      this.job = await api('GET', `/v1/jobs/${this.jobId}`);
    } catch (error) {
      if (error instanceof ApiError && error.status === 404) {
        this.onNotFound();
        return;
      }
      clear(this.root).append(h('p', { class: 'form-error', role: 'alert', text: error.message }));
      return;
    }
    this.render();
    if (!TERMINAL_STATUSES.has(this.job.status)) {
      this.stream = new JobStream(this.jobId, {
        onEvent: (kind, data) => this.receive(kind, data),
        onState: (state) => this.connection(state),
      });
      this.stream.start();
    }
  }

  render() {
    const job = this.job;
    const voice = job.inputs.voice;
    const title = jobTitle(job);
    document.title = `${title} · Dubbing`;
    this.status = h('span', { class: 'status-chip', text: '' });
    this.cancelButton = h('button', { type: 'button', class: 'secondary danger', id: 'cancel-job',
      onclick: () => this.cancel() }, 'Cancel dub');
    this.live = h('p', { class: 'visually-hidden', 'aria-live': 'polite', id: 'job-live' });
    this.connectionText = h('span', { class: 'connection', text: '' });
    this.transcripts = h('div', { class: 'transcripts', hidden: true });
    const head = h('header', { class: 'job-head card' },
      h('div', { class: 'job-title' },
        h('h1', {}, title),
        h('p', { class: 'meta' },
          title === languageLine(job) ? '' : `${languageLine(job)} · `,
          `${duration(voice.duration_seconds)} recording`,
          job.inputs.background ? ' · with background' : '',
          ` · started ${when(job.created_at)}`)),
      h('div', { class: 'job-actions' }, this.connectionText, this.status, this.cancelButton),
      this.transcripts, this.live);
    this.langs = h('div', { class: 'langs' });
    for (const task of job.tasks) {
      const card = new LanguageCard(this, task);
      this.cards.set(task.target_language, card);
      this.langs.append(card.element);
    }
    clear(this.root).append(
      h('nav', { class: 'crumbs' }, h('a', { href: '#/' }, icon('back', 16), 'My dubs')),
      head, this.langs);
    this.root.dataset.jobId = job.id;
    this.setStatus(job.status);
    this.urls.listeners.add(() => this.renderTranscripts());
    if (job.artifacts.some((a) => !a.target_language)) this.urls.refresh().catch(() => {});
  }

  setStatus(status) {
    this.job.status = status;
    this.status.textContent = STATUS_LABELS[status] || status;
    this.status.className = `status-chip status-${status}`;
    this.root.dataset.status = status;
    this.cancelButton.hidden = TERMINAL_STATUSES.has(status);
    if (TERMINAL_STATUSES.has(status)) this.connectionText.textContent = '';
  }

  announce(text) {
    this.live.textContent = text;
  }

  connection(state) {
    const words = { connecting: 'Connecting…', live: 'Live', reconnecting: 'Reconnecting…', done: '', closed: '' };
    this.connectionText.textContent = words[state] ?? '';
    this.connectionText.dataset.state = state;
  }

  receive(kind, data) {
    const card = data.target_language ? this.cards.get(data.target_language) : null;
    if (kind === 'done') {
      this.setStatus(data.status);
      this.announce(`Dub ${STATUS_LABELS[data.status] || data.status}`);
      return;
    }
    if (kind === 'artifact' && data.artifact && !data.artifact.target_language) {
      clearTimeout(this.transcriptTimer);
      this.transcriptTimer = setTimeout(() => this.urls.refresh().catch(() => {}), 300);
      return;
    }
    if (!card) return;
    if (kind === 'stage' || kind === 'progress' || kind === 'failed') {
      if (this.job.status === 'queued') this.setStatus('running');
      card.apply(data.stage, data.progress, data);
    }
  }

  // The job-level downloads (the original's transcript), redrawn when the set of them changes.
  renderTranscripts() {
    const items = this.urls.jobLevel();
    const key = items.map((a) => a.id).sort().join(',');
    if (!items.length || key === this.transcriptKey) return;
    this.transcriptKey = key;
    clear(this.transcripts).append(h('span', { class: 'transcripts-label', text: 'Original transcript' }),
      downloadList(this.urls, items));
    this.transcripts.hidden = false;
  }

  async manifestFor(language) {
    if (this.manifests.has(language)) return this.manifests.get(language);
    let artifact = this.urls.byKind(language, 'manifest');
    if (!artifact || this.urls.expired(artifact)) {
      await this.urls.refresh();
      artifact = this.urls.byKind(language, 'manifest');
    }
    if (!artifact) throw new Error('its files have expired and were removed.');
    const response = await fetch(artifact.download_url, { credentials: 'omit', cache: 'no-store' });
    if (!response.ok) throw new Error(`the manifest could not be read (${response.status})`);
    const manifest = await response.json();
    this.manifests.set(language, manifest);
    return manifest;
  }

  async showResult(card) {
    const language = card.language;
    const previousRevision = card.editor ? card.editor.previousRevision : null;
    this.manifests.delete(language);
    await this.urls.refresh();
    const manifest = await this.manifestFor(language);
    // A media job with a picture plays its dubbed video (and the uploaded video as the original).
    const dubbedKind = this.urls.byKind(language, 'video') ? 'video' : 'master_web';
    const web = this.urls.byKind(language, dubbedKind);
    if (!web) throw new Error('its files have expired and were removed.');
    const isVideo = dubbedKind === 'video';
    const vtt = this.urls.byKind(language, 'captions_vtt');
    const voice = this.urls.inputs.get('voice');
    const transcript = this.urls.jobLevel().find((a) => a.kind === 'transcript_vtt');
    const sources = {
      dubbed: { url: web.download_url, captions: vtt ? vtt.download_url : null, size: web.size_bytes, video: isVideo },
      original: voice ? { url: voice.download_url, captions: transcript ? transcript.download_url : null,
        size: voice.size_bytes, video: isVideo && voice.content_type.startsWith('video/') } : null,
    };
    const refresh = async (side) => {
      await this.urls.refresh();
      if (side === 'dubbed') {
        const fresh = this.urls.byKind(language, dubbedKind);
        return fresh ? { url: fresh.download_url } : null;
      }
      const fresh = this.urls.inputs.get('voice');
      return fresh ? { url: fresh.download_url } : null;
    };
    const sourceLanguage = manifest.source_language || this.job.source_language;
    if (card.player) card.player.destroy();
    if (card.editor) card.editor.stop();
    card.player = new Player({ language, sourceLanguage, sources, manifest, refresh });
    card.editor = new LineEditor(language, {
      jobId: this.jobId, urls: this.urls, sourceLanguage,
      onRender: (lang, after) => this.follow(lang, after),
      onSourceEdited: (from) => this.sourceEdited(from),
      onListen: () => card.player && card.player.pause(),
    });
    if (previousRevision) card.editor.previousRevision = previousRevision;
    card.editor.load().catch((error) => {
      card.editor.status.textContent = `The lines cannot be edited now: ${error.message}`;
    });
    const result = h('div', { class: 'result-grid' },
      h('div', { class: 'result-main' }, card.player.element, segmentTable(manifest, (t) => card.player.seek(t))),
      h('aside', { class: 'result-side' },
        card.editor.element,
        manifest.pivot ? h('p', { class: 'muted', text: `Translated through ${languageName(manifest.pivot)}` }) : null,
        figures(manifest),
        h('h3', { text: 'Downloads' }),
        downloadList(this.urls, this.urls.forLanguage(language))));
    clear(card.result).append(result);
    card.result.hidden = false;
  }

  // A render started from a language's editor: its card goes back to work and follows the progress stream
  // from the render's first event (the stream closed when the job first finished).
  follow(language, afterEvent) {
    const card = this.cards.get(language);
    if (!card) return;
    card.restart('queued'); // the stream's first event names the stage it starts at
    this.setStatus('running');
    if (this.stream && !this.stream.closed) return;
    this.stream = new JobStream(this.jobId, {
      onEvent: (kind, data) => this.receive(kind, data),
      onState: (state) => this.connection(state),
      after: afterEvent,
    });
    this.stream.start();
  }

  // The source text changed in one language's editor: every other language's lines are stale now.
  sourceEdited(from) {
    for (const card of this.cards.values()) {
      if (card.editor && card.editor !== from) card.editor.load().catch(() => {});
    }
  }

  async cancel() {
    this.cancelButton.disabled = true;
    try {
      const job = await api('POST', `/v1/jobs/${this.jobId}/cancel`);
      for (const task of job.tasks) {
        const card = this.cards.get(task.target_language);
        if (card) card.apply(task.stage, task.progress, { error: task.error });
      }
      this.setStatus(job.status);
    } catch (error) {
      this.announce(`Could not cancel: ${error.message}`);
    } finally {
      this.cancelButton.disabled = false;
    }
  }

  close() {
    clearTimeout(this.transcriptTimer);
    if (this.stream) this.stream.close();
    this.urls.stop();
    for (const card of this.cards.values()) card.destroy();
  }
}
