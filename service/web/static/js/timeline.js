// Where speech was placed: the original's speech above, the dubbed speech below, each segment joined
// to its dubbed line, over the two waveforms, with the playhead. Drawn on a canvas; the segment table
// beside it carries the same facts as text.

export function peaksOf(audioBuffer, columns = 1600) {
  const channels = [];
  for (let c = 0; c < Math.min(audioBuffer.numberOfChannels, 2); c += 1) channels.push(audioBuffer.getChannelData(c));
  const length = channels[0].length;
  const step = Math.max(1, Math.floor(length / columns));
  const peaks = new Float32Array(Math.ceil(length / step));
  let loudest = 1e-6;
  for (let i = 0, p = 0; i < length; i += step, p += 1) {
    let max = 0;
    const end = Math.min(length, i + step);
    for (const data of channels) {
      for (let j = i; j < end; j += 4) {
        const v = Math.abs(data[j]);
        if (v > max) max = v;
      }
    }
    peaks[p] = max;
    if (max > loudest) loudest = max;
  }
  for (let p = 0; p < peaks.length; p += 1) peaks[p] /= loudest;
  return { peaks, seconds: audioBuffer.duration };
}

const decoded = new Map();

// Decode an audio URL into peaks; null when it is too large to be worth it or the browser cannot.
// Cards of the same job share the original's URL, so it is fetched and decoded once.
export function fetchPeaks(url, sizeBytes, maxBytes = 30_000_000) {
  if (!url || (sizeBytes && sizeBytes > maxBytes)) return Promise.resolve(null);
  if (!decoded.has(url)) decoded.set(url, decodePeaks(url));
  return decoded.get(url);
}

async function decodePeaks(url) {
  try {
    const response = await fetch(url, { credentials: 'omit' });
    if (!response.ok) return null;
    const data = await response.arrayBuffer();
    const context = new OfflineAudioContext(1, 1, 22050);
    return peaksOf(await context.decodeAudioData(data));
  } catch {
    return null;
  }
}

function cssVar(el, name, fallback) {
  const value = getComputedStyle(el).getPropertyValue(name).trim();
  return value || fallback;
}

function roundRect(ctx, x, y, w, h, r) {
  const radius = Math.min(r, w / 2, h / 2);
  ctx.beginPath();
  ctx.moveTo(x + radius, y);
  ctx.arcTo(x + w, y, x + w, y + h, radius);
  ctx.arcTo(x + w, y + h, x, y + h, radius);
  ctx.arcTo(x, y + h, x, y, radius);
  ctx.arcTo(x, y, x + w, y, radius);
  ctx.closePath();
}

export class Timeline {
  constructor(canvas, { duration, segments }) {
    this.canvas = canvas;
    this.duration = Math.max(duration || 0, ...segments.map((s) => Math.max(s.source_end, s.placed_end)), 0.1);
    this.segments = segments;
    this.waves = { original: null, dubbed: null };
    this.time = 0;
    this.frame = 0;
    this.observer = new ResizeObserver(() => this.draw());
    this.observer.observe(canvas);
    this.colorScheme = window.matchMedia('(prefers-color-scheme: dark)');
    this.onScheme = () => this.draw();
    this.colorScheme.addEventListener('change', this.onScheme);
  }

  setWave(kind, wave) {
    this.waves[kind] = wave;
    this.draw();
  }

  setTime(seconds) {
    this.time = seconds;
    if (!this.frame) {
      this.frame = requestAnimationFrame(() => {
        this.frame = 0;
        this.draw();
      });
    }
  }

  secondsAt(clientX) {
    const rect = this.canvas.getBoundingClientRect();
    const { left, width } = this.plotArea(rect.width);
    return Math.max(0, Math.min(this.duration, ((clientX - rect.left - left) / width) * this.duration));
  }

  plotArea(cssWidth) {
    const left = 8;
    return { left, width: Math.max(10, cssWidth - left * 2) };
  }

  segmentAt(seconds) {
    return this.segments.find((s) => seconds >= s.placed_start && seconds < s.placed_end) || null;
  }

  draw() {
    const canvas = this.canvas;
    const cssWidth = canvas.clientWidth;
    const cssHeight = canvas.clientHeight;
    if (!cssWidth || !cssHeight) return;
    const ratio = window.devicePixelRatio || 1;
    if (canvas.width !== Math.round(cssWidth * ratio) || canvas.height !== Math.round(cssHeight * ratio)) {
      canvas.width = Math.round(cssWidth * ratio);
      canvas.height = Math.round(cssHeight * ratio);
    }
    const ctx = canvas.getContext('2d');
    ctx.setTransform(ratio, 0, 0, ratio, 0, 0);
    ctx.clearRect(0, 0, cssWidth, cssHeight);

    const colors = {
      original: cssVar(canvas, '--tl-original', '#2f7fd8'),
      dubbed: cssVar(canvas, '--tl-dubbed', '#e0861a'),
      wave: cssVar(canvas, '--tl-wave', '#94a3b8'),
      lane: cssVar(canvas, '--tl-lane', '#f1f4f8'),
      text: cssVar(canvas, '--tl-text', '#5b6472'),
      warn: cssVar(canvas, '--tl-warn', '#d9412b'),
      playhead: cssVar(canvas, '--tl-playhead', '#111827'),
    };
    const { left, width } = this.plotArea(cssWidth);
    const x = (seconds) => left + (seconds / this.duration) * width;
    const axis = 18;
    const gap = Math.max(22, cssHeight * 0.2);
    const laneHeight = (cssHeight - axis - gap - 4) / 2;
    const lanes = {
      original: { top: 2, height: laneHeight },
      dubbed: { top: 2 + laneHeight + gap, height: laneHeight },
    };

    for (const [kind, lane] of Object.entries(lanes)) {
      ctx.fillStyle = colors.lane;
      roundRect(ctx, left, lane.top, width, lane.height, 6);
      ctx.fill();
      const wave = this.waves[kind];
      if (wave) {
        ctx.fillStyle = colors.wave;
        const mid = lane.top + lane.height / 2;
        const columns = Math.floor(width);
        for (let px = 0; px < columns; px += 2) {
          const seconds = (px / width) * this.duration;
          const index = Math.floor((seconds / wave.seconds) * wave.peaks.length);
          if (index >= wave.peaks.length) break;
          const amplitude = Math.max(0.5, wave.peaks[index] * (lane.height / 2 - 3));
          ctx.fillRect(left + px, mid - amplitude, 1.4, amplitude * 2);
        }
      }
    }

    const active = this.segmentAt(this.time);
    // Each original line joined to where its dubbed line was placed.
    for (const s of this.segments) {
      const warn = s.overflowed || s.stretch > 1.15 || s.cut_seconds > 0;
      ctx.beginPath();
      ctx.moveTo(x(s.source_start), lanes.original.top + lanes.original.height);
      ctx.lineTo(x(s.source_end), lanes.original.top + lanes.original.height);
      ctx.lineTo(x(s.placed_end), lanes.dubbed.top);
      ctx.lineTo(x(s.placed_start), lanes.dubbed.top);
      ctx.closePath();
      ctx.fillStyle = warn ? colors.warn : colors.dubbed;
      ctx.globalAlpha = s === active ? 0.35 : 0.14;
      ctx.fill();
      ctx.globalAlpha = 1;
    }
    const blocks = (kind, start, end, color) => {
      const lane = lanes[kind];
      for (const s of this.segments) {
        const x0 = x(s[start]);
        const w = Math.max(2, x(s[end]) - x0);
        ctx.globalAlpha = s === active ? 0.55 : 0.3;
        ctx.fillStyle = color;
        roundRect(ctx, x0, lane.top + 3, w, lane.height - 6, 4);
        ctx.fill();
        ctx.globalAlpha = 1;
        ctx.strokeStyle = color;
        ctx.lineWidth = s === active ? 2 : 1.2;
        ctx.stroke();
      }
    };
    blocks('original', 'source_start', 'source_end', colors.original);
    blocks('dubbed', 'placed_start', 'placed_end', colors.dubbed);

    // Time axis.
    ctx.fillStyle = colors.text;
    ctx.font = '11px system-ui, sans-serif';
    ctx.textBaseline = 'bottom';
    const steps = [1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800];
    const step = steps.find((s) => (s / this.duration) * width >= 56) || 3600;
    for (let t = 0; t <= this.duration + 1e-6; t += step) {
      const label = t >= 60 ? `${Math.floor(t / 60)}:${String(Math.round(t % 60)).padStart(2, '0')}` : `${t}s`;
      const tx = x(t);
      ctx.fillRect(tx, cssHeight - axis, 1, 4);
      ctx.textAlign = t === 0 ? 'left' : 'center';
      ctx.fillText(label, tx, cssHeight - 1);
    }

    // Playhead.
    const px = x(Math.min(this.time, this.duration));
    ctx.fillStyle = colors.playhead;
    ctx.fillRect(px - 1, 0, 2, cssHeight - axis);
    ctx.beginPath();
    ctx.arc(px, lanes.dubbed.top - gap / 2, 5, 0, Math.PI * 2);
    ctx.fill();
  }

  destroy() {
    this.observer.disconnect();
    this.colorScheme.removeEventListener('change', this.onScheme);
    if (this.frame) cancelAnimationFrame(this.frame);
  }
}
