// The browser suite: one flow per role, as people use the portal, in Debian's headless Chromium driven by
// playwright-core. Every page reached is checked (status, security headers, console errors, CSP violations,
// axe-core serious and critical violations, no horizontal scrolling and no word broken inside in a table cell,
// navigation link or the logo at 320 px and 1280 px, no unexpected
// "Confirm it is you" step-up page); the main pages are captured at 1280 px into docs/screenshots/. Started by
// run.sh, which provides the servers through the environment.
//
// Each person has a browser context of their own (own cookie jar), as if on their own machine. Forms are
// filled field by field and sent from the keyboard (Enter in a field, or Enter/Space on a focused control).
// Staff set up an authenticator app through the pages the first time they sign in (the suite reads the secret
// the page shows as text and computes the codes, second-factor.mjs) and give a code at every later sign-in; the
// officer also adds a passkey, held by a virtual authenticator of Chromium's (DevTools' WebAuthn domain).

import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { createRequire } from 'node:module';
import { chromium } from 'playwright-core';
import { Factors, totp, totpSelfTest, stepNow } from './second-factor.mjs';

const require = createRequire(import.meta.url);
const HERE = path.dirname(fileURLToPath(import.meta.url));
const env = (name, fallback) => {
  const v = process.env[name] ?? fallback;
  if (v === undefined) {
    console.error(`run.mjs: ${name} is not set (start the suite with tests/browser/run.sh)`);
    process.exit(2);
  }
  return v;
};

// The main portal is browsed at http://localhost:PORT, its configured public origin: passkeys need a host name.
const BASE = env('PCII_BASE_URL');
const SMALL_BASE = env('PCII_SMALL_BASE_URL');
const SETUP_URL = env('PCII_SETUP_URL');
// The second portal (IP origin, 1 MiB limit) runs with step_up_minutes = 1: there a factor goes stale within a run.
const SMALL_SETUP_URL = env('PCII_SMALL_SETUP_URL');
// Without SMTP each portal writes its mail as .eml files here (run.sh: <data dir>/outbox).
const OUTBOX = env('PCII_OUTBOX_DIR');
const SMALL_OUTBOX = env('PCII_SMALL_OUTBOX_DIR');
const CHROMIUM = env('PCII_CHROMIUM', '/usr/bin/chromium');
const WORK = env('PCII_BROWSER_WORK', fs.mkdtempSync('/tmp/pcii-browser-'));
const SHOTS = env('PCII_SCREENSHOT_DIR', path.join(HERE, '..', '..', 'docs', 'screenshots'));
// Generous: a release portal on a busy 2-core machine, argon2 at every sign-in.
const TIMEOUT = Number(process.env.PCII_BROWSER_TIMEOUT_MS || 60000);
const AXE_SOURCE = fs.readFileSync(require.resolve('axe-core/axe.min.js'), 'utf8');
const WIDTHS = [320, 1280];
const DOWNLOADS = path.join(WORK, 'downloads');
fs.mkdirSync(DOWNLOADS, { recursive: true });
fs.mkdirSync(SHOTS, { recursive: true });

const PASSWORD = 'correct horse battery staple 42';
const today = () => new Date().toISOString().slice(0, 10);
const NDA_EXPIRES = `${new Date().getUTCFullYear() + 2}-06-30`;
const TRACKING = /PCII-\d{4}-\d{6}/;

// ------------------------------------------------------------------------------------------------
// Results
// ------------------------------------------------------------------------------------------------

const results = []; // { label, path, problems[] }
let assertions = 0;

function record(label, where, problems) {
  results.push({ label, where, problems });
  const mark = problems.length ? 'FAIL' : 'ok  ';
  console.log(`${mark} ${label.padEnd(44)} ${where}`);
  for (const p of problems) console.log(`       - ${p}`);
}

class FlowError extends Error {}
function expect(condition, message) {
  assertions += 1;
  if (!condition) throw new FlowError(message);
}

// ------------------------------------------------------------------------------------------------
// People and pages
// ------------------------------------------------------------------------------------------------

const pageState = new WeakMap();
function stateOf(page) {
  let s = pageState.get(page);
  if (!s) {
    s = { console: [], csp: [] };
    pageState.set(page, s);
  }
  return s;
}

function watch(page) {
  const s = stateOf(page);
  page.on('console', (m) => {
    if (m.type() === 'error') s.console.push(`${m.text()}${m.location().url ? ` (${m.location().url})` : ''}`);
  });
  page.on('pageerror', (e) => s.console.push(`uncaught: ${e.message}`));
  page.setDefaultTimeout(TIMEOUT);
  page.setDefaultNavigationTimeout(TIMEOUT);
  return page;
}

async function person(browser, name) {
  const context = await browser.newContext({
    viewport: { width: 1280, height: 800 },
    acceptDownloads: true,
    locale: 'en-US',
    timezoneId: 'UTC',
    // bypassCSP stays false: the pages are checked under their real policy. axe-core is evaluated
    // through the DevTools protocol (page.evaluate), which the page's CSP does not govern.
  });
  context.setDefaultTimeout(TIMEOUT);
  // CSP violations reported by the page itself (besides the console message Chromium prints).
  await context.exposeBinding('__pciiCspViolation', ({ page }, v) => stateOf(page).csp.push(v));
  await context.addInitScript(() => {
    document.addEventListener('securitypolicyviolation', (e) => {
      window.__pciiCspViolation(`${e.violatedDirective} blocked ${e.blockedURI || 'inline'} at ${e.sourceFile || '?'}:${e.lineNumber}`);
    });
  });
  context.on('page', watch);
  const page = await context.newPage();
  return { name, context, page };
}

// ------------------------------------------------------------------------------------------------
// Checks on every page
// ------------------------------------------------------------------------------------------------

async function axeSeriousViolations(page) {
  const loaded = await page.evaluate(() => typeof window.axe === 'object');
  if (!loaded) await page.evaluate(AXE_SOURCE);
  return page.evaluate(async () => {
    const r = await window.axe.run(document, { resultTypes: ['violations'] });
    return r.violations
      .filter((v) => v.impact === 'serious' || v.impact === 'critical')
      .map((v) => `${v.impact} ${v.id}: ${v.help} — ${v.nodes.slice(0, 3).map((n) => n.target.join(' ')).join(' | ')}${v.nodes.length > 3 ? ` (+${v.nodes.length - 3} more)` : ''}`);
  });
}

/**
 * Words cut in two by a line break inside a table cell, a navigation link or the logo ("Receive/d"): each word
 * (a run of letters and digits) whose glyphs lie on more than one line. Identifiers, digests, file names, emails
 * and code may break anywhere and are left out, and so is text in boxes too narrow to read (visually hidden).
 * Run at the viewport width set before.
 */
async function brokenWords(page) {
  return page.evaluate(() => {
    const found = [];
    const skip = (el) => !el || el.closest('code, pre, .digest, .filename, .account-id, .email, .visually-hidden')
      || el.getBoundingClientRect().width <= 2;
    for (const root of document.querySelectorAll('td, th, nav a, .brand')) {
      const walker = document.createTreeWalker(root, NodeFilter.SHOW_TEXT);
      for (let node = walker.nextNode(); node; node = walker.nextNode()) {
        if (skip(node.parentElement)) continue;
        const re = /[\p{L}\p{N}]{2,}/gu;
        for (let m = re.exec(node.textContent); m; m = re.exec(node.textContent)) {
          const range = document.createRange();
          range.setStart(node, m.index);
          range.setEnd(node, m.index + m[0].length);
          const tops = new Set([...range.getClientRects()].filter((r) => r.width > 0).map((r) => Math.round(r.top)));
          if (tops.size > 1) {
            found.push(`"${m[0]}" in <${root.tagName.toLowerCase()}${root.className ? `.${String(root.className).trim().split(/\s+/).join('.')}` : ''}>`);
            if (found.length >= 4) return found;
          }
        }
      }
    }
    return found;
  });
}

async function horizontalOverflow(page, width) {
  await page.setViewportSize({ width, height: 800 });
  return page.evaluate(() => {
    const doc = document.documentElement;
    const visible = Math.min(window.innerWidth, doc.clientWidth);
    if (doc.scrollWidth <= visible) return null;
    // Name the outermost elements that stick out, to say what to fix.
    const culprits = [];
    for (const el of document.body.querySelectorAll('*')) {
      const r = el.getBoundingClientRect();
      const outermost = !(el.parentElement && el.parentElement.getBoundingClientRect().right > visible + 0.5);
      // Absolutely positioned boxes escape scrolling wrappers whose box is not their containing block.
      const escaped = ['absolute', 'fixed'].includes(getComputedStyle(el).position);
      if (r.right > visible + 0.5 && (outermost || escaped)) {
        const cls = el.className && typeof el.className === 'string' ? `.${el.className.trim().split(/\s+/).join('.')}` : '';
        culprits.push(`${el.tagName.toLowerCase()}${el.id ? `#${el.id}` : ''}${cls} (right edge ${Math.round(r.right)})`);
        if (culprits.length >= 4) break;
      }
    }
    return `page is ${doc.scrollWidth}px wide in a ${visible}px viewport: ${culprits.join(', ')}`;
  });
}

let shotCount = 0;
async function screenshot(page, name) {
  shotCount += 1;
  await page.setViewportSize({ width: 1280, height: 800 });
  await page.screenshot({ path: path.join(SHOTS, `${name}.png`), fullPage: true });
}

/**
 * The headers every page of the portal carries (SECURITY.md): a CSP that allows no inline script, no sniffing,
 * no framing, and no caching (pages show a TOTP secret, recovery codes, protected information).
 */
function headerProblems(headers) {
  if (!headers) return ['no response: its headers could not be checked'];
  const problems = [];
  const csp = headers['content-security-policy'] ?? '';
  if (!/(^|;)\s*script-src 'self'\s*(;|$)/.test(csp)) problems.push(`header: the Content-Security-Policy does not limit scripts to 'self': "${csp}"`);
  if (!/(^|;)\s*frame-ancestors 'none'\s*(;|$)/.test(csp)) problems.push(`header: the Content-Security-Policy does not forbid framing: "${csp}"`);
  if ((headers['x-content-type-options'] ?? '') !== 'nosniff') problems.push('header: no "X-Content-Type-Options: nosniff"');
  if (!/\bno-store\b/.test(headers['cache-control'] ?? '')) problems.push(`header: Cache-Control is "${headers['cache-control'] ?? ''}", not no-store`);
  return problems;
}

/**
 * Checks the page now shown. `status` is the HTTP status the visit must have ended with, `headers` its response
 * headers. A "Confirm it is you" step-up page is a problem unless `stepUp` says it is expected: within one run
 * every act follows a sign-in by far less than the portal's 15 minutes.
 */
async function checkPage(page, label, { status, expectStatus = 200, shot, headers, stepUp = false } = {}) {
  // Setup, invitation, confirmation and reset tokens are credentials, even on a throw-away portal: not printed.
  const path_ = new URL(page.url()).pathname;
  const where = path_.replace(/^\/(setup|invitations|verify-email|password\/reset)\/(?!resend$)[^/]+/, '/$1/<token>');
  const problems = headerProblems(headers);
  problems.push(...await pageProblems(page, { status, expectStatus }));
  if (!stepUp && path_ !== '/login/second-factor') {
    const h1 = await page.evaluate(() => document.querySelector('h1')?.textContent ?? '');
    if (/Confirm it is you/.test(h1)) problems.push('an unexpected step-up page ("Confirm it is you"): the second factor was not fresh');
  }
  if (shot) await screenshot(page, shot);
  record(label, where, problems);
}

async function pageProblems(page, { status, expectStatus }) {
  const problems = [];
  if (status !== expectStatus) problems.push(`HTTP ${status}, expected ${expectStatus}`);
  const s = stateOf(page);
  await page.waitForLoadState('load');
  for (const text of s.console.splice(0)) {
    // Chromium logs every non-2xx document as a console error; an expected error page is not one.
    const m = /Failed to load resource: the server responded with a status of (\d+)/.exec(text);
    if (m && Number(m[1]) === expectStatus && expectStatus >= 400) continue;
    problems.push(`console error: ${text}`);
  }
  for (const v of s.csp.splice(0)) problems.push(`CSP violation: ${v}`);
  try {
    for (const v of await axeSeriousViolations(page)) problems.push(`axe ${v}`);
  } catch (e) {
    problems.push(`axe-core could not run: ${e.message}`);
  }
  for (const width of WIDTHS) {
    const o = await horizontalOverflow(page, width);
    if (o) problems.push(`horizontal scrolling at ${width}px: ${o}`);
    const broken = await brokenWords(page);
    if (broken.length) problems.push(`words broken inside at ${width}px: ${broken.join(', ')}`);
  }
  await page.setViewportSize({ width: 1280, height: 800 });
  // Anything the checks themselves provoked (e.g. a CSP refusal of the injected axe) counts too.
  for (const text of s.console.splice(0)) problems.push(`console error: ${text}`);
  for (const v of s.csp.splice(0)) problems.push(`CSP violation: ${v}`);
  return problems;
}

/**
 * The checks must be able to fail here, with this Chromium and this CSP: a real page is spoiled on
 * purpose (an image without alt text, a 2000 px wide box, an inline script, a console error) and each
 * detector has to report it. Without this a silently broken detector would pass every page.
 */
async function selfTest(browser) {
  const p = await person(browser, 'self-test');
  const { page } = p;
  const response = await page.goto(new URL('/', BASE).href, { waitUntil: 'load' });
  await page.evaluate(() => {
    const img = document.createElement('img');
    img.src = '/static/favicon.svg';
    document.querySelector('main').append(img);
    const wide = document.createElement('div');
    wide.className = 'selftest-wide';
    wide.style.width = '2000px'; // a CSSOM change, which the CSP allows
    wide.textContent = 'wide';
    document.querySelector('main').append(wide);
    // A table cell too narrow for its word, allowed to break it.
    const table = document.createElement('table');
    const cell = table.insertRow().insertCell();
    cell.style.width = '3ch';
    cell.style.maxWidth = '3ch';
    cell.style.overflowWrap = 'anywhere';
    cell.style.display = 'block';
    cell.textContent = 'Defective';
    document.querySelector('main').append(table);
    const script = document.createElement('script');
    script.textContent = 'window.inlineRan = true;';
    document.body.append(script);
    console.error('self-test console error');
  });
  const problems = await pageProblems(page, { status: response.status(), expectStatus: 200 });
  const found = (re) => problems.some((x) => re.test(x));
  const missing = [
    [/^axe critical image-alt/, 'axe-core image-alt'],
    [/^horizontal scrolling at 320px/, 'overflow at 320 px'],
    [/^horizontal scrolling at 1280px/, 'overflow at 1280 px'],
    [/^words broken inside at 320px: "Defective"/, 'broken word at 320 px'],
    [/^words broken inside at 1280px: "Defective"/, 'broken word at 1280 px'],
    [/^CSP violation: script-src/, 'CSP violation event'],
    [/^console error: self-test console error/, 'console error'],
  ].filter(([re]) => !found(re)).map(([, name]) => name);
  expect(!(await page.evaluate(() => window.inlineRan === true)), 'an inline script ran: the CSP is not enforced');
  const headersSeen = headerProblems(await response.allHeaders());
  const headersSpoiled = headerProblems({ 'content-security-policy': "default-src 'self'; script-src 'self' 'unsafe-inline'", 'cache-control': 'private' });
  if (headersSpoiled.length !== 4) missing.push('header');
  record('self-test: every detector fires on a spoiled page', '/', [
    ...missing.map((m) => `the ${m} detector did not fire`),
    ...headersSeen.map((h) => `the real page: ${h}`),
  ]);
  // The codes the suite computes are the RFC's: otherwise every sign-in with an authenticator app would fail.
  record('self-test: TOTP codes as RFC 6238 (SHA-1, 6 digits)', 'second-factor.mjs', totpSelfTest());
  await p.context.close();
}

/**
 * Runs `action` (which makes the browser navigate: a key press, or a URL to open as if pasted into the
 * address bar), waits for the final document (after redirects) and checks it.
 */
async function go(page, label, action, opts = {}) {
  let response;
  if (typeof action === 'string') {
    response = await page.goto(new URL(action, opts.base || BASE).href, { waitUntil: 'load' });
  } else {
    [response] = await Promise.all([page.waitForNavigation({ waitUntil: 'load' }), action()]);
  }
  await checkPage(page, label, {
    ...opts,
    status: response ? response.status() : null,
    headers: response ? await response.allHeaders() : null,
  });
  return response;
}

/** Focuses a control and presses a key on it (Enter for links and buttons, Space for boxes). */
async function press(page, locator, key = 'Enter') {
  await locator.focus();
  await page.keyboard.press(key);
}

const byId = (page, id) => page.locator(`[id="${id}"]`);

/** Fills text fields (by id), then presses Enter in the last one to send the form. */
async function fillAndEnter(page, fields) {
  const entries = Object.entries(fields);
  for (const [id, value] of entries) await byId(page, id).fill(value);
  await press(page, byId(page, entries[entries.length - 1][0]), 'Enter');
}

async function tick(page, id) {
  const box = byId(page, id);
  await press(page, box, 'Space');
  expect(await box.isChecked(), `#${id} did not get ticked from the keyboard`);
}

async function download(page, trigger) {
  const [dl] = await Promise.all([page.waitForEvent('download'), trigger()]);
  const failure = await dl.failure();
  expect(!failure, `download ${dl.suggestedFilename()} failed: ${failure}`);
  const file = path.join(DOWNLOADS, dl.suggestedFilename());
  await dl.saveAs(file);
  return { name: dl.suggestedFilename(), bytes: fs.readFileSync(file) };
}

async function heading(page) {
  return (await page.locator('h1').first().textContent()).trim();
}

async function notice(page) {
  const n = page.locator('.notice');
  return (await n.count()) ? (await n.first().textContent()).trim() : '';
}

// ------------------------------------------------------------------------------------------------
// Mail: the portal's outbox stands in for each person's mail client
// ------------------------------------------------------------------------------------------------

/** The decoded text body of one .eml file, and its unfolded headers. */
function parseEml(raw) {
  const text = raw.replace(/\r\n/g, '\n');
  const cut = text.indexOf('\n\n');
  const head = (cut < 0 ? text : text.slice(0, cut)).replace(/\n[ \t]+/g, ' ');
  let body = cut < 0 ? '' : text.slice(cut + 2);
  const header = (name) => (new RegExp(`^${name}:[ \t]*(.*)$`, 'im').exec(head)?.[1] ?? '').trim();
  const cte = header('Content-Transfer-Encoding').toLowerCase();
  if (cte === 'quoted-printable') {
    body = Buffer.from(body.replace(/=\n/g, '').replace(/=([0-9A-Fa-f]{2})/g, (_, h) => String.fromCharCode(parseInt(h, 16))), 'latin1').toString('utf8');
  } else if (cte === 'base64') {
    body = Buffer.from(body.replace(/\s+/g, ''), 'base64').toString('utf8');
  }
  return { to: header('To'), subject: header('Subject'), body };
}

/**
 * The path of the link (`/invitations/`, `/verify-email/`, `/password/reset/`) in the newest message to
 * `email` in `outbox`. Links are absolute (the portal's configured origin): the path is opened on the
 * portal under test. Waits a little: the message is written while the response is on its way.
 */
async function mailedLink(outbox, email, prefix) {
  const linkRe = new RegExp(`https?://[^\\s<>"]*?(${prefix.replace(/\//g, '\\/')}[A-Za-z0-9_~.%-]+)`);
  const deadline = Date.now() + 20000;
  for (;;) {
    const messages = (fs.existsSync(outbox) ? fs.readdirSync(outbox) : [])
      .filter((f) => f.endsWith('.eml'))
      .map((f) => {
        const file = path.join(outbox, f);
        return { file, mtime: fs.statSync(file).mtimeMs, ...parseEml(fs.readFileSync(file, 'utf8')) };
      })
      .filter((m) => m.to.toLowerCase().includes(email.toLowerCase()) && linkRe.test(m.body))
      .sort((a, b) => b.mtime - a.mtime);
    if (messages.length) {
      const link = linkRe.exec(messages[0].body)[1];
      record(`mail to ${email}`, `"${messages[0].subject}" → ${link.replace(/[^/]+$/, '<token>')}`, []);
      return link;
    }
    expect(Date.now() < deadline, `no message to ${email} with a ${prefix} link in ${outbox}`);
    await new Promise((r) => setTimeout(r, 250));
  }
}

/**
 * The newest message to `email` in `outbox` whose subject matches `subject`, written after `since` (ms since the
 * epoch). Waits: mail about a notice goes out on the portal's next notification round.
 */
async function mailed(outbox, email, subject, { since = 0, wait = 30000 } = {}) {
  const deadline = Date.now() + wait;
  for (;;) {
    const found = (fs.existsSync(outbox) ? fs.readdirSync(outbox) : [])
      .filter((f) => f.endsWith('.eml'))
      .map((f) => {
        const file = path.join(outbox, f);
        return { mtime: fs.statSync(file).mtimeMs, ...parseEml(fs.readFileSync(file, 'utf8')) };
      })
      .filter((m) => m.mtime >= since && m.to.toLowerCase().includes(email.toLowerCase()) && subject.test(m.subject))
      .sort((a, b) => b.mtime - a.mtime);
    if (found.length) {
      record(`mail to ${email}`, `"${found[0].subject}"`, []);
      return found[0];
    }
    expect(Date.now() < deadline, `no message to ${email} with a subject like ${subject} in ${outbox}`);
    await new Promise((r) => setTimeout(r, 250));
  }
}

/**
 * A freshly registered person (an unconfirmed account does not sign in) opens the link the portal mailed it and
 * signs in on its page with the password it chose: that confirms the address, and its home page follows.
 */
async function confirmEmail(p, email, label, { base = BASE, outbox = OUTBOX, shot } = {}) {
  const { page } = p;
  const link = await mailedLink(outbox, email, '/verify-email/');
  await go(page, `${label}: opens the confirmation link`, link, { base, shot });
  expect(/Confirm your email address/.test(await heading(page)), `the confirmation page is headed "${await heading(page)}"`);
  expect(await byId(page, 'email').inputValue() === email, 'the confirmation page does not prefill the address');
  await go(page, `${label}: address confirmed, signed in`, () => fillAndEnter(page, { password: PASSWORD }));
}

/** An invitee opens its emailed link in a browser of its own and chooses its password. */
async function acceptInvitation(browser, who, label, { base = BASE, outbox = OUTBOX, shot } = {}) {
  const p = await person(browser, label);
  const { page } = p;
  const link = await mailedLink(outbox, who.email, '/invitations/');
  await go(page, `${label}: opens the invitation link`, link, { base, shot });
  expect(/invitation/i.test(await heading(page)), `the invitation page is headed "${await heading(page)}"`);
  expect(await byId(page, 'display_name').inputValue() === who.name, 'the invitation page does not prefill the name');
  expect((await page.locator('main').textContent()).includes(who.email), 'the invitation page does not name the address');
  await go(page, `${label}: invitation accepted`, () => fillAndEnter(page, { password: PASSWORD }));
  expect(new URL(page.url()).pathname === '/login', `after accepting, the invitee is on ${page.url()}`);
  expect(/Your account is ready/.test(await notice(page)), `no "account is ready" notice: "${await notice(page)}"`);
  return p;
}

// ------------------------------------------------------------------------------------------------
// Second factors
// ------------------------------------------------------------------------------------------------

const factors = new Factors(); // each person's authenticator app and recovery codes, in the suite's memory only
const here = (page) => new URL(page.url()).pathname;

async function errorSummary(page) {
  const e = page.locator('main .error-summary');
  return (await e.count()) ? (await e.first().textContent()).trim() : '';
}

/**
 * Signs in with the password and, for an account whose authenticator app the suite holds, with a code from it
 * (`factor: 'app'`); `factor: 'none'` stops on /login/second-factor. An account without a factor ends where the
 * portal sends it: home, "Confirm your email address", or /account/security when it must set one up.
 */
async function signIn(p, email, label, { base = BASE, factor = 'app', shot } = {}) {
  const { page } = p;
  await go(page, `${label}: sign-in page`, '/login', { base });
  if (!factors.has(email)) {
    await go(page, `${label}: password accepted`, () => fillAndEnter(page, { email, password: PASSWORD }), { base, shot });
    return;
  }
  await go(page, `${label}: password accepted → second factor`, () => fillAndEnter(page, { email, password: PASSWORD }), { base, shot });
  expect(here(page) === '/login/second-factor', `after the password, ${label} is on ${page.url()}, not /login/second-factor`);
  expect(await byId(page, 'factor_code').count() === 1, 'the second-factor page has no code field');
  if (factor === 'none') return;
  const { code, waited } = await factors.code(email);
  const note = waited ? ` (waited ${(waited / 1000).toFixed(1)} s for a fresh time step)` : '';
  await go(page, `${label}: authenticator code accepted${note}`, () => fillAndEnter(page, { factor_code: code }), { base });
  expect(here(page) !== '/login/second-factor', `a fresh authenticator code was refused: ${await errorSummary(page)}`);
  expect(/You are signed in/.test(await notice(page)), `no "You are signed in." after the second factor: "${await notice(page)}"`);
}

/**
 * An account that must have a second factor, on /account/security after its password: sets up an authenticator
 * app from the secret the page shows as text, confirms it with a code, keeps the ten recovery codes shown, and
 * continues home. `wrongCodeFirst`: a wrong code first, which must keep the same secret on the page.
 */
async function enrolAuthenticator(p, who, label, { shots = false, wrongCodeFirst = false } = {}) {
  const { page } = p;
  expect(here(page) === '/account/security', `${label}, without a second factor, is on ${page.url()}, not /account/security`);
  expect(/needs a second factor/.test(await errorSummary(page)), `/account/security does not say a second factor is needed: "${await errorSummary(page)}"`);
  expect(await page.getByRole('link', { name: 'Home', exact: true }).count() === 0, 'the header offers "Home" before the second factor is set up');
  await go(page, `${label}: authenticator app setup`, () => press(page, page.getByRole('link', { name: 'Set up an authenticator app' })),
    { shot: shots ? '27-totp-setup' : undefined });
  expect(here(page) === '/account/security/totp', `the setup link went to ${page.url()}`);
  const secret = (await byId(page, 'totp-secret').textContent()).trim();
  expect(/^[A-Z2-7]{4}( [A-Z2-7]{1,4})+$/.test(secret), `the secret is not base32 in groups of four: "${secret}"`);
  const qrShown = await page.locator('main img[src^="data:image/svg+xml"]').first()
    .evaluate((img) => img.complete && img.naturalWidth > 0);
  expect(qrShown, 'the QR code image is not shown (blocked, or not an image)');
  const f = factors.enrol(who.email, secret);
  if (wrongCodeFirst) {
    const wrong = totp(f.seed, stepNow() - 10); // ten steps old: outside the skew
    await go(page, `${label}: a wrong code → asked again`, () => fillAndEnter(page, { code: wrong }), { expectStatus: 422 });
    expect(/does not match/.test(await errorSummary(page)), `no message for a wrong code: "${await errorSummary(page)}"`);
    expect((await byId(page, 'totp-secret').textContent()).trim() === secret, 'after a wrong code the page shows another secret');
  }
  const { code } = await factors.code(who.email);
  await go(page, `${label}: app confirmed → recovery codes`, () => fillAndEnter(page, { code }), { shot: shots ? '28-recovery-codes' : undefined });
  expect(/recovery codes/i.test(await heading(page)), `after confirming, the page is headed "${await heading(page)}"`);
  expect(/authenticator app is set up/.test(await notice(page)), `no "authenticator app is set up" notice: "${await notice(page)}"`);
  const codes = (await page.locator('#recovery-codes li').allTextContents()).map((c) => c.trim());
  expect(codes.length === 10, `${codes.length} recovery codes shown, not 10`);
  expect(new Set(codes).size === 10 && codes.every((c) => /^[A-Za-z0-9]{4}(-[A-Za-z0-9]{4}){3}$/.test(c)), `the recovery codes are not ten distinct XXXX-XXXX-XXXX-XXXX: ${codes.join(', ')}`);
  f.recoveryCodes = codes;
  await go(page, `${label}: recovery codes saved → home`, () => press(page, page.getByRole('link', { name: 'I have saved them — continue' })));
}

async function signOut(p, label) {
  const { page } = p;
  await go(page, `${label}: signed out`, () => press(page, page.getByRole('button', { name: 'Sign out' })));
  expect(/signed out/i.test(await notice(page)), 'no "signed out" notice after signing out');
}

// ------------------------------------------------------------------------------------------------
// Flows
// ------------------------------------------------------------------------------------------------

const people = {
  admin: { email: 'ada.admin@pcii.example.gov', name: 'Ada Administrator' },
  officer: { email: 'otto.officer@pcii.example.gov', name: 'Otto Officer', role: 'officer', agency: 'PCII Program Office' },
  auditor: { email: 'aude.auditor@oversight.example.gov', name: 'Aude Auditor', role: 'auditor', agency: 'Office of Inspector General' },
  analyst: { email: 'ana.analyst@dhs.example.gov', name: 'Ana Analyst', role: 'authorized_user', agency: 'DHS I&A' },
  submitter: { email: 'sam.submitter@gridco.example.com', name: 'Sam Submitter', organisation: 'GridCo Power & Light' },
  colleague: { email: 'cam.colleague@gridco.example.com', name: 'Cam Colleague' },
  other: { email: 'oz.other@waterworks.example.com', name: 'Oz Other', organisation: 'Waterworks Inc.' },
  big: { email: 'bea.big@telecom.example.com', name: 'Bea Big', organisation: 'Telecom Corp' },
  smallAdmin: { email: 'sol.steward@pcii.example.gov', name: 'Sol Steward' },
  stepUpInvitee: { email: 'ivy.invitee@pcii.example.gov', name: 'Ivy Invitee', role: 'auditor', agency: 'Office of Inspector General' },
};

const shared = {}; // what one flow hands to the next: submission id, tracking number, account ids

async function flowAdministrator(browser) {
  const p = await person(browser, 'administrator');
  const { page } = p;
  await go(page, 'admin: first-start setup link', SETUP_URL, { shot: '02-setup' });
  expect(/first administrator/i.test(await heading(page)), 'the setup page does not say what it is for');
  await go(page, 'admin: administrator created', () => fillAndEnter(page, {
    display_name: people.admin.name, email: people.admin.email, password: PASSWORD,
  }));
  expect(/administrator account is ready/i.test(await notice(page)), 'no confirmation after setup');
  // Staff must have a second factor: after the password, the first administrator reaches nothing but
  // /account/security until it has set up an authenticator app.
  await go(page, 'admin: password accepted → must set up a second factor', () => fillAndEnter(page, { email: people.admin.email, password: PASSWORD }),
    { shot: '26-account-security' });
  await go(page, 'admin: accounts page before the second factor', '/admin');
  expect(here(page) === '/account/security', `without a second factor, /admin led to ${page.url()}`);
  await enrolAuthenticator(p, people.admin, 'admin', { shots: true, wrongCodeFirst: true });
  expect(here(page) === '/admin', `the administrator with its new authenticator app landed on ${page.url()}`);

  // Out and in again: the password, then a code computed from the secret the page showed.
  await signOut(p, 'admin');
  await signIn(p, people.admin.email, 'admin', { factor: 'none', shot: '29-second-factor' });
  const { code } = await factors.code(people.admin.email);
  await go(page, 'admin: authenticator code accepted → accounts', () => fillAndEnter(page, { factor_code: code }));
  expect(here(page) === '/admin', `signed-in administrator landed on ${page.url()}`);
  // The same code a second time (within its 30 s step and the skew, so it is the replay that is refused).
  await signOut(p, 'admin');
  await signIn(p, people.admin.email, 'admin', { factor: 'none' });
  const replayed = factors.get(people.admin.email).lastCode;
  const fresh = stepNow() <= factors.get(people.admin.email).lastStep + 1;
  await go(page, `admin: the same authenticator code again → refused${fresh ? '' : ' (its step had passed)'}`, () => fillAndEnter(page, { factor_code: replayed }), { expectStatus: 401 });
  expect(here(page) === '/login/second-factor', `a replayed code led to ${page.url()}`);
  expect(/did not work/.test(await errorSummary(page)), `no message for a replayed code: "${await errorSummary(page)}"`);
  // A recovery code in its place: accepted once.
  const recovery = factors.takeRecoveryCode(people.admin.email);
  await go(page, 'admin: a recovery code accepted → accounts', () => fillAndEnter(page, { factor_code: recovery }));
  expect(here(page) === '/admin', `after a recovery code the administrator is on ${page.url()}`);
  expect(/recovery code: 9 left/.test(await notice(page)), `no "9 left" notice after a recovery code: "${await notice(page)}"`);

  expect((await page.locator('main .warning').first().textContent()).includes('only one active administrator'),
    'the accounts page does not warn that the two-person rule cannot apply with one administrator');

  // Staff are invited: each chooses its own password from the emailed link (nobody else ever knows it).
  // With a single administrator the two-person rule cannot apply, so the link goes out at once.
  for (const key of ['officer', 'auditor', 'analyst']) {
    const who = people[key];
    await go(page, `admin: invitation form (${who.role})`, () => press(page, page.getByRole('link', { name: 'Invite a person', exact: true }).first()),
      { shot: key === 'officer' ? '04-admin-new-account' : undefined });
    expect(await byId(page, 'password').count() === 0, 'the invitation form still asks the administrator for a password');
    await byId(page, 'display_name').fill(who.name);
    await byId(page, 'email').fill(who.email);
    await byId(page, 'role').selectOption(who.role);
    await go(page, `admin: ${who.role} invited`, () => fillAndEnter(page, { agency: who.agency }),
      { shot: key === 'analyst' ? '04b-admin-invite' : undefined });
    expect(new URL(page.url()).pathname === '/admin/approvals', `after inviting, the administrator is on ${page.url()}`);
    expect(/Invitation sent/.test(await notice(page)), `no "Invitation sent." for the ${who.role}: "${await notice(page)}"`);
    expect((await page.locator('table').last().textContent()).includes(who.email), `the ${who.role}'s invitation is not listed as open`);

    // The invitee, on its own machine, opens the link and chooses its password.
    const invitee = await acceptInvitation(browser, who, `${key} (invited)`, { shot: key === 'officer' ? '04c-invitation' : undefined });
    await invitee.context.close();

    // The account exists now: the administrator finds it among all accounts.
    await go(page, `admin: accounts, with the ${who.role}`, () => press(page, page.getByRole('link', { name: 'Accounts', exact: true })));
    await go(page, `admin: the ${who.role}'s account`, () => press(page, page.getByRole('link', { name: who.name, exact: true })));
    expect(/^\/admin\/accounts\/[^/]+$/.test(new URL(page.url()).pathname), `the account link went to ${page.url()}`);
    const facts = await page.locator('dl.summary').textContent();
    expect(facts.includes(who.agency) && /Confirmed/.test(facts), `the ${who.role}'s account does not show its agency and confirmed address`);
    shared[`${key}Id`] = new URL(page.url()).pathname.split('/').pop();
  }

  // The authorized user may read PCII only with current training and an NDA on file.
  await byId(page, 'training-date').fill(today());
  await go(page, 'admin: training date recorded', () => press(page, page.getByRole('button', { name: 'Save training date' })));
  expect(/Training record saved/.test(await notice(page)), 'training date not saved');
  await byId(page, 'nda-date').fill(today());
  await byId(page, 'nda-expires').fill(NDA_EXPIRES);
  await go(page, 'admin: NDA recorded', () => fillAndEnter(page, { 'nda-reference': 'NDA-2024-017' }), { shot: '05-admin-account' });
  expect(/Non-disclosure agreement record saved/.test(await notice(page)), 'NDA not saved');
  const facts = await page.locator('dl.summary').textContent();
  expect(facts.includes(`Signed ${today()}, expires ${NDA_EXPIRES}`) && facts.includes('NDA-2024-017'), `the NDA record is not shown on the account page: ${facts.replace(/\s+/g, ' ')}`);
  expect(!/Training completed\s*Not recorded/.test(facts), 'the training date is not shown on the account page');

  await go(page, 'admin: all accounts', () => press(page, page.getByRole('link', { name: 'All accounts', exact: true })), { shot: '03-admin-accounts' });
  for (const key of ['officer', 'auditor', 'analyst']) {
    expect((await page.locator('table').textContent()).includes(people[key].email), `${people[key].email} is not listed`);
  }
  const analystRow = await page.locator('tbody tr', { hasText: people.analyst.email }).textContent();
  expect(analystRow.includes(people.analyst.agency) && analystRow.includes(NDA_EXPIRES), 'the accounts list does not show the authorized user\'s agency and NDA expiry');

  // The recovery code used at the start works no more; the app still does.
  await signOut(p, 'admin');
  await signIn(p, people.admin.email, 'admin', { factor: 'none' });
  await go(page, 'admin: the used recovery code again → refused', () => fillAndEnter(page, { factor_code: recovery }), { expectStatus: 401 });
  expect(here(page) === '/login/second-factor', `a used recovery code led to ${page.url()}`);
  expect(/did not work/.test(await errorSummary(page)), `no message for a used recovery code: "${await errorSummary(page)}"`);
  const next = await factors.code(people.admin.email);
  await go(page, 'admin: authenticator code accepted → accounts', () => fillAndEnter(page, { factor_code: next.code }));
  expect(here(page) === '/admin', `signed-in administrator landed on ${page.url()}`);
  await signOut(p, 'admin');
  await p.context.close();
}

function attachment(name, mimeType, text) {
  return { name, mimeType, buffer: Buffer.from(text) };
}

/**
 * The first administrator of the second portal (its origin an IP address: passkeys off) sets up its
 * authenticator app now; flowStepUp, at the end of the run, finds that factor stale (step_up_minutes = 1 there).
 */
async function flowSmallAdministrator(browser) {
  const p = await person(browser, 'administrator (second portal)');
  shared.smallAdmin = p;
  const { page } = p;
  const base = SMALL_BASE;
  await go(page, 'second portal admin: setup link', SMALL_SETUP_URL, { base });
  await go(page, 'second portal admin: created', () => fillAndEnter(page, {
    display_name: people.smallAdmin.name, email: people.smallAdmin.email, password: PASSWORD,
  }));
  expect(/administrator account is ready/i.test(await notice(page)), 'no confirmation after setup');
  await go(page, 'second portal admin: password accepted', () => fillAndEnter(page, { email: people.smallAdmin.email, password: PASSWORD }));
  expect(await page.locator('form[data-webauthn]').count() === 0, 'a passkey form is offered on an IP origin');
  expect((await page.locator('main').textContent()).includes('Passkeys need the portal to be reached by a host name'), 'on an IP origin, /account/security does not say why passkeys are off');
  expect(!/or a passkey/.test(await errorSummary(page)), `on an IP origin the page suggests a passkey: "${await errorSummary(page)}"`);
  await enrolAuthenticator(p, people.smallAdmin, 'second portal admin');
  expect(here(page) === '/admin', `the second portal's administrator landed on ${page.url()}`);
  shared.smallAdminFactorAt = Date.now();
}

/**
 * Step-up: an act that needs a recent second factor, with a factor older than step_up_minutes (1 on the second
 * portal), is answered with "Confirm it is you", which carries everything typed; a wrong code asks again with
 * nothing lost, a right one completes the act as first posted.
 */
async function flowStepUp() {
  const p = shared.smallAdmin;
  const { page } = p;
  const stale = 61000 - (Date.now() - shared.smallAdminFactorAt);
  if (stale > 0) await new Promise((r) => setTimeout(r, stale));
  record('step-up: the second portal admin\'s factor is over a minute old', stale > 0 ? `waited ${(stale / 1000).toFixed(1)} s` : 'no wait', []);
  const who = people.stepUpInvitee;
  await go(page, 'step-up: invitation form', () => press(page, page.getByRole('link', { name: 'Invite a person', exact: true }).first()), { base: SMALL_BASE });
  await byId(page, 'display_name').fill(who.name);
  await byId(page, 'email').fill(who.email);
  await byId(page, 'role').selectOption(who.role);
  await go(page, 'step-up: invitation sent with a stale factor → "Confirm it is you"', () => fillAndEnter(page, { agency: who.agency }),
    { expectStatus: 401, stepUp: true, shot: '33-step-up' });
  expect(/Confirm it is you/.test(await heading(page)), `the stale act led to a page headed "${await heading(page)}"`);
  expect(here(page) === '/admin/accounts', `the step-up page is at ${page.url()}, not the act's address`);
  const kept = async () => Object.fromEntries(await page.locator('main form').first().locator('input[type="hidden"]')
    .evaluateAll((inputs) => inputs.map((i) => [i.name, i.value])));
  let fields = await kept();
  expect(fields.email === who.email && fields.display_name === who.name && fields.role === who.role && fields.agency === who.agency,
    `the step-up page does not carry what was typed: ${JSON.stringify(fields)}`);
  const f = factors.get(people.smallAdmin.email);
  await go(page, 'step-up: a wrong code → asked again', () => fillAndEnter(page, { factor_code: totp(f.seed, stepNow() - 10) }),
    { expectStatus: 401, stepUp: true });
  expect(/did not work/.test(await errorSummary(page)), `no message for a wrong step-up code: "${await errorSummary(page)}"`);
  fields = await kept();
  expect(fields.email === who.email && fields.agency === who.agency, `after a wrong code the typed fields are lost: ${JSON.stringify(fields)}`);
  const { code } = await factors.code(people.smallAdmin.email);
  await go(page, 'step-up: right code → the invitation goes out', () => fillAndEnter(page, { factor_code: code }));
  expect(here(page) === '/admin/approvals', `after the step-up the administrator is on ${page.url()}`);
  expect(/Invitation sent/.test(await notice(page)), `no "Invitation sent." after the step-up: "${await notice(page)}"`);
  expect((await page.locator('table').last().textContent()).includes(who.email), 'the invitation made through the step-up is not listed');
  await mailedLink(SMALL_OUTBOX, who.email, '/invitations/');
  await signOut(p, 'second portal admin');
  await p.context.close();
}

async function flowSubmitter(browser) {
  const p = await person(browser, 'submitter');
  shared.submitter = p;
  const { page } = p;
  await go(page, 'submitter: start page', '/', { shot: '01-home' });
  await go(page, 'submitter: registration', () => press(page, page.getByRole('link', { name: 'Register your organisation' })), { shot: '06-register' });
  await go(page, 'submitter: registered', () => fillAndEnter(page, {
    display_name: people.submitter.name,
    organisation: people.submitter.organisation,
    email: people.submitter.email,
    password: PASSWORD,
  }), { shot: '07-sign-in' });
  expect(/Registration received/.test(await notice(page)), 'no confirmation after registering');
  // Until the address is confirmed, the account does not sign in: answered as a wrong password is.
  await go(page, 'submitter: signs in before confirming', () => fillAndEnter(page, { email: people.submitter.email, password: PASSWORD }), { expectStatus: 401 });
  expect((await page.locator('.error-summary').textContent()).includes('not correct'), 'an unconfirmed account is not refused as a wrong password is');
  await go(page, 'submitter: my submissions before confirming', '/submissions', { expectStatus: 401 });
  await confirmEmail(p, people.submitter.email, 'submitter', { shot: '06c-confirm-email' });
  expect(new URL(page.url()).pathname === '/submissions', `the confirmed submitter landed on ${page.url()}`);

  await go(page, 'submitter: new submission form', () => press(page, page.getByRole('link', { name: 'New submission' }).first()));
  await byId(page, 'sector').selectOption('Energy');
  await byId(page, 'title').fill('Substation 14 protection scheme & relay settings');
  await byId(page, 'narrative').fill(
    'Protection relay settings and one-line diagrams for Substation 14 (345 kV), which feeds the regional hospital district.\n\n'
    + 'The settings reveal coordination margins that an attacker could exploit; <b>not</b> public.');
  await byId(page, 'primary_name').fill('Sam Submitter');
  await byId(page, 'primary_email').fill(people.submitter.email);
  await byId(page, 'primary_phone').fill('+1 555 0100');
  await byId(page, 'secondary_name').fill('Riley Reliability');
  await byId(page, 'secondary_email').fill('riley@gridco.example.com');
  await press(page, byId(page, 'federal_yes'), 'Space');
  expect(await byId(page, 'federal_yes').isChecked(), 'the federal requirement radio was not chosen from the keyboard');
  await byId(page, 'federal_agency').fill('Federal Energy Regulatory Commission');
  await byId(page, 'federal_authority').fill('18 CFR 388.113');
  const files = [
    attachment('relay-settings.csv', 'text/csv', 'relay,pickup,delay\n87B,0.2,0\n51N,1.5,0.3\n'),
    attachment('one-line diagram.txt', 'text/plain', 'BUS 1 -- 345kV -- XFMR T1 -- BUS 2\n'),
    attachment('coordination-study.txt', 'text/plain', 'Coordination study, 2024 revision.\n'.repeat(40)),
  ];
  // One picker takes several files; "Add another file" (static/form.js) reveals a second picker row.
  await byId(page, 'files_1').setInputFiles(files.slice(0, 2));
  expect(!(await byId(page, 'files_2').isVisible()), 'the second picker row is shown before "Add another file"');
  await press(page, page.getByRole('button', { name: 'Add another file' }));
  expect(await byId(page, 'files_2').isVisible(), '"Add another file" did not reveal a second picker');
  await byId(page, 'files_2').setInputFiles(files[2]);
  await screenshot(page, '08-submission-form');
  // Continue keeps everything as a draft; the files picked are stored and now ask for their descriptions.
  await go(page, 'submitter: continue, the files to describe', () => press(page, page.getByRole('button', { name: 'Continue' })),
    { expectStatus: 422, shot: '08b-describe-files' });
  const summaryFocused = await page.evaluate(() => document.activeElement?.classList.contains('error-summary'));
  expect(summaryFocused, 'the error summary is not focused on load');
  const described = page.locator('input[id^="attachment_description_"]');
  expect(await described.count() === files.length, `the stored files do not each ask for a description (${await described.count()})`);
  for (const [i, f] of files.entries()) await described.nth(i).fill(`Attachment ${i + 1}: ${f.name}`);
  await go(page, 'submitter: check your answers', () => press(page, page.getByRole('button', { name: 'Continue' })), { shot: '08c-check-answers' });
  expect(new URL(page.url()).pathname.endsWith('/check'), `Continue went to ${page.url()}`);
  for (const f of files) expect((await page.locator('main').textContent()).includes(f.name), `${f.name} is missing from the check page`);
  await tick(page, 'express_statement');
  // Enter on the check page never sends: the script stops it...
  await press(page, byId(page, 'express_statement'), 'Enter');
  await page.waitForTimeout(500);
  expect(new URL(page.url()).pathname.endsWith('/check'), 'Enter on the check page sent the submission');
  // ...and without script, Enter on a box clicks the form's hidden default button, which shows the page again.
  {
    const noScript = await browser.newContext({ storageState: await p.context.storageState(), javaScriptEnabled: false, viewport: { width: 1280, height: 800 } });
    const plain = await noScript.newPage();
    plain.setDefaultTimeout(TIMEOUT);
    await plain.goto(page.url());
    for (const c of ['express_statement', 'cert_not_public', 'cert_not_regulatory', 'cert_authorized']) await tick(plain, c);
    const [response] = await Promise.all([plain.waitForNavigation({ waitUntil: 'load' }), press(plain, byId(plain, 'cert_authorized'), 'Enter')]);
    const problems = [];
    if (response.status() !== 200) problems.push(`HTTP ${response.status()}, expected 200`);
    if (!/Check your answers/.test(await heading(plain))) problems.push(`the page shown is "${await heading(plain)}"`);
    if (!(await byId(plain, 'cert_authorized').isChecked())) problems.push('the ticks are not kept');
    record('submitter: without script, Enter on a ticked box → the check page again, nothing sent', new URL(plain.url()).pathname, problems);
    await noScript.close();
  }
  for (const c of ['cert_not_public', 'cert_not_regulatory', 'cert_authorized']) await tick(page, c);
  await go(page, 'submitter: submitted → receipt', () => press(page, page.getByRole('button', { name: 'Submit to the PCII Program Office' })), { shot: '09-receipt' });
  const h1 = await heading(page);
  const tn = TRACKING.exec(h1)?.[0];
  expect(tn, `the receipt heading has no tracking number: "${h1}"`);
  expect(/received/i.test(await notice(page)), 'no "received" notice on the receipt');
  shared.tracking = tn;
  shared.submissionId = new URL(page.url()).pathname.split('/')[2];
  for (const f of files) expect((await page.locator('table').textContent()).includes(f.name), `${f.name} is missing from the receipt`);

  const receipt = await download(page, () => press(page, page.getByRole('link', { name: 'Download the receipt (plain text)' })));
  const text = receipt.bytes.toString('utf8');
  expect(receipt.name === `${tn}-receipt.txt`, `the text receipt is named ${receipt.name}`);
  expect(text.includes(tn) && text.includes('Critical Infrastructure Information Act of 2002'), 'the text receipt lacks the tracking number or the express statement');
  record('submitter: text receipt downloaded', `${receipt.name} (${receipt.bytes.length} bytes)`, []);

  await go(page, 'submitter: the submission', () => press(page, page.getByRole('link', { name: 'Back to the submission' })), { shot: '10-submission-detail' });
  expect((await page.locator('.pcii-banner').first().textContent()).includes('PENDING VALIDATION'), 'no pending-validation banner');
  await go(page, 'submitter: my account', () => press(page, page.getByRole('link', { name: 'Account', exact: true })));
}

async function flowOfficerDefect(browser) {
  const p = await person(browser, 'officer');
  shared.officer = p;
  const { page } = p;
  // Invited, it chose its password; at its first sign-in it must set up its authenticator app.
  await signIn(p, people.officer.email, 'officer');
  await enrolAuthenticator(p, people.officer, 'officer');
  expect(new URL(page.url()).pathname === '/officer', `signed-in officer landed on ${page.url()}`);
  await screenshot(page, '11-officer-queue');
  const link = page.getByRole('link', { name: shared.tracking });
  await go(page, 'officer: opens the submission from the queue', () => press(page, link), { shot: '12-officer-submission' });
  expect(new URL(page.url()).pathname === `/officer/submissions/${shared.submissionId}`, `the queue link went to ${page.url()}`);

  // A second window on the same page, left stale: its decision is posted after the first one.
  const stale = await p.context.newPage();
  await go(stale, 'officer: same submission in a second window', `/officer/submissions/${shared.submissionId}`);

  // "Not validated" without its reason: the form comes back (422) with the reason marked and the defects kept.
  const defects = 'File 2 (one-line diagram) is unreadable; attach a legible copy.';
  await press(page, byId(page, 'd_not'), 'Space');
  await byId(page, 'defects').fill(defects);
  await go(page, 'officer: a decision without its reason', () => press(page, page.getByRole('button', { name: 'Record the decision' })),
    { expectStatus: 422 });
  expect(await byId(page, 'reason-error').isVisible(), 'the reason field is not marked');
  expect((await byId(page, 'defects').inputValue()) === defects, 'the defects typed are gone');
  expect(await byId(page, 'd_not').isChecked(), 'the decision chosen is gone');
  await press(page, byId(page, 'd_defective'), 'Space');
  await go(page, 'officer: marked defective', () => press(page, page.getByRole('button', { name: 'Record the decision' })));
  expect(/Defective/.test(await notice(page)), `no confirmation of the defect decision: "${await notice(page)}"`);

  await press(stale, byId(stale, 'd_defective'), 'Space');
  await byId(stale, 'defects').fill(defects);
  await go(stale, 'officer: the same decision sent again (stale window)', () => press(stale, stale.getByRole('button', { name: 'Record the decision' })),
    { expectStatus: 409, shot: '25-double-submit-conflict' });
  // The submission page again, as it is now: told it changed meanwhile, the officer's words shown, nothing recorded.
  const staleText = await stale.locator('main').textContent();
  expect(staleText.includes('changed after your page showed it'), 'the repeated decision does not say the submission changed');
  expect(staleText.includes('What you wrote (not recorded)') && staleText.includes(defects), "the stale window's words are gone");
  await stale.close();
}

async function flowSubmitterCures() {
  const p = shared.submitter;
  const { page } = p;
  await go(page, 'submitter: my submissions, with the defect notice', () => press(page, page.getByRole('link', { name: 'My submissions', exact: true })), { shot: '13-submitter-notice' });
  expect((await page.locator('.warning').first().textContent()).includes('unreadable'), 'the defect notice is not shown');
  await go(page, 'submitter: opens the submission', () => press(page, page.getByRole('link', { name: shared.tracking }).first()));
  await go(page, 'submitter: defect answer form', () => press(page, page.getByRole('link', { name: 'Answer the defect notice' })));
  const stale = await p.context.newPage();
  await go(stale, 'submitter: the answer form in a second window', `/submissions/${shared.submissionId}/edit`);

  // File 2, the unreadable diagram, is replaced by a legible copy.
  const replace = page.locator('input[type=file][id^="replace_"]');
  expect(await replace.count() === 3, `each file does not offer "Replace with a corrected file" (${await replace.count()})`);
  await replace.nth(1).setInputFiles(attachment('one-line diagram (legible).txt', 'text/plain', 'BUS 1 == 345 kV == XFMR T1 == BUS 2 (legible)\n'));
  await screenshot(page, '14-defect-answer');
  await go(page, 'submitter: corrections checked', () => press(page, page.getByRole('button', { name: 'Continue' })), { shot: '14b-check-corrections' });
  // The file names listed (the corrected file keeps the old one's description, which names the old file).
  const checked = (await page.locator('main .check-answers .filename').allTextContents()).join('\n');
  expect(checked.includes('one-line diagram (legible).txt') && !checked.includes('one-line diagram.txt'), `the check page does not list the corrected file in place of the old one: ${checked}`);
  await tick(page, 'express_statement');
  for (const c of ['cert_not_public', 'cert_not_regulatory', 'cert_authorized']) await tick(page, c);
  await go(page, 'submitter: corrected submission sent', () => press(page, page.getByRole('button', { name: 'Send the corrected submission' })));
  expect(new URL(page.url()).pathname.endsWith('/receipt'), `after the correction the submitter is on ${page.url()}`);
  const receiptFiles = await page.locator('table').textContent();
  expect(receiptFiles.includes('one-line diagram (legible).txt') && !receiptFiles.includes('one-line diagram.txt'), 'the receipt does not list the corrected file instead of the replaced one');
  await go(page, 'submitter: the submission, with the replaced file on record', () => press(page, page.getByRole('link', { name: 'Back to the submission' })), { shot: '14c-replaced-file' });
  const history = (await page.locator('.replaced-files').textContent()).replace(/\s+/g, ' ');
  expect(/File 2 \(one-line diagram\.txt\), replaced on .* by file 4/.test(history), `the replaced file is not on record: "${history}"`);

  // The stale window continues the same correction again: a clear "conflict" page, nothing changed.
  await go(stale, 'submitter: the correction sent twice (stale window)', () => press(stale, stale.getByRole('button', { name: 'Continue' })), { expectStatus: 409 });
  expect(/Conflict/.test(await heading(stale)), 'the repeated correction does not end on a clear page');
  await stale.close();
}

async function flowConversation() {
  const officer = shared.officer.page;
  const { page } = shared.submitter;
  const id = shared.submissionId;
  const question = 'Which relay settings group is active in winter? Please attach the export.';
  const answer = 'Group 2 is active from November to March; the export is attached.';
  const unsaid = (m) => ![shared.tracking, 'Substation', 'relay', 'unreadable'].some((w) => m.body.includes(w) || m.subject.includes(w));

  // The defect notice of the officer's flow reached the submitter by mail, with its deadline and nothing of the
  // submission in it.
  const defect = await mailed(OUTBOX, people.submitter.email, /defect notice/i);
  expect(/corrected by \d{4}-\d{2}-\d{2}/.test(defect.body), 'the defect mail gives no cure deadline');
  expect(unsaid(defect), 'the defect mail names the submission or quotes the notice');

  // The officer asks a question, marked as a formal request for information.
  await go(officer, 'officer: the submission again', `/officer/submissions/${id}`);
  await go(officer, 'officer: messages with the submitter', () => press(officer, officer.locator('a[data-messages]')));
  await byId(officer, 'body').fill(question);
  await tick(officer, 'request_for_information');
  const asked = Date.now();
  await go(officer, 'officer: question sent', () => press(officer, officer.getByRole('button', { name: 'Send the message' })), { shot: '37-messages-officer' });
  const sent = await officer.locator('ol.thread').textContent();
  expect(sent.includes(question) && sent.includes('Request for information'), 'the question is not in the thread as a request for information');

  // The submitter is told by mail, without a word of the question; its list and the submission show one new message.
  const told = await mailed(OUTBOX, people.submitter.email, /new message/i, { since: asked - 1000 });
  expect(unsaid(told) && !told.body.includes('winter'), 'the message mail says more than that there is a message');
  await go(page, 'submitter: my submissions, one new message', () => press(page, page.getByRole('link', { name: 'My submissions', exact: true })));
  const badge = page.locator(`a[data-unread][href="/submissions/${id}/messages"]`);
  expect(await badge.count() === 1 && (await badge.getAttribute('data-unread')) === '1', 'My submissions does not show the one new message');
  await go(page, 'submitter: the thread', () => press(page, badge), { shot: '38-messages-submitter' });
  expect((await page.locator('ol.thread').textContent()).includes(question), 'the submitter does not see the question');

  // It answers with a file.
  await byId(page, 'body').fill(answer);
  await byId(page, 'file_1').setInputFiles(attachment('settings-group-2.csv', 'text/csv', 'group,active\n2,Nov-Mar\n'));
  await go(page, 'submitter: answer sent with a file', () => press(page, page.getByRole('button', { name: 'Send the message' })));
  const thread = await page.locator('ol.thread').textContent();
  expect(thread.includes(answer) && thread.includes('settings-group-2.csv'), 'the answer or its file is missing from the thread');

  // The officer sees the new message on the submission, reads it and opens its file.
  await go(officer, 'officer: the submission, one new message', `/officer/submissions/${id}`);
  const unread = officer.locator('a[data-messages] [data-unread]');
  expect(await unread.count() === 1 && (await unread.getAttribute('data-unread')) === '1', 'the officer does not see the new message');
  await go(officer, 'officer: reads the answer', () => press(officer, officer.locator('a[data-messages]')));
  expect((await officer.locator('ol.thread').textContent()).includes(answer), 'the officer does not see the answer');
  const file = await download(officer, () => press(officer, officer.getByRole('link', { name: 'settings-group-2.csv' })));
  expect(file.bytes.toString('utf8').includes('Nov-Mar'), 'the message file did not open for the officer');
  record('officer: message file downloaded', `${file.name} (${file.bytes.length} bytes)`, []);

  // Mail choices: the submitter turns off mail about messages; defect notices and cure reminders cannot be turned off.
  await go(page, 'submitter: account, mail choices', () => press(page, page.getByRole('link', { name: 'Account', exact: true })));
  for (const always of ['n-defect_notice', 'n-cure_reminder_7', 'n-cure_reminder_2']) {
    expect(await byId(page, always).isDisabled() && await byId(page, always).isChecked(), `#${always} can be turned off`);
  }
  await press(page, byId(page, 'n-message'), 'Space');
  expect(!(await byId(page, 'n-message').isChecked()), 'the message mail box did not untick from the keyboard');
  await go(page, 'submitter: mail choices saved', () => press(page, page.getByRole('button', { name: 'Save my choices' })), { shot: '39-mail-choices' });
  expect(!(await byId(page, 'n-message').isChecked()), 'the choice to get no message mail was not kept');

  // Help, linked from every page's footer.
  const help = [['Contact', '40-help-contact'], ['What PCII protection means', '41-help-pcii'], ['Privacy', null], ['Accessibility', null]];
  for (const [name, shot] of help) {
    await go(page, `help: ${name}`, () => press(page, page.locator('footer').getByRole('link', { name, exact: true })), shot ? { shot } : {});
  }
  expect(/Program Office/.test(await page.locator('main').textContent()), 'the accessibility statement does not say whom to contact');
}

async function flowOrganisation(browser) {
  // The registrant administers its organisation: it invites a colleague, who then sees the organisation's
  // submissions as its own.
  const p = shared.submitter;
  const { page } = p;
  const who = people.colleague;
  await go(page, 'submitter: its organisation', () => press(page, page.getByRole('link', { name: 'Organisation', exact: true })));
  expect((await heading(page)) === people.submitter.organisation, `the organisation page is headed "${await heading(page)}"`);
  await go(page, 'submitter: colleague invited', () => fillAndEnter(page, { display_name: who.name, email: who.email }));
  expect(new URL(page.url()).pathname === '/organisation', `after inviting, the submitter is on ${page.url()}`);
  expect(/Invitation sent/.test(await notice(page)), `no "Invitation sent" notice: "${await notice(page)}"`);
  expect((await page.locator('main').textContent()).includes(who.email), 'the open invitation is not listed');

  const c = await acceptInvitation(browser, who, 'colleague');
  await go(c.page, 'colleague: signed in → my submissions', () => fillAndEnter(c.page, { email: who.email, password: PASSWORD }));
  expect(new URL(c.page.url()).pathname === '/submissions', `the signed-in colleague landed on ${c.page.url()}`);
  expect((await c.page.locator('main').textContent()).includes(shared.tracking), 'the colleague does not see its organisation\'s submission');
  await go(c.page, 'colleague: opens the organisation\'s submission', () => press(c.page, c.page.getByRole('link', { name: shared.tracking }).first()));
  expect(new URL(c.page.url()).pathname === `/submissions/${shared.submissionId}`, `the colleague's link went to ${c.page.url()}`);
  await go(c.page, 'colleague: the organisation page is for administrators', '/organisation', { expectStatus: 403 });
  await signOut(c, 'colleague');
  await c.context.close();

  await go(page, 'submitter: its organisation, with the colleague', () => press(page, page.getByRole('link', { name: 'Organisation', exact: true })), { shot: '30-organisation' });
  const members = await page.locator('table').first().locator('tbody tr').allTextContents();
  expect(members.length === 2 && members.some((r) => r.includes(who.email)), 'the colleague is not listed among the members');
  await signOut(p, 'submitter');
  await p.context.close();
}

async function flowOfficerValidates() {
  const p = shared.officer;
  const { page } = p;
  await go(page, 'officer: the queue', () => press(page, page.getByRole('link', { name: 'Queue', exact: true })));
  // The cured submission is flagged for a re-review, with its title.
  const row = (await page.locator('tr', { has: page.getByRole('link', { name: shared.tracking }) }).textContent()).replace(/\s+/g, ' ');
  expect(row.includes('Cured — re-review'), `the cured submission is not flagged "Cured — re-review": ${row}`);
  // The queue's row (the list of threads waiting for an answer, below it, may name the same number).
  await go(page, 'officer: opens the corrected submission', () => press(page, page.getByRole('table').getByRole('link', { name: shared.tracking })));
  // The case: claimed, then found under "Assigned to me".
  await go(page, 'officer: claims the case', () => press(page, page.getByRole('button', { name: 'Claim this case' })));
  expect(/You now handle|assigned|claimed/i.test(await notice(page)), `no confirmation of the claim: "${await notice(page)}"`);
  await go(page, 'officer: the queue, assigned to me', '/officer?assignee=me', { shot: '11b-officer-queue-mine' });
  const mine = await page.locator('table.queue tbody tr').allTextContents();
  expect(mine.length === 1 && mine[0].includes(shared.tracking) && mine[0].includes(people.officer.name), `"Assigned to me" shows ${mine.length} row(s): ${mine.map((r) => r.replace(/\s+/g, ' ').slice(0, 100)).join(' | ')}`);
  await go(page, 'officer: opens the claimed submission', () => press(page, page.getByRole('table').getByRole('link', { name: shared.tracking })));
  await press(page, byId(page, 'd_validate'), 'Space');
  await byId(page, 'reason').fill('Express statement, certifications and legible files present.');
  // A final decision: a page says what will follow, and nothing is recorded until its button is pressed.
  await go(page, 'officer: asked to confirm the validation', () => press(page, page.getByRole('button', { name: 'Record the decision' })));
  expect(/^Validate PCII-/.test(await heading(page)), `no confirmation page before validating: "${await heading(page)}"`);
  await go(page, 'officer: validated', () => press(page, page.getByRole('button', { name: 'Confirm: validated' })));
  expect(/Validated/.test(await notice(page)), `no confirmation of validation: "${await notice(page)}"`);
  expect((await page.locator('.pcii-banner').first().textContent()).includes('PROTECTED CRITICAL INFRASTRUCTURE INFORMATION'), 'no PCII marking after validation');

  // The analyst's access comes from its own request (flowAnalyst).
  // Validated, it left the queue; the search finds it by its organisation's name.
  await go(page, 'officer: search', () => press(page, page.getByRole('link', { name: 'Search', exact: true })));
  await go(page, 'officer: found by organisation', () => fillAndEnter(page, { 'find-organisation': people.submitter.organisation.split(' ')[0] }), { shot: '36-officer-search' });
  const found = await page.locator('main table tbody tr').allTextContents();
  expect(found.some((r) => r.includes(shared.tracking) && /Validated/.test(r)), `the validated submission is not found by its organisation's name: ${found.map((r) => r.replace(/\s+/g, ' ').slice(0, 100)).join(' | ')}`);
  await go(page, 'officer: back to the submission', () => press(page, page.getByRole('link', { name: shared.tracking }).first()));
  await byId(page, 'recipient').fill('State Public Utility Commission, Cyber Unit');
  await byId(page, 'recipient_kind').selectOption({ index: 0 });
  await byId(page, 'arrangement').fill('Information sharing agreement 2024-03');
  await go(page, 'officer: release recorded', () => fillAndEnter(page, { what: 'Sanitized summary of the relay settings' }), { shot: '15-officer-validated' });
  expect(/dissemination log/.test(await notice(page)), 'no confirmation of the release');
  const zip = await download(page, () => press(page, page.getByRole('link', { name: 'Export as zip (marked)' })));
  expect(zip.bytes.subarray(0, 4).toString('binary') === 'PK\u0003\u0004' && zip.bytes.includes('COVER-SHEET.txt'), 'the officer\'s export is not a marked zip');
  record('officer: marked zip exported', `${zip.name} (${zip.bytes.length} bytes)`, []);
  await go(page, 'officer: dissemination log', () => press(page, page.getByRole('link', { name: 'Dissemination log', exact: true })), { shot: '16-dissemination-log' });
  await signOut(p, 'officer');
  await p.context.close();
}

/**
 * The officer adds a passkey (Chromium's virtual authenticator, as a platform authenticator with user
 * verification) on /account/security and signs in with it in place of the authenticator app. Passkeys need the
 * portal's origin to be a host name: the main portal is configured and browsed as http://localhost:PORT.
 */
async function flowOfficerPasskey(browser) {
  const p = await person(browser, 'officer (passkey)');
  const { page } = p;
  const cdp = await p.context.newCDPSession(page);
  await cdp.send('WebAuthn.enable', { enableUI: false });
  const { authenticatorId } = await cdp.send('WebAuthn.addVirtualAuthenticator', {
    options: { protocol: 'ctap2', transport: 'internal', hasResidentKey: true, hasUserVerification: true, isUserVerified: true, automaticPresenceSimulation: true },
  });
  await signIn(p, people.officer.email, 'officer');
  expect(here(page) === '/officer', `signed-in officer landed on ${page.url()}`);
  await go(page, 'officer: my account', () => press(page, page.getByRole('link', { name: 'Account', exact: true })));
  await go(page, 'officer: second factors', () => press(page, page.getByRole('link', { name: 'Manage your authenticator app, passkeys and recovery codes' })));
  expect(here(page) === '/account/security', `the second-factor link went to ${page.url()}`);
  expect(await page.locator('form[data-webauthn="register"]').count() === 1, 'no form to add a passkey on a portal at http://localhost');
  await go(page, 'officer: passkey added', () => fillAndEnter(page, { 'passkey-name': 'Virtual key' }), { shot: '31-passkeys' });
  expect(here(page) === '/account/security', `after adding a passkey the officer is on ${page.url()}`);
  const added = await page.locator('[data-webauthn-message]').allTextContents();
  expect(/passkey is added/.test(await notice(page)), `no "Your passkey is added." notice: "${await notice(page)}" ${added.join(' ')}`);
  const rows = await page.locator('main table tbody tr').allTextContents();
  expect(rows.length === 1 && rows[0].includes('Virtual key') && rows[0].includes('Never'), `the passkey is not listed as "Virtual key", never used: ${rows.join(' | ')}`);
  const { credentials } = await cdp.send('WebAuthn.getCredentials', { authenticatorId });
  expect(credentials.length === 1 && credentials[0].rpId === 'localhost', `the authenticator holds ${credentials.length} credential(s) (${credentials.map((c) => c.rpId).join(', ')}), not one for localhost`);
  record('officer: passkey held by the virtual authenticator', `1 credential for rp id ${credentials[0].rpId} (${credentials[0].isResidentCredential ? '' : 'not '}discoverable)`, []);
  await signOut(p, 'officer');

  // The password, then the passkey in place of a code.
  await signIn(p, people.officer.email, 'officer', { factor: 'none', shot: '32-second-factor-passkey' });
  expect(await page.locator('form[data-webauthn="authenticate"]').count() === 1, 'the second-factor page offers no passkey');
  await go(page, 'officer: signed in with the passkey', () => press(page, page.getByRole('button', { name: 'Use a passkey or security key' })));
  expect(here(page) === '/officer', `after the passkey the officer is on ${page.url()}: ${await errorSummary(page)}`);
  expect(/You are signed in/.test(await notice(page)), `no "You are signed in." after the passkey: "${await notice(page)}"`);
  await go(page, 'officer: second factors, passkey used', '/account/security');
  const used = await page.locator('main table tbody tr').first().textContent();
  expect(!used.includes('Never'), `the passkey is still "never used" after signing in with it: ${used}`);
  await signOut(p, 'officer');

  // A copy of the key whose count is behind the portal's (what a cloned authenticator looks like): the same private
  // key, put back with its signature counter at 0. Its correctly signed answer is refused and the passkey removed;
  // the authenticator app still signs in.
  const [held] = (await cdp.send('WebAuthn.getCredentials', { authenticatorId })).credentials;
  expect(held.signCount >= 1, `the virtual authenticator counted ${held.signCount} uses of the passkey`);
  await cdp.send('WebAuthn.removeCredential', { authenticatorId, credentialId: held.credentialId });
  await cdp.send('WebAuthn.addCredential', { authenticatorId, credential: { ...held, signCount: 0 } });
  await signIn(p, people.officer.email, 'officer', { factor: 'none' });
  await go(page, 'officer: a copy of the passkey, its count behind → refused and removed', () => press(page, page.getByRole('button', { name: 'Use a passkey or security key' })), { expectStatus: 401 });
  expect(here(page) === '/login/second-factor', `after the copied passkey the officer is on ${page.url()}`);
  expect(/removed from your account/.test(await errorSummary(page)), `the refusal does not say the passkey was removed: "${await errorSummary(page)}"`);
  const { code } = await factors.code(people.officer.email);
  await go(page, 'officer: signed in with the authenticator app instead', () => fillAndEnter(page, { factor_code: code }));
  expect(/You are signed in/.test(await notice(page)), `the app code did not sign in after the refused passkey: "${await notice(page)}"`);
  await go(page, 'officer: second factors, the copied passkey gone', '/account/security');
  const left = (await page.locator('main').textContent());
  expect(!left.includes('Virtual key'), 'the passkey whose count went back is still listed');
  await signOut(p, 'officer');
  await p.context.close();
}

async function flowAnalyst(browser) {
  const p = await person(browser, 'authorized user');
  const { page } = p;
  await signIn(p, people.analyst.email, 'authorized user');
  await enrolAuthenticator(p, people.analyst, 'authorized user');
  expect(new URL(page.url()).pathname === '/analyst', `signed-in authorized user landed on ${page.url()}`);

  // No grant yet: the analyst asks for access by tracking number, with its need to know.
  await byId(page, 'tracking').fill(shared.tracking);
  await byId(page, 'reason').fill('Regional grid resilience assessment, task 7');
  await go(page, 'authorized user: access requested', () => press(page, page.getByRole('button', { name: 'Ask for access' })));
  expect(/request was sent/.test(await notice(page)), `no confirmation of the request: "${await notice(page)}"`);
  // An officer grants it from the pending requests.
  const o = await person(browser, 'officer (access request)');
  await signIn(o, people.officer.email, 'officer');
  await go(o.page, 'officer: access requests', () => press(o.page, o.page.getByRole('link', { name: 'Access requests', exact: true })), { shot: '35-officer-access-requests' });
  const pending = (await o.page.locator('main').textContent()).replace(/\s+/g, ' ');
  expect(pending.includes(people.analyst.email) && pending.includes('Regional grid resilience assessment, task 7'), 'the pending request does not show the analyst and its reason');
  await go(o.page, 'officer: request granted', () => press(o.page, o.page.getByRole('button', { name: 'Grant', exact: true })));
  expect(/granted/i.test(await notice(o.page)) && /told by email/.test(await notice(o.page)), `no confirmation of the grant: "${await notice(o.page)}"`);
  await signOut(o, 'officer');
  await o.context.close();
  // The analyst is told by email that the request was decided, and nothing about the submission.
  const told = fs.readdirSync(OUTBOX).filter((f) => f.endsWith('.eml'))
    .map((f) => parseEml(fs.readFileSync(path.join(OUTBOX, f), 'utf8')))
    .filter((m) => m.to.includes(people.analyst.email) && /was decided/.test(m.body));
  expect(told.length === 1 && !told[0].body.includes(shared.tracking), `${told.length} "decided" message(s) to the analyst, or one naming the submission`);
  record(`mail to ${people.analyst.email}`, `"${told[0].subject}"`, []);
  // The grant: title, reason and days left.
  await go(page, 'authorized user: home, with the grant', '/analyst', { shot: '17-analyst-home' });
  const grant = (await page.locator('table').first().locator('tbody tr').first().textContent()).replace(/\s+/g, ' ');
  expect(grant.includes(shared.tracking) && grant.includes('Regional grid resilience assessment, task 7'), `the grant row lacks the number or the reason: ${grant}`);
  const daysLeft = Number(await page.locator('[data-days-left]').first().getAttribute('data-days-left'));
  expect(daysLeft >= 80 && daysLeft <= 90, `the grant shows ${daysLeft} days left, not about 90`);
  await go(page, 'authorized user: opens the granted submission', () => press(page, page.getByRole('link', { name: shared.tracking })), { shot: '18-analyst-submission' });
  expect(new URL(page.url()).pathname === `/analyst/submissions/${shared.submissionId}`, `the grant link went to ${page.url()}`);
  expect((await page.locator('.narrative').textContent()).includes('<b>not</b> public'), 'the narrative is not shown as written (escaped)');
  const file = await download(page, () => press(page, page.getByRole('link', { name: 'relay-settings.csv' })));
  expect(file.bytes.toString('utf8').startsWith('relay,pickup,delay'), 'the downloaded attachment differs from the upload');
  const zip = await download(page, () => press(page, page.getByRole('link', { name: 'Export as zip (marked)' })));
  expect(zip.name === `${shared.tracking}-export.zip`, `the export is named ${zip.name}`);
  expect(zip.bytes.subarray(0, 4).toString('binary') === 'PK\u0003\u0004' && zip.bytes.includes('COVER-SHEET.txt'), 'the export is not a marked zip');
  record('authorized user: attachment and zip downloaded', `${file.name}, ${zip.name} (${zip.bytes.length} bytes)`, []);
  await signOut(p, 'authorized user');
  await p.context.close();
}

async function flowAuditor(browser) {
  const p = await person(browser, 'auditor');
  const { page } = p;
  await signIn(p, people.auditor.email, 'auditor');
  // Without a second factor the audit log is out of reach: opening it leads to /account/security.
  await go(page, 'auditor: opens the audit log before setting up a factor', '/audit');
  expect(here(page) === '/account/security', `an auditor without a second factor opened /audit and got ${page.url()}`);
  expect(/needs a second factor/.test(await errorSummary(page)), `the enrolment page does not say why: "${await errorSummary(page)}"`);
  await enrolAuthenticator(p, people.auditor, 'auditor');
  expect(new URL(page.url()).pathname === '/audit', `signed-in auditor landed on ${page.url()}`);

  await go(page, 'auditor: log filtered by tracking number', () => fillAndEnter(page, { 'f-object': shared.tracking }));
  let rows = await page.locator('tbody tr').allTextContents();
  expect(rows.some((r) => r.includes('authorized_user') && r.includes('content.viewed')), 'the authorized user\'s read is not in the filtered log');
  expect(rows.some((r) => r.includes('authorized_user') && r.includes('content.exported')), 'the authorized user\'s export is not in the filtered log');
  // The action is chosen by its plain-English label; the real name is shown beside it.
  await byId(page, 'f-action').selectOption({ label: 'Submission exported (package) (content.exported)' });
  await go(page, 'auditor: … and by action', () => press(page, byId(page, 'f-object')), { shot: '20-audit-filtered' });
  rows = await page.locator('tbody tr').allTextContents();
  expect(rows.length >= 2 && rows.every((r) => r.includes('content.exported') && r.includes(shared.tracking)), 'the action filter did not narrow the log to exports of this submission');
  expect(rows.some((r) => r.includes(people.analyst.name) && r.includes(people.analyst.email)), 'the log does not name the authorized user next to its account id');
  const q = new URL(page.url()).searchParams;
  expect(q.get('object') === shared.tracking && q.get('action') === 'content.exported', `the filters are not in the address: ${page.url()}`);

  // Who opened it, found by the person's email.
  await byId(page, 'f-action').selectOption({ label: 'Any action' });
  await go(page, 'auditor: log filtered by a person\'s email', () => fillAndEnter(page, { 'f-object': '', 'f-person': people.analyst.email }));
  rows = await page.locator('tbody tr').allTextContents();
  expect(rows.length >= 2 && rows.every((r) => r.includes(people.analyst.email)) && rows.some((r) => r.includes('content.viewed')),
    `the person filter did not narrow the log to the authorized user's entries: ${rows.length} rows, ${rows.map((r) => r.replace(/\s+/g, ' ').slice(0, 120)).join(' | ')}`);

  await go(page, 'auditor: history of the submission', () => press(page, page.getByRole('link', { name: shared.tracking }).first()), { shot: '34-audit-who-accessed' });
  const readers = (await page.locator('table.readers tbody').textContent()).replace(/\s+/g, ' ');
  expect(readers.includes(people.analyst.name) && readers.includes(people.analyst.email), `"Who accessed this submission" does not name the authorized user: ${readers}`);
  await go(page, 'auditor: back to the whole log', () => press(page, page.getByRole('link', { name: 'Back to the whole log' })));
  await go(page, 'auditor: verified the log', () => press(page, page.getByRole('button', { name: 'Verify the log now' })), { shot: '19-audit-log' });
  expect(await page.locator('[data-verification="ok"]').count() === 1, 'the verification status is not OK');
  const zip = await download(page, () => press(page, page.getByRole('button', { name: 'Download an export (zip)' })));
  expect(zip.bytes.subarray(0, 4).toString('binary') === 'PK\u0003\u0004' && zip.bytes.includes('entries.jsonl') && zip.bytes.includes('manifest.json'), 'the audit export is not the expected zip');
  record('auditor: audit export downloaded', `${zip.name} (${zip.bytes.length} bytes)`, []);
  await go(page, 'auditor: signed checkpoints', () => press(page, page.getByRole('link', { name: 'Checkpoints', exact: true })), { shot: '21-audit-checkpoints' });
  await signOut(p, 'auditor');
  await p.context.close();
}

/**
 * The auditor lost its phone and recovery codes: the administrator resets its second factors ("Reset second
 * factors", a reason and a confirmation box; at once, with a single administrator). The reset voids its password:
 * it chooses a new one through the mailed link, and at its next sign-in must set up a factor again before it
 * reaches the audit log.
 */
async function flowFactorReset(browser) {
  const a = await person(browser, 'administrator');
  await signIn(a, people.admin.email, 'admin');
  expect(here(a.page) === '/admin', `signed-in administrator landed on ${a.page.url()}`);
  await go(a.page, 'admin: the auditor\'s account', () => press(a.page, a.page.getByRole('link', { name: people.auditor.name, exact: true })));
  const before = (await a.page.locator('main').textContent()).replace(/\s+/g, ' ');
  expect(/Authenticator app set up\. 0 passkeys; 10 unused recovery codes/.test(before), 'the account page does not show the auditor\'s authenticator app and ten recovery codes');
  await byId(a.page, 'reset-reason').fill('Lost phone and recovery codes; identity checked in person (badge 4471)');
  await tick(a.page, 'reset-confirm');
  await go(a.page, 'admin: the auditor\'s second factors reset', () => press(a.page, a.page.getByRole('button', { name: 'Reset second factors' })));
  expect(/Second factors reset/.test(await notice(a.page)), `no confirmation of the reset: "${await notice(a.page)}"`);
  const after = (await a.page.locator('main').textContent()).replace(/\s+/g, ' ');
  expect(!after.includes('Authenticator app set up') && /0 passkeys; 0 unused recovery codes/.test(after), 'the account page still shows factors after the reset');
  factors.forget(people.auditor.email);
  await signOut(a, 'admin');
  await a.context.close();

  const p = await person(browser, 'auditor');
  // The reset voided the password too: the old one is refused, and a new one is chosen through the mailed link
  // (so whoever knew the old password cannot enrol a factor of their own first).
  await go(p.page, 'auditor: sign-in page', '/login');
  await go(p.page, 'auditor: the old password, after the reset', () => fillAndEnter(p.page, { email: people.auditor.email, password: PASSWORD }), { expectStatus: 401 });
  await go(p.page, 'auditor: forgot the password', '/password/forgot');
  await go(p.page, 'auditor: a reset link asked for', () => fillAndEnter(p.page, { email: people.auditor.email }));
  const resetLink = await mailedLink(OUTBOX, people.auditor.email, '/password/reset/');
  await go(p.page, 'auditor: opens the reset link', resetLink);
  await go(p.page, 'auditor: a new password', () => fillAndEnter(p.page, { new_password: PASSWORD }));
  await signIn(p, people.auditor.email, 'auditor (after the reset)');
  expect(here(p.page) === '/account/security', `after the reset the auditor's sign-in led to ${p.page.url()}`);
  expect(/needs a second factor/.test(await errorSummary(p.page)), 'after the reset, /account/security does not ask for a new factor');
  await go(p.page, 'auditor: the audit log, before a new factor', '/audit');
  expect(here(p.page) === '/account/security', `after the reset /audit led to ${p.page.url()}`);
  await signOut(p, 'auditor');
  await p.context.close();
}

async function flowOtherOrganisation(browser) {
  const p = await person(browser, 'other submitter');
  const { page } = p;
  await go(page, 'other submitter: registration', '/register');
  await go(page, 'other submitter: registered', () => fillAndEnter(page, {
    display_name: people.other.name, organisation: people.other.organisation, email: people.other.email, password: PASSWORD,
  }));
  expect(/Registration received/.test(await notice(page)), 'no confirmation after registering');
  await confirmEmail(p, people.other.email, 'other submitter');
  expect(new URL(page.url()).pathname === '/submissions', `the confirmed other submitter landed on ${page.url()}`);
  // Pasting another organisation's address: the same 404 as for an id that does not exist.
  await go(page, 'other submitter: pastes GridCo\'s submission URL', `/submissions/${shared.submissionId}`, { expectStatus: 404, shot: '22-not-found' });
  expect(/Not found/.test(await heading(page)), 'no clear "Not found" page');
  expect(!(await page.content()).includes('Substation 14'), 'another organisation\'s content leaked onto the 404 page');
  await go(page, 'other submitter: pastes its receipt URL', `/submissions/${shared.submissionId}/receipt`, { expectStatus: 404 });

  // The session is gone (expired, or its cookie lost): a protected page asks to sign in.
  await p.context.clearCookies();
  await go(page, 'other submitter: session gone, opens a protected page', '/submissions/new', { expectStatus: 401, shot: '23-sign-in-required' });
  expect(/sign in/i.test(await heading(page)), 'no clear "Please sign in" page');
  await go(page, 'other submitter: follows "Sign in"', () => press(page, page.getByRole('link', { name: 'Sign in', exact: true }).last()));
  expect(new URL(page.url()).pathname === '/login', 'the sign-in link does not lead to /login');
  await go(page, 'other submitter: wrong password', () => fillAndEnter(page, { email: people.other.email, password: 'not the password at all' }), { expectStatus: 401 });
  expect((await page.locator('.error-summary').textContent()).includes('not correct'), 'no message for a wrong password');
  await p.context.close();
}

async function flowTooLarge(browser) {
  const p = await person(browser, 'submitter (1 MiB limit)');
  const { page } = p;
  const base = SMALL_BASE;
  await go(page, 'large upload: registration', '/register', { base });
  await go(page, 'large upload: registered', () => fillAndEnter(page, {
    display_name: people.big.name, organisation: people.big.organisation, email: people.big.email, password: PASSWORD,
  }));
  expect(/Registration received/.test(await notice(page)), 'no confirmation after registering');
  await confirmEmail(p, people.big.email, 'large upload', { base, outbox: SMALL_OUTBOX });
  expect(new URL(page.url()).pathname === '/submissions', `the confirmed submitter landed on ${page.url()}`);
  // This portal's origin is http://127.0.0.1:PORT: an IP address, where passkeys are off (and say so). A
  // submitter whose organisation does not require a second factor has none and is not asked for one.
  await go(page, 'large upload: second factors (none; passkeys off on an IP)', '/account/security', { base });
  const security = (await page.locator('main').textContent()).replace(/\s+/g, ' ');
  expect(await errorSummary(page) === '', `a submitter is told it needs a second factor: "${await errorSummary(page)}"`);
  expect(security.includes('Passkeys need the portal to be reached by a host name'), 'on an IP origin, /account/security does not say why passkeys are off');
  expect(await page.locator('form[data-webauthn]').count() === 0, 'a passkey form is offered on an IP origin');
  await go(page, 'large upload: new submission form', () => press(page, page.getByRole('link', { name: 'New submission' }).first()));
  expect((await page.locator('form.form').textContent()).includes('1.0 MiB each'), 'the form does not state the 1 MiB file limit');
  await byId(page, 'sector').selectOption('Communications');
  await byId(page, 'title').fill('Core network capture');
  await byId(page, 'narrative').fill('A 2 MiB packet capture.');
  await byId(page, 'primary_name').fill(people.big.name);
  await byId(page, 'primary_email').fill(people.big.email);
  await byId(page, 'files_1').setInputFiles({ name: 'capture.pcap', mimeType: 'application/octet-stream', buffer: Buffer.alloc(2 * 1024 * 1024, 0x5a) });
  await refusedBeforeSending(browser, p, 'large upload', 'capture.pcap', '“capture.pcap” is 2 MiB; the limit per file is 1 MiB', { shot: '24-too-large' });
  await go(page, 'large upload: my submissions (nothing saved)', '/submissions', { base });
  expect((await page.locator('caption').first().textContent()).trim().startsWith('0 submissions'), 'the refused upload left a submission behind');
  await p.context.close();
}

// ------------------------------------------------------------------------------------------------

const flows = [
  ['self-test of the page checks', selfTest],
  ['second portal: its administrator sets up an authenticator app', flowSmallAdministrator],
  ['administrator: setup, second factor, accounts, training and NDA', flowAdministrator],
  ['submitter: registers, submits, receipt', flowSubmitter],
  ['officer: queue, defect notice, double decision', flowOfficerDefect],
  ['submitter: answers the defect notice', flowSubmitterCures],
  ['officer and submitter: mail, messages, mail choices, help', flowConversation],
  ['organisation administrator: invites a colleague', flowOrganisation],
  ['officer: validates, grants, records a release', flowOfficerValidates],
  ['officer: adds a passkey, signs in with it; a copy of it is refused and removed', flowOfficerPasskey],
  ['authorized user: reads and exports', flowAnalyst],
  ['auditor: filters, verifies, exports', flowAuditor],
  ['administrator: resets the auditor\'s second factors', flowFactorReset],
  ['another organisation: 404, lost session, wrong password', flowOtherOrganisation],
  ['too-large file: refused before sending', flowTooLarge],
  ['uploads that talk: progress, a long upload, the idle warning, a draft that survives', flowUploadsAndSessions],
  ['second portal: step-up with a stale factor', flowStepUp],
];

const started = Date.now();
const browser = await chromium.launch({
  timeout: 120000,
  executablePath: CHROMIUM,
  headless: true,
  // Playwright gives each launch a fresh temporary profile (--user-data-dir) and removes it afterwards.
  args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking',
    '--disable-component-update', '--disable-sync'],
}).catch((e) => {
  console.log(`FAIL could not start Chromium at ${CHROMIUM}: ${e.message}`);
  console.log('0 passed, 1 failed');
  process.exit(1);
});
console.log(`Chromium ${browser.version()} (${CHROMIUM}); portal ${BASE}; small-limit portal ${SMALL_BASE}`);

let flowFailure = null;
let flowsPassed = 0;
for (const [name, flow] of flows) {
  console.log(`\n# ${name}`);
  try {
    await flow(browser);
    flowsPassed += 1;
  } catch (e) {
    flowFailure = `${name}: ${e instanceof FlowError ? e.message : e.stack}`;
    console.log(`FAIL flow stopped — ${flowFailure}`);
    break; // later flows depend on this one
  }
}
await browser.close();

const failedPages = results.filter((r) => r.problems.length);
const seconds = ((Date.now() - started) / 1000).toFixed(1);
console.log(`\n${results.length} pages and downloads checked, ${assertions} flow assertions, ${shotCount} screenshots in ${path.relative(process.cwd(), SHOTS) || SHOTS}, ${seconds} s`);
console.log(`flows: ${flowsPassed} of ${flows.length} completed`);
if (failedPages.length) {
  console.log(`checks failed on ${failedPages.length} page(s):`);
  for (const r of failedPages) console.log(`  ${r.label} (${r.where}): ${r.problems.length} problem(s)`);
}
if (flowFailure) console.log(`flow failure: ${flowFailure}`);
const passed = results.length - failedPages.length;
console.log(`${passed} passed, ${failedPages.length + (flowFailure ? 1 : 0)} failed`);
process.exit(failedPages.length || flowFailure ? 1 : 0);

// ------------------------------------------------------------------------------------------------
// Uploads that talk, sessions that warn, drafts that survive (static/upload.js, static/session.js)
// ------------------------------------------------------------------------------------------------

/**
 * On the form now shown (files chosen), "Save draft" must be refused by the page itself: no POST leaves the
 * browser, an error summary at the top of the form names the file and the limit and has the focus. Then, without
 * script (a second context with the same cookies), the server answers 413 with the form again, the typed text
 * kept and the file named.
 */
async function refusedBeforeSending(browser, p, label, fileName, message, { shot } = {}) {
  const { page } = p;
  const base = new URL(page.url()).origin;
  const posts = [];
  const onRequest = (r) => { if (r.method() === 'POST') posts.push(new URL(r.url()).pathname); };
  page.on('request', onRequest);
  await press(page, page.locator('button[name=action][value=draft]'));
  const summary = page.locator('form .error-summary[data-upload-message]');
  await summary.waitFor({ state: 'visible' });
  await page.waitForTimeout(500);
  page.off('request', onRequest);
  const text = (await summary.textContent()).replace(/\s+/g, ' ');
  expect(text.includes(message), `the refusal does not say "${message}": "${text}"`);
  expect(await summary.evaluate((el) => el === document.activeElement), 'the error summary does not have the focus');
  expect(posts.length === 0, `the form was sent although a file is over the limit: POST ${posts.join(', ')}`);
  await checkPage(page, `${label}: refused before sending, naming ${fileName}`, { status: 200, headers: await headersOf(p), shot });

  const narrative = await byId(page, 'narrative').inputValue();
  const noScript = await browser.newContext({ storageState: await p.context.storageState(), javaScriptEnabled: false, viewport: { width: 1280, height: 800 } });
  const plain = await noScript.newPage();
  plain.setDefaultTimeout(TIMEOUT);
  await plain.goto(new URL('/submissions/new', base).href);
  await byId(plain, 'title').fill('Sent without script');
  await byId(plain, 'narrative').fill(narrative);
  await byId(plain, 'files_1').setInputFiles({ name: fileName, mimeType: 'application/octet-stream', buffer: Buffer.alloc(2 * 1024 * 1024, 0x5a) });
  const [response] = await Promise.all([plain.waitForNavigation({ waitUntil: 'load' }), plain.locator('button[name=action][value=draft]').click()]);
  const main = (await plain.locator('main').textContent()).replace(/\s+/g, ' ');
  const problems = [];
  if (response.status() !== 413) problems.push(`HTTP ${response.status()}, expected 413`);
  if ((await byId(plain, 'narrative').inputValue()) !== narrative) problems.push('the typed narrative is not kept on the 413 form');
  if (!main.includes(`“${fileName}” is larger than the limit of 1 MiB per file`)) problems.push(`the 413 form does not name ${fileName}`);
  record(`${label}: without script, 413 with the text kept and ${fileName} named`, new URL(plain.url()).pathname, problems);
  await noScript.close();
}

/** The headers the page now shown is served with (asked again, with the same cookies: no navigation showed it). */
async function headersOf(p) {
  const r = await p.context.request.get(p.page.url());
  return r.headers();
}

/** A submitter of its own on `base`: registered, address confirmed, on "My submissions". */
async function newSubmitter(browser, who, label, base, outbox) {
  const p = await person(browser, label);
  const { page } = p;
  await go(page, `${label}: registration`, '/register', { base });
  await go(page, `${label}: registered`, () => fillAndEnter(page, {
    display_name: who.name, organisation: who.organisation, email: who.email, password: PASSWORD,
  }));
  await confirmEmail(p, who.email, label, { base, outbox });
  expect(here(page) === '/submissions', `${label} landed on ${page.url()}`);
  return p;
}

/** Slows the page's network (DevTools Network.emulateNetworkConditions): bytes per second up and down. */
async function throttle(p, upload, download = -1) {
  const cdp = await p.context.newCDPSession(p.page);
  await cdp.send('Network.enable');
  await cdp.send('Network.emulateNetworkConditions', { offline: false, latency: 40, uploadThroughput: upload, downloadThroughput: download });
  return cdp;
}

/** A file of `bytes` under WORK (large files go by path: the DevTools protocol carries no 200 MB buffer). */
function bigFile(name, bytes) {
  const file = path.join(WORK, name);
  const fd = fs.openSync(file, 'w');
  const chunk = Buffer.alloc(1024 * 1024, 0x41);
  for (let left = bytes; left > 0; left -= chunk.length) fs.writeSync(fd, chunk, 0, Math.min(chunk.length, left));
  fs.closeSync(fd);
  return file;
}

/**
 * Sends the form now shown with "Save draft" and watches it: the buttons disabled, the total progress bar
 * rising; then the page it leads to. Returns the progress values seen, the seconds taken, and how many times
 * the page it led to was fetched meanwhile (by the script and the browser together).
 */
async function sendWatched(p, label, { timeout = 300000 } = {}) {
  const { page } = p;
  const fetched = [];
  const onRequest = (r) => { if (r.method() === 'GET') fetched.push(new URL(r.url()).pathname); };
  page.on('request', onRequest);
  const nav = page.waitForNavigation({ waitUntil: 'load', timeout });
  const started = Date.now();
  await press(page, page.locator('button[name=action][value=draft]'));
  const seen = [];
  let disabled = null;
  let settled = false;
  nav.then(() => { settled = true; }, () => { settled = true; });
  while (!settled) {
    try {
      const v = await page.evaluate(() => {
        const bar = document.querySelector('.upload-total progress');
        const button = document.querySelector('button[name=action][value=draft]');
        return bar ? { value: bar.value, disabled: button.disabled } : null;
      });
      if (v) {
        if (!seen.length || v.value !== seen[seen.length - 1]) seen.push(v.value);
        if (disabled === null) disabled = v.disabled;
      }
    } catch (_) {
      // The page is being replaced by the one the upload led to.
    }
    await new Promise((r) => setTimeout(r, 250));
  }
  const response = await nav;
  const seconds = (Date.now() - started) / 1000;
  page.off('request', onRequest);
  await checkPage(page, label, { status: response.status(), headers: await response.allHeaders() });
  const fetches = fetched.filter((path) => path === here(page)).length;
  return { seen, seconds, disabled, fetches };
}

async function fillDraft(page, { title, narrative, file }) {
  await byId(page, 'title').fill(title);
  await byId(page, 'narrative').fill(narrative);
  // The file first; its description is asked for once the draft holds it.
  if (file) await byId(page, 'files_1').setInputFiles(file);
}

async function flowUploadsAndSessions(browser) {
  const IDLE_BASE = env('PCII_IDLE_BASE_URL');
  const IDLE_OUTBOX = env('PCII_IDLE_OUTBOX_DIR');

  // The main portal: 200 MB over a throttled link, with progress, ending on the submission's page.
  // The submitter of the first flows, in a browser of its own again (its first one was closed by a later flow).
  const sam = await person(browser, 'submitter (progress)');
  await signIn(sam, people.submitter.email, 'submitter (progress)');
  const big = bigFile('plant-survey-200mb.bin', 200 * 1024 * 1024);
  await go(sam.page, 'progress: new submission form', '/submissions/new');
  await fillDraft(sam.page, { title: 'Plant survey', narrative: 'A 200 MB survey, sent over a slow link.', file: big });
  const slow = await throttle(sam, 4 * 1024 * 1024);
  const sent = await sendWatched(sam, 'progress: 200 MB draft saved');
  await slow.send('Network.emulateNetworkConditions', { offline: false, latency: 0, uploadThroughput: -1, downloadThroughput: -1 });
  const rising = sent.seen.filter((v, i) => i === 0 || v > sent.seen[i - 1]);
  expect(sent.seen.length >= 3 && rising.length === sent.seen.length, `the progress bar was not seen rising: ${sent.seen.map(Math.round).join(', ')}`);
  expect(sent.disabled === true, 'the buttons stayed enabled while the form was sent');
  // A file from the picker still needs its description: the draft's form asks for it.
  expect(/^\/submissions\/[^/]+(\/edit)?$/.test(here(sam.page)), `the upload ended on ${sam.page.url()}`);
  expect((await sam.page.locator('main').textContent()).includes('plant-survey-200mb.bin'), 'the submission does not list the 200 MB file');
  // The script asked for the redirect as data: the page was fetched once, and shows the save's one-time notice.
  expect(sent.fetches === 1, `the page the upload led to was fetched ${sent.fetches} times`);
  const notice = await sam.page.locator('.notice[role=status]').first().textContent({ timeout: 5000 }).catch(() => '');
  expect(/^Saved with 1 new file\./.test((notice || '').trim()), `the page the upload led to shows no "Saved" notice: "${notice}"`);
  record('progress: 200 MB with progress', `${sent.seen.length} values seen in ${sent.seconds.toFixed(1)} s`, []);
  fs.rmSync(big);

  // The third portal: sessions end after one idle minute.
  const ida = await newSubmitter(browser, { email: 'ida.idle@pipeline.example.com', name: 'Ida Idle', organisation: 'Pipeline Co' }, 'idle portal submitter', IDLE_BASE, IDLE_OUTBOX);
  const { page } = ida;

  // The warning, at once (less than two minutes are left), and "Stay signed in".
  const warning = page.locator('.session-warning');
  await warning.waitFor({ state: 'visible' });
  expect(/You will be signed out in/.test(await warning.textContent()), `the warning says "${await warning.textContent()}"`);
  await page.waitForTimeout(35000);
  const [keepalive] = await Promise.all([
    page.waitForResponse((r) => new URL(r.url()).pathname === '/session/keepalive'),
    page.locator('.session-warning button').click(),
  ]);
  expect(keepalive.status() === 200, `"Stay signed in" was answered ${keepalive.status()}`);
  expect((await keepalive.json()).idle_seconds_left > 0, 'the keepalive gave no time');
  await page.waitForTimeout(35000);
  // 70 s after the page was made, more than the idle minute: signed in only thanks to "Stay signed in".
  await go(page, 'idle warning: "Stay signed in" kept the session', '/account', { base: IDLE_BASE });
  expect(here(page) === '/account', `after "Stay signed in" the session was lost: ${page.url()}`);

  // An upload longer than the idle timeout ends on its page, not on "Please sign in".
  const slowFile = bigFile('slow-20mb.bin', 20 * 1024 * 1024);
  await go(page, 'long upload: new submission form', '/submissions/new', { base: IDLE_BASE });
  await fillDraft(page, { title: 'Long upload', narrative: 'Sent over a link slower than the idle minute.', file: slowFile });
  const crawl = await throttle(ida, 256 * 1024);
  const long = await sendWatched(ida, 'long upload: saved after more than the idle minute');
  await crawl.send('Network.emulateNetworkConditions', { offline: false, latency: 0, uploadThroughput: -1, downloadThroughput: -1 });
  expect(long.seconds > 70, `the throttled upload took only ${long.seconds.toFixed(1)} s: it did not outlive the idle minute`);
  expect(/^\/submissions\/[^/]+(\/edit)?$/.test(here(page)), `the long upload ended on ${page.url()}, not its submission`);
  record('long upload: outlived the idle timeout', `${long.seconds.toFixed(1)} s`, []);
  fs.rmSync(slowFile);

  // Meanwhile, in a browser of its own: a draft typed while the portal cannot be reached (every POST to it refused),
  // left to time out. Its save fails, so the page must not be left: the text stays in its fields.
  const offline = await person(browser, 'idle portal submitter (portal unreachable)');
  await signIn(offline, 'ida.idle@pipeline.example.com', 'unsaved draft', { base: IDLE_BASE });
  await go(offline.page, 'unsaved draft: new submission form', '/submissions/new', { base: IDLE_BASE });
  const kept = 'Typed while the portal could not be reached: this text must stay on the page.';
  await byId(offline.page, 'narrative').fill(kept);
  await offline.page.route((url) => url.pathname.startsWith('/submissions'),
    (route) => (route.request().method() === 'POST' ? route.abort('connectionrefused') : route.continue()));

  // A draft typed and left: saved before the session ends, and signing in again returns to it.
  await go(page, 'draft survives: new submission form', '/submissions/new', { base: IDLE_BASE });
  const typed = 'Typed, then left for lunch: this narrative must survive the end of the session.';
  await byId(page, 'title').fill('Left for lunch');
  await byId(page, 'narrative').fill(typed);
  await page.waitForURL((u) => u.pathname === '/login', { timeout: 150000 });
  const next = new URL(page.url()).searchParams.get('next') ?? '';
  expect(/^\/submissions\/[^/]+\/edit$/.test(next), `the sign-in page was not given the draft to return to: next=${next}`);
  await checkPage(page, 'draft survives: signed out, sign-in page with next', { status: 200, headers: await headersOf(ida) });
  await go(page, 'draft survives: signed in again → the draft', () => fillAndEnter(page, { email: 'ida.idle@pipeline.example.com', password: PASSWORD }), { base: IDLE_BASE });
  expect(here(page) === next, `signing in returned to ${page.url()}, not ${next}`);
  expect((await byId(page, 'narrative').inputValue()) === typed, 'the typed narrative is not in the draft');
  await ida.context.close();

  // The draft whose save was refused: its session ended (it started earlier), and the page stayed with its text.
  const unsavedBanner = offline.page.locator('.session-warning[role=alert]');
  await unsavedBanner.waitFor({ state: 'visible', timeout: 150000 });
  const problems = [];
  if (here(offline.page) !== '/submissions/new') problems.push(`the page was left for ${offline.page.url()}`);
  if ((await byId(offline.page, 'narrative').inputValue()) !== kept) problems.push('the typed text is gone from the page');
  const said = (await unsavedBanner.textContent()).replace(/\s+/g, ' ');
  if (!/could not be saved/.test(said)) problems.push(`the banner says "${said}"`);
  if ((await offline.page.getByRole('link', { name: 'Sign in again (opens a new tab)' }).count()) !== 1) problems.push('no link to sign in again');
  record('unsaved draft: the save failed → the page and its text stay, signed out', here(offline.page), problems);
  await offline.context.close();
}
