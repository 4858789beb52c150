// Who is signed in, and the access token for the API.
//
// Tokens live in memory and in this tab's sessionStorage (gone when the tab closes), never in
// localStorage, cookies or URLs. Cloud mode uses Supabase Auth through the vendored supabase-js;
// local mode asks the service's local-only endpoint for a token for a user name.

import { api, ApiError } from './api.js';

const SESSION_KEY = 'dubbing.session';
const SUPABASE_JS = '/static/vendor/supabase/supabase.js';

function decodeClaims(token) {
  try {
    const payload = token.split('.')[1].replace(/-/g, '+').replace(/_/g, '/');
    return JSON.parse(atob(payload.padEnd(payload.length + ((4 - (payload.length % 4)) % 4), '=')));
  } catch {
    return null;
  }
}

let scriptPolicy = null;

// The one script the page ever adds, through the one Trusted Types policy the CSP allows.
function loadSupabase() {
  if (window.supabase) return Promise.resolve(window.supabase);
  if (!scriptPolicy) {
    const create = (url) => {
      if (url !== SUPABASE_JS) throw new TypeError(`Refusing to load ${url}`);
      return url;
    };
    scriptPolicy = window.trustedTypes ? window.trustedTypes.createPolicy('dubbing', { createScriptURL: create })
      : { createScriptURL: create };
  }
  return new Promise((resolve, reject) => {
    const script = document.createElement('script');
    script.src = scriptPolicy.createScriptURL(SUPABASE_JS);
    script.addEventListener('load', () => resolve(window.supabase));
    script.addEventListener('error', () => reject(new Error('Could not load the sign-in library.')));
    document.head.append(script);
  });
}

// supabase-js keeps its session under one key; the PKCE code verifier of a magic link must survive
// the link opening in another tab, so only that one-time value goes to localStorage.
const authStorage = {
  pick: (key) => (key.endsWith('-code-verifier') ? window.localStorage : window.sessionStorage),
  getItem(key) { return this.pick(key).getItem(key); },
  setItem(key, value) { this.pick(key).setItem(key, value); },
  removeItem(key) { this.pick(key).removeItem(key); },
};

export class Auth {
  constructor(config, onChange) {
    this.config = config;
    this.mode = config.mode;
    this.onChange = onChange;
    this.session = null; // {token, user: {id, email}, expiresAt}
    this.client = null;
  }

  get user() {
    return this.session ? this.session.user : null;
  }

  async start() {
    if (this.mode === 'cloud') {
      if (!this.config.supabase || !this.config.supabase.anon_key) return;
      const lib = await loadSupabase();
      this.client = lib.createClient(this.config.supabase.url, this.config.supabase.anon_key, {
        auth: { storage: authStorage, persistSession: true, autoRefreshToken: true, detectSessionInUrl: true,
          flowType: 'pkce' },
      });
      this.client.auth.onAuthStateChange((_event, session) => this.adoptSupabase(session));
      const { data } = await this.client.auth.getSession();
      this.adoptSupabase(data.session);
      return;
    }
    try {
      const saved = JSON.parse(window.sessionStorage.getItem(SESSION_KEY) || 'null');
      if (saved && saved.token && saved.expiresAt * 1000 > Date.now() + 60_000) this.session = saved;
    } catch {
      window.sessionStorage.removeItem(SESSION_KEY);
    }
  }

  adoptSupabase(session) {
    const before = this.session && this.session.user.id;
    this.session = session ? {
      token: session.access_token,
      user: { id: session.user.id, email: session.user.email },
      expiresAt: session.expires_at,
    } : null;
    if ((this.session && this.session.user.id) !== before) this.onChange(this.session);
  }

  remember(session) {
    this.session = session;
    window.sessionStorage.setItem(SESSION_KEY, JSON.stringify(session));
    this.onChange(session);
  }

  async token() {
    if (this.client) {
      const { data } = await this.client.auth.getSession(); // refreshes an expiring token
      return data.session ? data.session.access_token : null;
    }
    if (this.session && this.session.expiresAt * 1000 > Date.now()) return this.session.token;
    return null;
  }

  async signInLocal(name) {
    const answer = await api('POST', '/local/token', { user: name }, { auth: false });
    this.remember({ token: answer.access_token, user: answer.user, expiresAt: answer.expires_at });
  }

  async signInWithToken(raw) {
    const token = raw.trim().replace(/^Bearer\s+/i, '');
    const claims = decodeClaims(token);
    if (!claims || !claims.sub || !claims.exp) {
      throw new ApiError(422, 'invalid_token', 'That does not look like an access token.');
    }
    if (claims.exp * 1000 <= Date.now()) throw new ApiError(401, 'token_expired', 'That token has expired.');
    const previous = this.session;
    this.session = { token, user: { id: claims.sub, email: claims.email }, expiresAt: claims.exp };
    try {
      await api('GET', '/v1/jobs?limit=1'); // the service verifies it
    } catch (error) {
      this.session = previous;
      throw error;
    }
    this.remember(this.session);
  }

  async signInWithPassword(email, password) {
    const { error } = await this.client.auth.signInWithPassword({ email, password });
    if (error) throw new ApiError(error.status || 400, error.code || 'sign_in_failed', error.message);
  }

  async sendMagicLink(email) {
    const { error } = await this.client.auth.signInWithOtp({
      email, options: { emailRedirectTo: `${window.location.origin}${window.location.pathname}` },
    });
    if (error) throw new ApiError(error.status || 400, error.code || 'magic_link_failed', error.message);
  }

  async signOut() {
    window.sessionStorage.removeItem(SESSION_KEY);
    if (this.client) await this.client.auth.signOut({ scope: 'local' });
    const had = this.session;
    this.session = null;
    if (had) this.onChange(null);
  }
}
