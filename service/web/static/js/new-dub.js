// The "New dub" form: files (picked or dropped), languages, uploads with progress, the job.

import { api, ApiError } from './api.js';
import { $, clear, h } from './dom.js';
import { bytes, duration, formatNames, languageName } from './format.js';
import { contentTypeOf, putFile, UploadCancelled } from './upload.js';

const FIELDS = ['voice', 'background', 'source', 'targets', 'form'];

function humanize(error, formats) {
  let message = error.message || '';
  if (error.code === 'unsupported_content_type' || error.code === 'InvalidMimeType') {
    message = `${message.split('; use one of')[0]}. Choose a ${formatNames(formats)} file.`;
  }
  return message
    .replace(/'voice_object'/g, 'The voice recording')
    .replace(/'background_object'/g, 'The background')
    .replace(/'target_languages'/g, 'The target languages')
    .replace(/'source_language'/g, 'The spoken language');
}

// Which field an API error is about, so its message appears next to that field.
function fieldOf(error) {
  const message = error.message || '';
  switch (error.code) {
    case 'object_not_found':
    case 'audio_undecodable':
    case 'unsupported_content_type':
    case 'file_too_large':
      return message.includes('background') ? 'background' : 'voice';
    case 'unsupported_language':
      return /understands|recognition/.test(message) ? 'source' : 'targets';
    case 'unknown_language':
    case 'same_language':
      return 'targets';
    case 'invalid_field':
    case 'missing_field':
      if (message.includes('target_languages')) return 'targets';
      if (message.includes('source_language')) return 'source';
      if (message.includes('background')) return 'background';
      if (message.includes('voice')) return 'voice';
      return 'form';
    default:
      return 'form';
  }
}

class FilePicker {
  constructor(kind, form, onChange, check) {
    this.kind = kind;
    this.check = check; // file -> Promise of a refusal's words, or null
    this.checked = Promise.resolve(null);
    this.input = $(`#${kind}-input`, form);
    this.zone = $(`#${kind}-drop`, form);
    this.summary = $(`#${kind}-file`, form);
    this.clearButton = $(`#${kind}-clear`, form);
    this.file = null;
    this.onChange = onChange;
    this.input.addEventListener('change', () => this.set(this.input.files[0] || null));
    for (const type of ['dragenter', 'dragover']) {
      this.zone.addEventListener(type, (event) => {
        event.preventDefault();
        event.dataTransfer.dropEffect = 'copy';
        this.zone.classList.add('dragging');
      });
    }
    this.zone.addEventListener('dragleave', () => this.zone.classList.remove('dragging'));
    this.zone.addEventListener('drop', (event) => {
      event.preventDefault();
      this.zone.classList.remove('dragging');
      const files = event.dataTransfer.files;
      if (!files || !files.length) return;
      try {
        this.input.files = files;
      } catch {
        // older browsers: keep the dropped file without mirroring it into the input
      }
      this.set(files[0]);
    });
    if (this.clearButton) this.clearButton.addEventListener('click', () => this.reset());
  }

  set(file) {
    this.file = file;
    clear(this.summary);
    this.zone.classList.toggle('has-file', Boolean(file));
    if (this.clearButton) this.clearButton.hidden = !file;
    this.onChange(this.kind);
    if (file) {
      const details = h('span', { class: 'file-meta', text: bytes(file.size) });
      this.summary.append(h('span', { class: 'file-name', text: file.name }), details);
      // Checked as soon as it is picked, in this browser: its type, its size, and that it decodes.
      this.checked = this.check(file, (seconds) => {
        if (this.file === file) details.textContent = `${bytes(file.size)} · ${duration(seconds)}`;
      });
      this.checked.then((refusal) => {
        if (refusal && this.file === file) this.onRefused(this.kind, refusal);
      });
    } else {
      this.checked = Promise.resolve(null);
    }
  }

  reset() {
    this.input.value = '';
    this.set(null);
  }

  setDisabled(disabled) {
    this.input.disabled = disabled;
    this.zone.classList.toggle('disabled', disabled);
    if (this.clearButton) this.clearButton.disabled = disabled;
  }
}

// Whether the browser can read the file as audio (a blob: URL, never uploaded): its length when it can,
// `undecodable` when it should be able to (its type is one it plays) and cannot, `unknown` otherwise.
function probeAudio(file, type) {
  return new Promise((resolve) => {
    const audio = document.createElement('audio');
    const judged = audio.canPlayType(type) !== '';
    const url = URL.createObjectURL(file);
    let settled = false;
    const done = (value) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      URL.revokeObjectURL(url);
      audio.removeAttribute('src');
      resolve(value);
    };
    audio.preload = 'metadata';
    audio.addEventListener('loadedmetadata', () => done({ seconds: Number.isFinite(audio.duration) ? audio.duration : null }));
    audio.addEventListener('error', () => done(judged ? { undecodable: true } : { unknown: true }));
    const timer = setTimeout(() => done({ unknown: true }), 5000);
    audio.src = url;
  });
}

export class NewDubForm {
  constructor(form, { config, navigate }) {
    this.form = form;
    this.config = config;
    this.navigate = navigate;
    this.catalog = null;
    this.uploads = [];
    this.busy = false;
    this.source = $('#source', form);
    this.targets = $('#targets', form);
    this.submit = $('#dub-submit', form);
    this.cancel = $('#upload-cancel', form);
    this.progressList = $('#upload-list', form);
    this.progressPanel = $('#upload-panel', form);
    this.mixedField = $('#mixed-field', form);
    this.mixed = $('#mixed-input', form);
    this.voiceChoice = $('#offline-voice', form);
    this.voiceTouched = false;
    this.formats = config.uploads.formats;
    // A video picked as the voice is a media job: the service separates its voice and background itself.
    this.videoFormats = config.uploads.media ? config.uploads.media.formats : [];
    this.allFormats = [...this.formats, ...this.videoFormats];
    const check = (file, onDuration) => this.checkFile(file, onDuration);
    this.pickers = {
      voice: new FilePicker('voice', form, (kind) => this.picked(kind), check),
      background: new FilePicker('background', form, (kind) => this.picked(kind), check),
    };
    for (const picker of Object.values(this.pickers)) {
      picker.onRefused = (kind, message) => this.showError(kind, message);
      picker.input.accept = this.formats.flatMap((f) => [...f.types, ...f.extensions]).join(',');
    }
    this.pickers.voice.input.accept = this.allFormats.flatMap((f) => [...f.types, ...f.extensions]).join(',');
    $('#voice-hint', form).textContent = `The speech to dub, alone or with music under it. ${formatNames(this.formats)}.`
      + (this.videoFormats.length ? ` Or a video: ${formatNames(this.videoFormats)}.` : '');
    $('#background-hint', form).textContent = `Optional. It is mixed under the dubbed voice. ${formatNames(this.formats)}.`;
    this.source.addEventListener('change', () => {
      this.renderTargets();
      this.clearError('source');
    });
    for (const radio of this.voiceChoice.querySelectorAll('input')) {
      radio.addEventListener('change', () => { this.voiceTouched = true; });
    }
    form.addEventListener('submit', (event) => {
      event.preventDefault();
      this.start();
    });
    this.cancel.addEventListener('click', () => this.abortUploads());
    // A file dropped beside a drop zone must not make the browser leave the page to open it.
    for (const type of ['dragover', 'drop']) window.addEventListener(type, (event) => event.preventDefault());
  }

  // A picked file's refusal in words (or null): the same formats the hint lists, the size limit, and whether it
  // decodes as audio in this browser; before anything is uploaded.
  async checkFile(file, onDuration) {
    const video = this.isVideo(file) && file === this.pickers.voice.file;
    const type = contentTypeOf(file, this.allFormats);
    const names = formatNames(video ? this.allFormats : this.formats);
    if (!video && !this.formats.some((f) => f.types.includes(type))) {
      const what = type === 'application/octet-stream' ? 'not an audio file' : `a ${type} file`;
      return `${file.name} is ${what}. Choose a ${names} file.`;
    }
    const limit = video ? this.config.uploads.media.max_bytes : this.config.uploads.max_bytes;
    if (file.size > limit) return `${file.name} is ${bytes(file.size)}; files may be at most ${bytes(limit)}.`;
    if (file.size === 0) return `${file.name} is empty.`;
    const probe = await probeAudio(file, type);
    if (probe.undecodable) {
      return `${file.name} does not play as audio: it may be damaged, or not the ${names} file its name says.`;
    }
    if (probe.seconds) onDuration(probe.seconds);
    return null;
  }

  picked(kind) {
    this.clearError(kind);
    this.renderMixed();
  }

  // An audio recording with no separate background may have its music mixed in: then it is a media job too.
  renderMixed() {
    const voice = this.pickers.voice.file;
    const offered = this.videoFormats.length > 0 && voice && !this.isVideo(voice) && !this.pickers.background.file;
    this.mixedField.hidden = !offered;
    if (!offered) this.mixed.checked = false;
  }

  // Offline, a job may be spoken by the natural voice (Kokoro: clearer, slower) or the fast one (espeak-ng):
  // offered when a chosen language has both; untouched, the server's default for the languages applies.
  renderVoiceChoice() {
    const options = this.catalog && this.catalog.offline_voices;
    const chosen = this.chosenTargets();
    const natural = options ? chosen.filter((code) => options.natural.includes(code)) : [];
    this.voiceChoice.hidden = natural.length === 0;
    if (!natural.length) return;
    if (!this.voiceTouched) {
      const byDefault = natural.some((code) => options.natural_by_default.includes(code));
      $(byDefault ? '#offline-voice-natural' : '#offline-voice-fast', this.form).checked = true;
    }
    const others = chosen.filter((code) => !natural.includes(code));
    $('#offline-voice-hint', this.form).textContent = 'Natural is far easier to understand; dubbing takes several times '
      + 'as long. Fast sounds robotic and is ready sooner.'
      + (others.length ? ` ${others.map(languageName).join(', ')}: always the fast voice.` : '');
  }

  offlineVoice() {
    if (this.voiceChoice.hidden || !this.voiceTouched) return null;
    const checked = this.voiceChoice.querySelector('input:checked');
    return checked ? checked.value : null;
  }

  isVideo(file) {
    const type = contentTypeOf(file, this.allFormats);
    return this.videoFormats.some((f) => f.types.includes(type));
  }

  async load() {
    const hint = $('#languages-hint', this.form);
    try {
      this.catalog = await api('GET', '/v1/languages');
    } catch (error) {
      this.showError('source', error.message);
      return;
    }
    const previous = this.source.value;
    clear(this.source);
    const sources = [...this.catalog.sources].sort((a, b) => languageName(a.code).localeCompare(languageName(b.code)));
    if (this.catalog.detect.available) this.source.append(h('option', { value: 'auto', text: languageName('auto') }));
    for (const source of sources) this.source.append(h('option', { value: source.code, text: languageName(source.code) }));
    const codes = [...this.source.options].map((o) => o.value);
    this.source.value = codes.includes(previous) ? previous : codes.includes('auto') ? 'auto'
      : codes.includes('en') ? 'en' : codes[0] || '';
    if (!codes.length) this.showError('source', 'No language can be dubbed with the engines installed on this service.');
    hint.hidden = this.catalog.detect.available;
    this.renderTargets();
  }

  targetsFor(source) {
    if (!this.catalog) return [];
    if (source === 'auto') return this.catalog.detect.targets;
    const entry = this.catalog.sources.find((s) => s.code === source);
    return entry ? entry.targets : [];
  }

  renderTargets() {
    const chosen = new Set(this.chosenTargets());
    clear(this.targets);
    const targets = [...this.targetsFor(this.source.value)]
      .sort((a, b) => languageName(a).localeCompare(languageName(b)));
    for (const code of targets) {
      const id = `target-${code}`;
      this.targets.append(h('div', { class: 'chip' },
        h('input', { type: 'checkbox', id, name: 'targets', value: code, checked: chosen.has(code),
          onchange: () => { this.clearError('targets'); this.renderVoiceChoice(); } }),
        h('label', { for: id }, languageName(code), h('span', { class: 'code', text: code }))));
    }
    if (!targets.length) this.targets.append(h('p', { class: 'muted', text: 'No target language for this source.' }));
    this.renderVoiceChoice();
  }

  chosenTargets() {
    return [...this.targets.querySelectorAll('input[type=checkbox]:checked')].map((input) => input.value);
  }

  errorElement(field) {
    return $(`#${field}-error`, this.form);
  }

  showError(field, message) {
    const el = this.errorElement(field);
    el.textContent = message;
    el.hidden = false;
    const control = { voice: '#voice-input', background: '#background-input', source: '#source' }[field];
    if (control) $(control, this.form).setAttribute('aria-invalid', 'true');
    if (field === 'targets') this.targets.setAttribute('aria-invalid', 'true');
    const container = el.closest('.field');
    if (container) container.classList.add('invalid');
  }

  clearError(field) {
    const el = this.errorElement(field);
    if (!el) return;
    el.textContent = '';
    el.hidden = true;
    const container = el.closest('.field');
    if (container) container.classList.remove('invalid');
    for (const control of this.form.querySelectorAll('[aria-invalid]')) {
      if (container && container.contains(control)) control.removeAttribute('aria-invalid');
    }
  }

  setBusy(busy) {
    this.busy = busy;
    this.submit.disabled = busy;
    this.submit.textContent = busy ? 'Uploading…' : 'Dub it';
    this.source.disabled = busy;
    for (const input of this.targets.querySelectorAll('input')) input.disabled = busy;
    for (const input of this.form.querySelectorAll('#mixed-input, #offline-voice input')) input.disabled = busy;
    for (const picker of Object.values(this.pickers)) picker.setDisabled(busy);
    this.cancel.hidden = !busy;
  }

  async validate() {
    let ok = true;
    if (!this.pickers.voice.file) {
      this.showError('voice', 'Choose the voice recording to dub.');
      ok = false;
    }
    for (const kind of ['voice', 'background']) {
      const refusal = this.pickers[kind].file ? await this.pickers[kind].checked : null;
      if (refusal) {
        this.showError(kind, refusal);
        ok = false;
      }
    }
    const targets = this.chosenTargets();
    if (!targets.length) {
      this.showError('targets', 'Pick at least one language to dub into.');
      ok = false;
    } else if (targets.length > this.config.max_target_languages) {
      this.showError('targets', `Pick at most ${this.config.max_target_languages} languages.`);
      ok = false;
    }
    return ok;
  }

  async start() {
    if (this.busy) return;
    for (const field of FIELDS) this.clearError(field);
    this.busy = true; // while the picked files' checks finish
    const valid = await this.validate();
    this.busy = false;
    if (!valid) {
      const first = this.form.querySelector('.field.invalid input, .field.invalid select');
      if (first) first.focus();
      return;
    }
    const media = this.isVideo(this.pickers.voice.file) || this.mixed.checked;
    if (media && this.pickers.background.file) {
      this.showError('background', 'A video brings its own background: remove the music bed, or pick an audio voice.');
      return;
    }
    const files = ['voice', 'background'].filter((kind) => this.pickers[kind].file)
      .map((kind) => ({ kind: media && kind === 'voice' ? 'media' : kind, field: kind, file: this.pickers[kind].file,
        contentType: contentTypeOf(this.pickers[kind].file, this.allFormats) }));
    this.setBusy(true);
    this.cancelRequested = false;
    this.renderProgress(files);
    try {
      // One request per file, so an error names the file it is about.
      const signed = await Promise.all(files.map((entry) => api('POST', '/v1/uploads', {
        files: [{ kind: entry.kind, filename: entry.file.name, content_type: entry.contentType,
          size_bytes: entry.file.size }],
      }).then((answer) => answer.uploads[0]).catch((error) => { error.field = entry.field; throw error; })));
      if (this.cancelRequested) throw new UploadCancelled();
      this.uploads = files.map((entry, index) => {
        const upload = putFile(signed[index].upload_url, entry.file, entry.contentType,
          (fraction) => this.setProgress(entry.field, fraction));
        upload.promise.catch((error) => { error.field = entry.field; });
        return upload;
      });
      await Promise.all(this.uploads.map((u) => u.promise));
      this.uploads = [];
      this.cancel.hidden = true;
      this.submit.textContent = 'Starting…';
      const objects = Object.fromEntries(files.map((entry, index) => [entry.field, signed[index].object_path]));
      const body = {
        [media ? 'media_object' : 'voice_object']: objects.voice,
        source_language: this.source.value,
        target_languages: this.chosenTargets(),
        idempotency_key: crypto.randomUUID(),
      };
      if (objects.background) body.background_object = objects.background;
      const voice = this.offlineVoice();
      if (voice) body.offline_voice = voice;
      const job = await api('POST', '/v1/jobs', body);
      this.reset();
      this.navigate(`#/jobs/${job.id}`);
    } catch (error) {
      this.abortUploads(false);
      this.setBusy(false);
      if (error instanceof UploadCancelled) {
        this.showError('form', 'Upload cancelled. Nothing was sent for dubbing.');
        this.progressPanel.hidden = true;
        return;
      }
      if (!(error instanceof ApiError)) throw error;
      if (error.status === 401) return; // the sign-in screen takes over
      const field = error.field || fieldOf(error);
      const file = error.field && this.pickers[error.field] ? this.pickers[error.field].file : null;
      const message = humanize(error, this.formats);
      this.showError(field, file ? `${file.name}: ${message}` : message);
      this.progressPanel.hidden = true;
      const control = this.form.querySelector('.field.invalid input, .field.invalid select');
      if (control) control.focus();
    }
  }

  abortUploads(byUser = true) {
    if (byUser) this.cancelRequested = true;
    const running = this.uploads;
    this.uploads = [];
    for (const upload of running) upload.abort();
  }

  renderProgress(files) {
    clear(this.progressList);
    this.rows = {};
    for (const { field: kind, file } of files) {
      const bar = h('progress', { max: '100', value: '0', 'aria-label': `Uploading ${file.name}` });
      const pct = h('span', { class: 'pct', text: '0 %' });
      const row = h('li', { class: 'upload-row', dataset: { kind } },
        h('span', { class: 'upload-name' }, h('strong', { text: kind === 'voice' ? 'Voice' : 'Background' }),
          ` ${file.name}`),
        bar, pct);
      this.rows[kind] = { bar, pct, row };
      this.progressList.append(row);
    }
    this.progressPanel.hidden = false;
    // The bars and "Cancel upload" come into view (the form is longer than a screen).
    this.cancel.hidden = false;
    this.cancel.scrollIntoView({ block: 'nearest' });
    this.progressPanel.scrollIntoView({ block: 'nearest' });
  }

  setProgress(kind, fraction) {
    const row = this.rows && this.rows[kind];
    if (!row) return;
    const value = Math.round(fraction * 100);
    row.bar.value = value;
    row.pct.textContent = `${value} %`;
    row.row.classList.toggle('done', value >= 100);
  }

  reset() {
    this.pickers.voice.reset();
    this.pickers.background.reset();
    for (const input of this.targets.querySelectorAll('input')) input.checked = false;
    this.voiceTouched = false;
    this.renderMixed();
    this.renderVoiceChoice();
    this.progressPanel.hidden = true;
    this.setBusy(false);
  }
}
