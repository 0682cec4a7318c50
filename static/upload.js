// Uploads that say what they are doing, for form[data-upload], without inline script.
//
// Before anything is sent, every chosen file (input[data-file-input]) is checked against the form's
// data-max-file-bytes, the files together against data-max-total-bytes and their number against data-max-files
// (each stored file ticked for removal adding its data-size and one file back):
// an offending file is named in an error summary at the top of the form, and nothing is sent. Otherwise the form
// (with the button that was clicked) is sent with XMLHttpRequest, with a progress bar per file and for all, the
// percentage and the time left; the buttons are disabled meanwhile and the session is kept alive. When the server
// answers, the browser goes to the page its redirect names (the receipt, the submission), or shows its error page.
// Without this script the form is posted as a plain form, and the server checks the same limits.
"use strict";

(() => {
  // The form's address. Not `form.action`: the form's buttons are named "action", and a control's name shadows the
  // form's property of the same name.
  function formAction(form) {
    return new URL(form.getAttribute("action") || location.href, location.href).href;
  }

  // Binary units, as the portal's pages and messages write sizes.
  const UNITS = ["B", "KiB", "MiB", "GiB", "TiB"];

  function size(n) {
    let v = n;
    let u = 0;
    while (v >= 1024 && u < UNITS.length - 1) {
      v /= 1024;
      u++;
    }
    return (u === 0 ? String(n) : v.toFixed(1).replace(/\.0$/, "")) + " " + UNITS[u];
  }

  function duration(secs) {
    if (!Number.isFinite(secs) || secs < 0) return "";
    const s = Math.ceil(secs);
    if (s < 60) return "about " + s + " s left";
    const m = Math.floor(s / 60);
    if (m < 60) return "about " + m + " min " + (s % 60) + " s left";
    return "about " + Math.floor(m / 60) + " h " + (m % 60) + " min left";
  }

  function quoted(name) {
    return "\u201c" + name + "\u201d";
  }

  function limit(form, name) {
    const v = Number(form.getAttribute(name));
    return Number.isFinite(v) && form.hasAttribute(name) ? v : Infinity;
  }

  // The chosen files in form order, each with its input.
  function chosen(form) {
    const files = [];
    for (const input of form.querySelectorAll("input[data-file-input]")) {
      for (const file of input.files || []) files.push({ input, file });
    }
    return files;
  }

  // The problems with the chosen files, each naming the file and the input it is in. A stored file ticked for
  // removal gives its size and its place back, as the server counts it.
  function problems(form, files) {
    let freedBytes = 0;
    let freedFiles = 0;
    for (const box of form.querySelectorAll('input[name="remove"][data-size]:checked')) {
      freedBytes += Number(box.getAttribute("data-size")) || 0;
      freedFiles += 1;
    }
    const maxFile = limit(form, "data-max-file-bytes");
    const maxTotal = limit(form, "data-max-total-bytes") + freedBytes;
    const maxFiles = limit(form, "data-max-files") + freedFiles;
    const found = [];
    let total = 0;
    files.forEach(({ input, file }, i) => {
      if (file.size > maxFile) {
        found.push({
          input,
          text: quoted(file.name) + " is " + size(file.size) + "; the limit per file is " + size(maxFile) + ".",
        });
        return;
      }
      total += file.size;
      if (total > maxTotal) {
        found.push({
          input,
          text:
            quoted(file.name) +
            " takes the files to " +
            size(total) +
            "; this submission can take " +
            size(maxTotal) +
            " more in all.",
        });
      }
      if (i + 1 > maxFiles) {
        found.push({
          input,
          text: quoted(file.name) + " is one file too many: this submission can take " + maxFiles + " more.",
        });
      }
    });
    return found;
  }

  function clearMessages(form) {
    form.querySelectorAll("[data-upload-message]").forEach((el) => el.remove());
    // Only what refuse() added: the page's own hint and any error the server gave stay referenced.
    form.querySelectorAll("input[data-file-input][data-upload-described]").forEach((input) => {
      const added = input.getAttribute("data-upload-described");
      const kept = (input.getAttribute("aria-describedby") || "").split(/\s+/).filter((id) => id && id !== added);
      if (kept.length) input.setAttribute("aria-describedby", kept.join(" "));
      else input.removeAttribute("aria-describedby");
      input.removeAttribute("data-upload-described");
    });
    form.querySelectorAll("input[data-file-input][data-upload-invalid]").forEach((input) => {
      input.removeAttribute("aria-invalid");
      input.removeAttribute("data-upload-invalid");
    });
  }

  function summary(form, heading, items) {
    const box = document.createElement("div");
    box.className = "error-summary";
    box.setAttribute("role", "alert");
    box.setAttribute("tabindex", "-1");
    box.setAttribute("data-upload-message", "");
    const h = document.createElement("h2");
    h.textContent = heading;
    box.append(h);
    if (items.length) {
      const list = document.createElement("ul");
      for (const item of items) {
        const li = document.createElement("li");
        if (item.input && item.input.id) {
          const a = document.createElement("a");
          a.href = "#" + item.input.id;
          a.textContent = item.text;
          li.append(a);
        } else {
          li.textContent = item.text;
        }
        list.append(li);
      }
      box.append(list);
    }
    form.prepend(box);
    box.focus();
    return box;
  }

  function refuse(form, found) {
    clearMessages(form);
    for (const { input, text } of found) {
      const p = document.createElement("p");
      p.className = "field-error";
      p.id = input.id + "-upload-error";
      p.setAttribute("data-upload-message", "");
      p.textContent = "Error: " + text;
      if (!document.getElementById(p.id)) input.before(p);
      if (input.getAttribute("aria-invalid") !== "true") {
        input.setAttribute("aria-invalid", "true");
        input.setAttribute("data-upload-invalid", "");
      }
      // Added to what the input already names (its hint), not in its place; clearMessages() takes only it away.
      const ids = (input.getAttribute("aria-describedby") || "").split(/\s+/).filter(Boolean);
      if (!ids.includes(p.id)) {
        ids.push(p.id);
        input.setAttribute("aria-describedby", ids.join(" "));
        input.setAttribute("data-upload-described", p.id);
      }
    }
    summary(form, "Nothing was sent: a file is over a limit", found);
  }

  function progressRow(label, max) {
    const row = document.createElement("div");
    row.className = "upload-row";
    const name = document.createElement("span");
    name.className = "upload-name";
    name.textContent = label;
    const bar = document.createElement("progress");
    // Its name, for a screen reader that reaches the bar itself.
    bar.setAttribute("aria-label", label);
    bar.max = Math.max(1, max);
    bar.value = 0;
    const text = document.createElement("span");
    text.className = "upload-text";
    // Shown as it changes; said in steps by the region's spoken line.
    text.setAttribute("aria-hidden", "true");
    row.append(name, bar, text);
    return { row, bar, text, max };
  }

  // The same-origin address in a redirect answered as data, or null.
  function destination(text) {
    try {
      const to = new URL(JSON.parse(text).location, location.href);
      return to.origin === location.origin ? to.href : null;
    } catch (_) {
      return null;
    }
  }

  function buttons(form) {
    return form.querySelectorAll("button, input[type=submit]");
  }

  function keepAlive() {
    if (window.pciiSession && typeof window.pciiSession.keepAlive === "function") {
      window.pciiSession.keepAlive();
    }
  }

  function send(form, submitter, files) {
    const data = new FormData(form);
    if (submitter && submitter.name) data.append(submitter.name, submitter.value);

    clearMessages(form);
    const region = document.createElement("div");
    region.className = "upload-progress";
    region.setAttribute("data-upload-message", "");
    region.setAttribute("aria-live", "polite");
    const heading = document.createElement("h2");
    heading.textContent = "Sending your form";
    // Focused once shown: the clicked button is disabled below, which would leave the focus nowhere.
    heading.setAttribute("tabindex", "-1");
    region.append(heading);
    const rows = files.map(({ file }) => progressRow(quoted(file.name) + " (" + size(file.size) + ")", file.size));
    const fileBytes = files.reduce((n, { file }) => n + file.size, 0);
    const all = progressRow("All files", fileBytes);
    all.row.classList.add("upload-total");
    rows.forEach((r) => region.append(r.row));
    region.append(all.row);
    const spoken = document.createElement("p");
    spoken.className = "visually-hidden";
    region.append(spoken);
    const actions = form.querySelector(".actions") || form.lastElementChild;
    actions.before(region);
    heading.focus();

    buttons(form).forEach((b) => (b.disabled = true));
    document.body.setAttribute("data-uploading", "");
    keepAlive();
    // Often enough for the shortest idle timeout (one minute).
    const idle = Number(document.body.dataset.idleSeconds) || 60;
    const keeper = setInterval(keepAlive, Math.max(15, Math.min(60, idle / 2)) * 1000);

    const started = Date.now();
    let lastSpoken = -1;
    const xhr = new XMLHttpRequest();
    xhr.upload.addEventListener("progress", (e) => {
      if (!e.lengthComputable || e.total === 0) return;
      const ratio = e.loaded / e.total;
      // The body is the files and some text: share what was sent among the files in order.
      let sent = ratio * fileBytes;
      rows.forEach((r) => {
        const mine = Math.min(r.max, Math.max(0, sent));
        sent -= r.max;
        r.bar.value = mine;
        r.text.textContent = Math.floor((100 * mine) / Math.max(1, r.max)) + " %";
      });
      const secs = (Date.now() - started) / 1000;
      const left = ratio > 0 ? (secs / ratio) * (1 - ratio) : NaN;
      const percent = Math.floor(100 * ratio);
      all.bar.value = ratio * all.max;
      all.text.textContent = percent + " % sent, " + duration(left);
      // Said (the region is live) in steps of ten, not at every event.
      if (percent >= lastSpoken + 10) {
        lastSpoken = percent - (percent % 10);
        spoken.textContent = percent + " percent sent, " + duration(left);
      }
    });
    xhr.upload.addEventListener("load", () => {
      all.text.textContent = "100 % sent. Waiting for the portal to confirm\u2026";
      spoken.textContent = "All sent. Waiting for the portal to confirm.";
    });

    function done() {
      clearInterval(keeper);
      document.body.removeAttribute("data-uploading");
    }

    xhr.addEventListener("load", () => {
      done();
      const type = xhr.getResponseHeader("Content-Type") || "";
      const next = xhr.status === 200 && type.startsWith("application/json") ? destination(xhr.responseText) : null;
      if (next) {
        // Where the portal's redirect leads (the receipt, the check page, the draft listing what is missing): the
        // browser fetches it once, with the notice the redirect left, and the address bar shows it.
        location.assign(next);
        return;
      }
      if (type.startsWith("text/html")) {
        // An error page, or the form again with its errors: show what the server answered.
        document.open();
        document.write(xhr.responseText);
        document.close();
        return;
      }
      buttons(form).forEach((b) => (b.disabled = false));
      region.remove();
      summary(form, "The portal did not accept the form (" + xhr.status + "). Nothing was saved; try again.", []);
    });
    const failed = () => {
      done();
      buttons(form).forEach((b) => (b.disabled = false));
      region.remove();
      summary(form, "The upload was interrupted. Nothing was saved; check your connection and send the form again.", []);
    };
    xhr.addEventListener("error", failed);
    xhr.addEventListener("abort", failed);
    xhr.open("POST", formAction(form));
    xhr.setRequestHeader("Accept", "text/html");
    // A redirect comes back as {"location": …} instead of being followed by the request itself.
    xhr.setRequestHeader("Pcii-Redirect", "json");
    xhr.send(data);
  }

  for (const form of document.querySelectorAll("form[data-upload]")) {
    if (typeof XMLHttpRequest === "undefined" || typeof FormData === "undefined") continue;
    form.addEventListener("submit", (e) => {
      if (document.body.hasAttribute("data-uploading")) {
        e.preventDefault();
        return;
      }
      const files = chosen(form);
      const found = problems(form, files);
      if (found.length) {
        e.preventDefault();
        refuse(form, found);
        return;
      }
      // A form without files goes as a plain form: there is no progress to show.
      if (!files.length) return;
      e.preventDefault();
      send(form, e.submitter, files);
    });
  }
})();
