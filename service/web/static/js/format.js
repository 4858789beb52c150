// Words and numbers as people read them.

const names = new Intl.DisplayNames(['en'], { type: 'language', fallback: 'code' });

export function languageName(code) {
  if (code === 'auto') return 'Detect automatically';
  try {
    const name = names.of(code);
    return name && name !== code ? name : code.toUpperCase();
  } catch {
    return code.toUpperCase();
  }
}

export function languageList(codes) {
  return new Intl.ListFormat('en', { style: 'short', type: 'conjunction' }).format(codes.map(languageName));
}

export const STAGE_LABELS = {
  queued: 'Waiting to start',
  stt: 'Transcribing',
  translating: 'Translating',
  dubbing: 'Speaking the translation',
  mixing: 'Mixing',
  exporting: 'Exporting',
  complete: 'Complete',
  failed: 'Failed',
  cancelled: 'Cancelled',
};

export const STATUS_LABELS = {
  queued: 'Queued',
  running: 'Working',
  complete: 'Complete',
  partial: 'Partly complete',
  failed: 'Failed',
  cancelled: 'Cancelled',
};

// The stages' order comes from the service (`/config.json` "stages"), set once by `useStages` before any view:
// a stage's rank (the terminal ones rank alike, after all others) and the set of terminal stages.
export const STAGE_RANK = {};
export const TERMINAL_STAGES = new Set();

export function useStages({ order, terminal }) {
  for (const stage of terminal) TERMINAL_STAGES.add(stage);
  order.forEach((stage, i) => { STAGE_RANK[stage] = TERMINAL_STAGES.has(stage) ? order.length : i; });
}
export const TERMINAL_STATUSES = new Set(['complete', 'partial', 'failed', 'cancelled']);

export function bytes(n) {
  if (!Number.isFinite(n)) return '';
  const units = ['bytes', 'KB', 'MB', 'GB'];
  let i = 0;
  let value = n;
  while (value >= 1000 && i < units.length - 1) {
    value /= 1000;
    i += 1;
  }
  return `${value.toFixed(i === 0 || value >= 100 ? 0 : 1)} ${units[i]}`;
}

export function clock(seconds) {
  if (!Number.isFinite(seconds) || seconds < 0) seconds = 0;
  const m = Math.floor(seconds / 60);
  const s = Math.floor(seconds % 60);
  return `${m}:${String(s).padStart(2, '0')}`;
}

export function duration(seconds) {
  if (!Number.isFinite(seconds)) return '';
  if (seconds < 60) return `${seconds.toFixed(seconds < 10 ? 1 : 0)} s`;
  return `${Math.floor(seconds / 60)} min ${Math.round(seconds % 60)} s`;
}

const dateFormat = new Intl.DateTimeFormat('en', { dateStyle: 'medium', timeStyle: 'short' });
const timeFormat = new Intl.DateTimeFormat('en', { timeStyle: 'short' });

export function when(iso) {
  const date = new Date(iso);
  const today = new Date();
  return date.toDateString() === today.toDateString() ? `Today ${timeFormat.format(date)}` : dateFormat.format(date);
}

export function percent(fraction) {
  return `${Math.round(Math.max(0, Math.min(1, fraction || 0)) * 100)} %`;
}

export function signed(value, digits = 1) {
  return `${value < 0 ? '−' : ''}${Math.abs(value).toFixed(digits)}`;
}

// The service's accepted formats as a sentence: "WAV, MP3, M4A, AAC, OGG, Opus, WebM or FLAC".
export function formatNames(formats) {
  return new Intl.ListFormat('en', { style: 'long', type: 'disjunction' }).format(formats.map((f) => f.name));
}

// What a job is called: the voice recording's file name, else (jobs from before names were kept) its languages.
export function jobTitle(job) {
  const voice = job.inputs.voice;
  return voice && voice.filename ? voice.filename : languageLine(job);
}

export function languageLine(job) {
  const detected = job.detected_language;
  const heard = detected ? `${languageName(detected.code)}${detected.confidence == null ? ''
    : ` (${Math.round(detected.confidence * 100)} %)`}` : '';
  const source = job.source_language === 'auto' ? (heard ? `Detected: ${heard}` : 'Detected language')
    : languageName(job.source_language);
  return `${source} → ${languageList(job.tasks.map((t) => t.target_language))}`;
}
