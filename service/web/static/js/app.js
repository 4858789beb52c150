// The page: sign in, then "New dub" and "My dubs" (#/), or one dub (#/jobs/<id>).

import { api, ApiError, configureApi } from './api.js';
import { Auth } from './auth.js';
import { $, h, show } from './dom.js';
import { useStages } from './format.js';
import { JobView } from './job-view.js';
import { MyDubs } from './my-dubs.js';
import { NewDubForm } from './new-dub.js';

const views = { signin: $('#view-signin'), home: $('#view-home'), job: $('#view-job') };
const state = { config: null, auth: null, form: null, dubs: null, job: null, user: null };

function notice(text, kind = 'info') {
  const el = $('#notice');
  el.textContent = text;
  el.dataset.kind = kind;
  el.hidden = !text;
}

function navigate(hash) {
  if (window.location.hash === hash) route();
  else window.location.hash = hash;
}

function showView(name) {
  for (const [key, el] of Object.entries(views)) show(el, key === name);
  document.body.dataset.view = name;
}

function focusHeading(view) {
  const heading = view.querySelector('h1, h2');
  if (heading) {
    heading.setAttribute('tabindex', '-1');
    heading.focus({ preventScroll: true });
  }
}

function route() {
  if (state.job) {
    state.job.close();
    state.job = null;
  }
  if (!state.auth.session) {
    showView('signin');
    return;
  }
  const match = window.location.hash.match(/^#\/jobs\/([0-9a-f-]{36})$/i);
  if (match) {
    showView('job');
    window.scrollTo(0, 0);
    state.job = new JobView(views.job, match[1], {
      onNotFound: () => {
        notice('That dub does not exist, or it belongs to someone else.', 'error');
        navigate('#/');
      },
    });
    state.job.open().then(() => focusHeading(views.job));
    document.title = 'Dub · Dubbing';
    return;
  }
  showView('home');
  document.title = 'Dubbing';
  if (!state.form) {
    state.form = new NewDubForm($('#dub-form'), { config: state.config, navigate });
    state.dubs = new MyDubs($('#my-dubs'));
  }
  if (state.user !== state.auth.user.id) {
    state.user = state.auth.user.id;
    state.form.load();
  }
  state.dubs.load(true);
}

// Who is signed in, as they said it: the name typed (local mode), the email (cloud), else the token's subject.
function userLabel(user) {
  return user.name || user.email || user.id;
}

function onSession(session) {
  const box = $('#session');
  box.hidden = !session;
  $('#session-user').textContent = session ? userLabel(session.user) : '';
  if (!session) {
    state.user = null;
    if (state.form) state.form.reset();
  }
  if (state.config) {
    route();
    if (session) notice('');
    focusHeading(session ? views.home : views.signin);
  }
}

function sessionEnded(error) {
  if (!state.auth.session) return;
  notice(error.code === 'token_expired' ? 'Your session has expired. Please sign in again.'
    : 'The service did not accept your sign-in. Please sign in again.', 'error');
  state.auth.signOut();
}

function fieldError(id, message) {
  const el = $(`#${id}`);
  el.textContent = message || '';
  el.hidden = !message;
}

function busy(form, value) {
  for (const el of form.querySelectorAll('button, input, textarea')) el.disabled = value;
}

// Runs a sign-in step with the form's controls disabled; its failure goes to `failed`.
async function whileBusy(form, step, failed) {
  busy(form, true);
  try {
    await step();
  } catch (error) {
    failed(error);
  } finally {
    busy(form, false);
  }
}

function setupSignIn(config, auth) {
  const mode = config.mode;
  if (mode === 'local') {
    const form = $('#signin-local');
    form.hidden = false;
    form.addEventListener('submit', async (event) => {
      event.preventDefault();
      const name = $('#local-user').value.trim();
      fieldError('local-user-error', '');
      if (!name) {
        fieldError('local-user-error', 'Type the name your dubs are kept under.');
        $('#local-user').focus();
        return;
      }
      await whileBusy(form, () => auth.signInLocal(name), (error) => {
        fieldError('local-user-error', error.message.replace("'user'", 'The name'));
        $('#local-user').setAttribute('aria-invalid', 'true');
      });
    });
  } else if (mode === 'cloud' && config.supabase && config.supabase.anon_key) {
    const form = $('#signin-cloud');
    form.hidden = false;
    form.addEventListener('submit', async (event) => {
      event.preventDefault();
      fieldError('cloud-error', '');
      $('#magic-sent').hidden = true;
      const email = $('#email').value.trim();
      const password = $('#password').value;
      if (!email || !password) {
        fieldError('cloud-error', 'Type your email and password, or ask for a sign-in link.');
        return;
      }
      await whileBusy(form, () => auth.signInWithPassword(email, password),
        (error) => fieldError('cloud-error', error.message));
    });
    $('#magic-link').addEventListener('click', async () => {
      fieldError('cloud-error', '');
      const email = $('#email').value.trim();
      if (!email) {
        fieldError('cloud-error', 'Type your email first; we will send a sign-in link to it.');
        $('#email').focus();
        return;
      }
      await whileBusy(form, async () => {
        await auth.sendMagicLink(email);
        const sent = $('#magic-sent');
        sent.textContent = `We sent a sign-in link to ${email}. Open it in this browser.`;
        sent.hidden = false;
      }, (error) => fieldError('cloud-error', error.message));
    });
  } else if (mode === 'cloud') {
    $('#signin-unavailable').hidden = false;
  } else {
    const form = $('#signin-token');
    form.hidden = false;
    form.addEventListener('submit', async (event) => {
      event.preventDefault();
      fieldError('token-error', '');
      await whileBusy(form, () => auth.signInWithToken($('#token').value),
        (error) => fieldError('token-error', error.message));
    });
  }
}

async function main() {
  $('#sign-out').addEventListener('click', () => state.auth.signOut());
  try {
    state.config = await api('GET', '/config.json', undefined, { auth: false });
    useStages(state.config.stages);
  } catch (error) {
    notice(`The service could not be reached: ${error.message}`, 'error');
    return;
  }
  const pageOrigin = window.location.origin;
  const serviceOrigin = new URL(state.config.public_base_url).origin;
  if (!document.querySelector('meta[name="dubbing-api"]') && serviceOrigin !== pageOrigin) {
    const el = $('#notice');
    el.textContent = '';
    el.append('Uploads go to ', h('a', { href: `${serviceOrigin}/` }, serviceOrigin),
      ' (PUBLIC_BASE_URL); open the page there if uploads fail here.');
    el.hidden = false;
  }
  state.auth = new Auth(state.config, (session) => onSession(session));
  configureApi({ getToken: () => state.auth.token(), onUnauthorized: (error) => sessionEnded(error) });
  setupSignIn(state.config, state.auth);
  try {
    await state.auth.start();
  } catch (error) {
    notice(error instanceof ApiError ? error.message : `Sign-in is unavailable: ${error.message}`, 'error');
  }
  $('#session').hidden = !state.auth.session;
  $('#session-user').textContent = state.auth.session ? userLabel(state.auth.user) : '';
  window.addEventListener('hashchange', route);
  route();
  document.body.dataset.ready = 'true';
}

main();
