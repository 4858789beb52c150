// Listening to one finished language: the dubbed web master with its captions in sync, an A/B switch
// to the original at the same position, and the timeline of where speech was placed.

import { clear, h, icon } from './dom.js';
import { clock, languageName } from './format.js';
import { fetchPeaks, Timeline } from './timeline.js';

const players = new Set();

export class Player {
  // sources: {dubbed: {url, captions, size}, original: {url, captions, size} | null}
  // refresh(kind): fresh signed URLs {url, captions} after an expiry
  constructor({ language, sourceLanguage, sources, manifest, refresh }) {
    this.language = language;
    this.sourceLanguage = sourceLanguage;
    this.sources = sources;
    this.manifest = manifest;
    this.refresh = refresh;
    this.side = 'dubbed';
    this.audio = {
      dubbed: this.makeAudio('dubbed', sources.dubbed, language),
      original: sources.original ? this.makeAudio('original', sources.original, sourceLanguage) : null,
    };
    this.build();
    players.add(this);
  }

  makeAudio(side, source, lang) {
    // The original can be a large WAV: fetch it only when someone listens to it. A dubbed video (and its
    // original) plays in a <video>: the picture shows, the side not listened to is hidden.
    const audio = h(source.video ? 'video' : 'audio', { class: source.video ? `${side} picture` : side,
      preload: side === 'dubbed' ? 'auto' : 'metadata', crossorigin: 'anonymous', src: source.url, dataset: { side },
      playsinline: source.video ? 'playsinline' : undefined, hidden: Boolean(source.video) && side !== 'dubbed' });
    if (source.captions) {
      const label = side === 'dubbed' ? `${languageName(lang)} (dubbed)` : `${languageName(lang)} (original)`;
      const track = h('track', { kind: 'captions', src: source.captions, label,
        srclang: lang && lang !== 'auto' ? lang : 'und', default: side === 'dubbed' });
      audio.append(track);
      // "hidden": cues load and become active, and the page renders them beside the player.
      track.track.mode = 'hidden';
      track.track.addEventListener('cuechange', () => this.renderCue());
    }
    for (const type of ['timeupdate', 'seeked', 'durationchange']) audio.addEventListener(type, () => this.tick(audio));
    audio.addEventListener('play', () => this.setPlaying(audio, true));
    audio.addEventListener('pause', () => this.setPlaying(audio, false));
    audio.addEventListener('ended', () => this.setPlaying(audio, false));
    audio.addEventListener('error', () => this.recover(side));
    return audio;
  }

  get active() {
    return this.audio[this.side];
  }

  build() {
    const duration = this.manifest ? this.manifest.duration_seconds : 0;
    this.playButton = h('button', { type: 'button', class: 'play', 'aria-label': 'Play', onclick: () => this.toggle() },
      icon('play', 22));
    this.timeText = h('span', { class: 'time', 'aria-hidden': 'true', text: `0:00 / ${clock(duration)}` });
    const option = (side, label, disabled) => h('button', {
      type: 'button', role: 'radio', class: 'ab-option', 'aria-checked': String(side === this.side),
      dataset: { side }, disabled, onclick: () => this.select(side), onkeydown: (e) => this.abKey(e),
      tabindex: side === this.side ? '0' : '-1', text: label,
    });
    this.abButtons = [
      option('dubbed', `Dubbed · ${languageName(this.language)}`, false),
      option('original', 'Original', !this.audio.original),
    ];
    const ab = h('div', { class: 'ab', role: 'radiogroup', 'aria-label': 'Listen to' }, this.abButtons);
    this.caption = h('p', { class: 'caption', dataset: { empty: 'true' } }, '');
    this.canvas = h('canvas', { class: 'timeline-canvas', 'aria-hidden': 'true' });
    this.slider = h('div', {
      class: 'timeline', role: 'slider', tabindex: '0', 'aria-label': 'Playback position',
      'aria-valuemin': '0', 'aria-valuemax': String(Math.round(duration)), 'aria-valuenow': '0',
      'aria-valuetext': `0:00 of ${clock(duration)}`,
      onkeydown: (e) => this.seekKey(e),
    }, this.canvas);
    this.slider.addEventListener('pointerdown', (event) => this.pointer(event));
    const legend = h('div', { class: 'legend' },
      h('span', { class: 'key original' }, 'Original speech'),
      h('span', { class: 'key dubbed' }, `Dubbed speech (${languageName(this.language)})`),
      h('span', { class: 'key warn' }, 'Sped up or ran long'));
    this.element = h('div', { class: 'player' },
      this.sources.dubbed.video ? this.audio.dubbed : null,
      this.sources.original && this.sources.original.video ? this.audio.original : null,
      h('div', { class: 'transport' }, this.playButton, this.timeText, ab),
      this.caption,
      this.slider,
      legend,
      this.sources.dubbed.video ? null : this.audio.dubbed,
      this.sources.original && this.sources.original.video ? null : this.audio.original);
    const segments = this.manifest ? this.manifest.segments : [];
    this.timeline = new Timeline(this.canvas, { duration, segments });
    if (!this.sources.dubbed.video) {
      fetchPeaks(this.sources.dubbed.url, this.sources.dubbed.size).then((wave) => wave && this.timeline.setWave('dubbed', wave));
    }
    if (this.sources.original && !this.sources.original.video) {
      fetchPeaks(this.sources.original.url, this.sources.original.size)
        .then((wave) => wave && this.timeline.setWave('original', wave));
    }
  }

  toggle() {
    const audio = this.active;
    if (audio.paused) {
      for (const other of players) if (other !== this) other.pause();
      audio.play().catch(() => {});
    } else {
      audio.pause();
    }
  }

  pause() {
    for (const audio of Object.values(this.audio)) if (audio && !audio.paused) audio.pause();
  }

  setPlaying(audio, playing) {
    if (audio !== this.active) return;
    clear(this.playButton).append(icon(playing ? 'pause' : 'play', 22));
    this.playButton.setAttribute('aria-label', playing ? 'Pause' : 'Play');
    this.element.classList.toggle('playing', playing);
  }

  // A/B: the other recording, from the same position, playing if this one was.
  select(side) {
    if (side === this.side || !this.audio[side]) return;
    const from = this.active;
    const to = this.audio[side];
    const playing = !from.paused;
    const position = from.currentTime;
    from.pause();
    if (from.tagName === 'VIDEO') from.hidden = true;
    if (to.tagName === 'VIDEO') to.hidden = false;
    this.side = side;
    to.currentTime = Number.isFinite(to.duration) ? Math.min(position, to.duration) : position;
    for (const button of this.abButtons) {
      const selected = button.dataset.side === side;
      button.setAttribute('aria-checked', String(selected));
      button.tabIndex = selected ? 0 : -1;
    }
    this.element.dataset.side = side;
    this.setPlaying(to, playing);
    if (playing) to.play().catch(() => {});
    this.renderCue();
  }

  abKey(event) {
    if (!['ArrowLeft', 'ArrowRight', 'ArrowUp', 'ArrowDown'].includes(event.key)) return;
    event.preventDefault();
    const next = this.side === 'dubbed' ? 'original' : 'dubbed';
    if (!this.audio[next]) return;
    this.select(next);
    this.abButtons.find((b) => b.dataset.side === next).focus();
  }

  seek(seconds) {
    const audio = this.active;
    const limit = Number.isFinite(audio.duration) ? audio.duration : this.timeline.duration;
    audio.currentTime = Math.max(0, Math.min(seconds, limit));
    this.tick(audio);
  }

  seekKey(event) {
    const now = this.active.currentTime;
    const moves = { ArrowLeft: -5, ArrowDown: -5, ArrowRight: 5, ArrowUp: 5, PageDown: -15, PageUp: 15 };
    if (event.key in moves) this.seek(now + moves[event.key]);
    else if (event.key === 'Home') this.seek(0);
    else if (event.key === 'End') this.seek(this.timeline.duration);
    else if (event.key === ' ' || event.key === 'Enter') this.toggle();
    else return;
    event.preventDefault();
  }

  pointer(event) {
    this.slider.focus();
    this.seek(this.timeline.secondsAt(event.clientX));
    const move = (e) => this.seek(this.timeline.secondsAt(e.clientX));
    const up = () => {
      window.removeEventListener('pointermove', move);
      window.removeEventListener('pointerup', up);
    };
    window.addEventListener('pointermove', move);
    window.addEventListener('pointerup', up);
  }

  tick(audio) {
    if (audio !== this.active) return;
    const total = this.timeline.duration;
    const now = audio.currentTime;
    this.timeText.textContent = `${clock(now)} / ${clock(total)}`;
    this.slider.setAttribute('aria-valuenow', String(Math.round(now)));
    this.slider.setAttribute('aria-valuetext', `${clock(now)} of ${clock(total)}`);
    this.timeline.setTime(now);
  }

  renderCue() {
    const track = this.active.textTracks[0];
    const cues = track && track.activeCues ? [...track.activeCues] : [];
    const text = cues.map((cue) => cue.text).join('\n');
    this.caption.textContent = text;
    this.caption.dataset.empty = String(!text);
    this.caption.lang = this.side === 'dubbed' ? this.language : (this.sourceLanguage || '');
  }

  // A signed URL expired (a seek after a long pause): fresh URLs, same position.
  async recover(side) {
    const audio = this.audio[side];
    if (!audio || this.recovering) return;
    this.recovering = true;
    try {
      const fresh = await this.refresh(side);
      if (!fresh) return;
      const position = audio.currentTime;
      audio.src = fresh.url;
      audio.currentTime = position;
    } finally {
      this.recovering = false;
    }
  }

  destroy() {
    this.pause();
    for (const audio of Object.values(this.audio)) {
      if (!audio) continue;
      audio.removeAttribute('src'); // stop any download still going
      audio.load();
    }
    this.timeline.destroy();
    players.delete(this);
  }
}
