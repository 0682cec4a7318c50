// The idle warning of a signed-in page, without inline script.
//
// The body's data-idle-seconds is what the server gives this session from the moment the page was made. Two
// minutes before it runs out (at once if less is left) a banner says so, with "Stay signed in", which posts to
// /session/keepalive and starts the count again from the server's answer. Typing or clicking keeps the session
// only when it reaches the server too (a keepalive at most once a minute), so this count never promises more
// time than the server gives. If nobody answers and the page has form[data-draft] with typed changes, its text
// (no files) is saved as a draft 30 seconds before the end; at the end the session is signed out and the browser
// goes to the sign-in page with next= the draft's edit page (or this page), so that signing in again returns there.
// If that save failed (the portal did not answer, or the draft was saved elsewhere since the page was made), the page
// is not left: its text stays, with a banner saying so.
//
// While static/upload.js sends a form (body[data-uploading]) the count is kept alive instead of warning.
// Tabs share the newest end the server gave (localStorage, a time only): a tab whose count runs out while another
// kept the session counts again instead of warning, saving its older text or signing the other tab out.
"use strict";

(() => {
  // The form's address. Not `form.action`: the form's buttons are named "action", and a control's name shadows the
  // form's property of the same name.
  function formAction(form) {
    return new URL(form.getAttribute("action") || location.href, location.href).href;
  }

  const body = document.body;
  const initial = Number(body.dataset.idleSeconds);
  if (!body.hasAttribute("data-idle-seconds") || !Number.isFinite(initial)) return;

  const WARN_BEFORE_MS = 120 * 1000;
  const SAVE_BEFORE_MS = 30 * 1000;
  const ACTIVITY_EVERY_MS = 60 * 1000;
  // The server ends a session a second after its last allowed one; the sign-in page is asked for after that.
  const END_MARGIN_MS = 3000;

  // Counted from when the page was asked for (earlier than the server's clock read it): never later than the
  // server's end.
  const start = typeof performance !== "undefined" && performance.timeOrigin ? performance.timeOrigin : Date.now();
  let deadline = start + initial * 1000;
  let lastKeepalive = Date.now();
  let timers = [];
  let banner = null;
  let focusBefore = null; // what had the focus when the idle warning took it
  let draftSaved = null;
  // The save was refused because the submission changed after this page was made (409: saved elsewhere, or sent).
  let savedElsewhere = false;
  let dirty = false;

  const draftForm = document.querySelector("form[data-draft]");
  if (draftForm) {
    draftForm.addEventListener("input", () => {
      dirty = true;
    });
    draftForm.addEventListener("change", () => {
      dirty = true;
    });
  }

  function csrf() {
    const field = document.querySelector('input[name="csrf"]');
    return field ? field.value : "";
  }

  // While a form is being sent, static/upload.js keeps the session alive: look again a little later.
  function waitForUpload(f) {
    if (!body.hasAttribute("data-uploading")) return false;
    timers.push(setTimeout(f, 5000));
    return true;
  }

  // Posts a keepalive; on success starts the count again from the server's answer. Resolves to the seconds left,
  // or null when the server did not keep the session.
  async function keepAlive() {
    const sent = Date.now();
    try {
      const res = await fetch("/session/keepalive", {
        method: "POST",
        credentials: "same-origin",
        headers: { "Content-Type": "application/x-www-form-urlencoded", Accept: "application/json" },
        body: "csrf=" + encodeURIComponent(csrf()),
      });
      if (!res.ok) return null;
      const answer = await res.json();
      const left = Number(answer.idle_seconds_left);
      if (!Number.isFinite(left)) return null;
      lastKeepalive = sent;
      schedule(sent + left * 1000);
      return left;
    } catch (_) {
      return null;
    }
  }

  function clearTimers() {
    timers.forEach((t) => clearTimeout(t));
    timers = [];
  }

  function at(when, f) {
    timers.push(setTimeout(f, Math.max(0, when - Date.now())));
  }

  // The session is shared by every tab of this browser: each tab's newest word from the server on when it ends is
  // kept here (a time, nothing else), so that a tab left open does not save its older text over what another tab
  // saved since, nor sign out a session another tab is using. The newest answer wins, later or not.
  const SHARED_DEADLINE = "pcii-session-deadline";

  function share(when) {
    try {
      localStorage.setItem(SHARED_DEADLINE, String(when));
    } catch (_) {
      // Storage refused (a private window's quota): each tab counts alone, as before.
    }
  }

  // A later end another tab heard of since this tab's count was set, or null.
  function laterElsewhere() {
    try {
      const when = Number(localStorage.getItem(SHARED_DEADLINE));
      return Number.isFinite(when) && when > deadline + 1000 ? when : null;
    } catch (_) {
      return null;
    }
  }

  // Before warning, saving or signing out: when another tab kept the session, count again from its end instead.
  function keptElsewhere() {
    const when = laterElsewhere();
    if (when === null) return false;
    schedule(when, false);
    return true;
  }

  function schedule(newDeadline, fromServer = true) {
    deadline = newDeadline;
    if (fromServer) share(deadline);
    clearTimers();
    hideBanner();
    at(deadline - WARN_BEFORE_MS, warn);
    if (draftForm) at(deadline - SAVE_BEFORE_MS, saveDraft);
    at(deadline + END_MARGIN_MS, expire);
  }

  function leftText() {
    const secs = Math.max(0, Math.round((deadline - Date.now()) / 1000));
    if (secs >= 90) return Math.round(secs / 60) + " minutes";
    return secs + " seconds";
  }

  function warn() {
    if (waitForUpload(warn)) return;
    if (keptElsewhere()) return;
    if (banner) return;
    banner = document.createElement("div");
    banner.className = "session-warning";
    banner.setAttribute("role", "alertdialog");
    banner.setAttribute("aria-labelledby", "session-warning-text");
    banner.setAttribute("aria-live", "assertive");
    const text = document.createElement("p");
    text.id = "session-warning-text";
    text.textContent =
      "You will be signed out in " +
      leftText() +
      " because nothing has reached the portal for a while." +
      (draftForm ? " What you typed will be saved as a draft first." : "");
    const button = document.createElement("button");
    button.type = "button";
    button.textContent = "Stay signed in";
    button.addEventListener("click", async () => {
      button.disabled = true;
      const left = await keepAlive();
      if (left === null) {
        button.disabled = false;
        text.textContent = "The portal could not be reached. Save your work, then try again.";
      }
    });
    banner.append(text, button);
    // Focus goes into the warning, so that a screen reader speaks it (a live region inserted with its text often is
    // not); where it was is given back when the warning goes.
    focusBefore = document.activeElement;
    body.prepend(banner);
    button.focus();
  }

  function hideBanner() {
    if (banner) {
      // Given back only when the focus is still in the warning, or was lost with it (its button disabled).
      const active = document.activeElement;
      const hadFocus = !active || active === body || banner.contains(active);
      banner.remove();
      banner = null;
      const back = focusBefore;
      focusBefore = null;
      if (hadFocus && back && back !== body && document.contains(back) && typeof back.focus === "function") {
        back.focus();
      }
    }
  }

  // The form's text fields (no files), saved with action=draft to the form's own address.
  async function saveDraft() {
    if (waitForUpload(saveDraft)) return;
    if (keptElsewhere()) return;
    if (!draftForm || !dirty || draftSaved) return;
    const data = new FormData();
    for (const el of draftForm.elements) {
      if (!el.name || el.disabled) continue;
      if (el.type === "file" || el.type === "submit" || el.type === "button" || el.type === "reset") continue;
      if ((el.type === "checkbox" || el.type === "radio") && !el.checked) continue;
      if (el.tagName === "SELECT" && el.multiple) {
        for (const o of el.selectedOptions) data.append(el.name, o.value);
        continue;
      }
      data.append(el.name, el.value);
    }
    data.append("action", "draft");
    try {
      const res = await fetch(formAction(draftForm), { method: "POST", credentials: "same-origin", body: data });
      if (!res.ok) {
        savedElsewhere = res.status === 409;
        return;
      }
      // After the 303 the answer is the submission's page: its edit page is where to come back to.
      const url = new URL(res.url);
      const match = url.pathname.match(/^\/submissions\/([^/]+)$/);
      draftSaved = match ? "/submissions/" + match[1] + "/edit" : null;
      dirty = false;
    } catch (_) {
      // Nothing more can be done without the server; the end of the session follows.
    }
  }

  function expire() {
    if (waitForUpload(expire)) return;
    if (keptElsewhere()) return;
    // Typed text the draft save could not keep (the portal did not answer): leaving would lose it, so stay.
    const unsaved = Boolean(draftForm && dirty && !draftSaved);
    const here = location.pathname + location.search;
    let next = draftSaved || here;
    // A new form saved as a draft comes back to the draft, not to an empty new form.
    if (!draftSaved && draftForm && /^\/submissions\/[^/]+$/.test(new URL(formAction(draftForm)).pathname)) {
      next = new URL(formAction(draftForm)).pathname + "/edit";
    }
    const signIn = "/login?next=" + encodeURIComponent(next);
    // Signed out now, as the warning said: a draft saved just before counted as a use on the server, which would
    // otherwise keep the session a little longer than this page promised.
    fetch("/logout", {
      method: "POST",
      credentials: "same-origin",
      headers: { "Content-Type": "application/x-www-form-urlencoded" },
      body: "csrf=" + encodeURIComponent(csrf()) + "&reason=idle",
    })
      .catch(() => null)
      .finally(() => (unsaved ? keepText(signIn) : location.assign(signIn)));
  }

  // Signed out with text that could not be saved: the page stays, with the text in its fields, and says so.
  function keepText(signIn) {
    hideBanner();
    banner = document.createElement("div");
    banner.className = "session-warning";
    banner.setAttribute("role", "alert");
    const text = document.createElement("p");
    text.id = "session-warning-text";
    text.textContent =
      "You have been signed out, and what you typed could not be saved: " +
      (savedElsewhere
        ? "the submission changed after this page was opened (saved in another window or by someone else, or " +
          "sent), and was not replaced. "
        : "the portal did not answer. ") +
      "It is still on this page. Keep the page open, sign in again in a new tab, and copy your text across.";
    const link = document.createElement("a");
    link.href = signIn;
    link.target = "_blank";
    link.rel = "noopener";
    link.textContent = "Sign in again (opens a new tab)";
    banner.append(text, link);
    body.prepend(banner);
  }

  function activity() {
    if (Date.now() - lastKeepalive >= ACTIVITY_EVERY_MS) {
      lastKeepalive = Date.now();
      keepAlive();
    }
  }
  document.addEventListener("keydown", activity, { passive: true });
  document.addEventListener("click", activity, { passive: true });

  // For static/upload.js: keep the session while a form is sent.
  window.pciiSession = { keepAlive };

  schedule(deadline);
})();
