// Passkeys and security keys (WebAuthn) for the portal's forms, without inline script or third-party code.
//
// A form marked data-webauthn="register" or data-webauthn="authenticate" carries the server's options in
// data-webauthn-options (JSON from webauthn-rs: {"publicKey": {...}} with binary fields in base64url). On submit
// the browser is asked for a credential; its answer, as the JSON webauthn-rs reads, goes into the form's hidden
// "webauthn_response" field (a registration's into "webauthn_registration") and the form is posted. If WebAuthn is unavailable or the person cancels, a short
// message goes into the form's [data-webauthn-message] element and nothing is posted.
//
// Where the browser can use passkeys, elements marked data-webauthn-show-if-supported are shown and those marked
// data-webauthn-hide-if-supported hidden; where it cannot, data-webauthn-hide-if-unsupported ones are hidden.
"use strict";

(() => {
  const MESSAGES = {
    unsupported:
      "This browser cannot use passkeys or security keys here. Use another browser or another way to sign in.",
    cancelled: "No passkey was used: it was cancelled or took too long. Try again when you are ready.",
    registered: "This passkey or security key is already registered to your account.",
    address: "Passkeys cannot be used at this address. Open the portal at its usual address and try again.",
    name: "Name the passkey first.",
    failed: "The passkey could not be used. Reload the page and try again.",
  };

  function supported() {
    return (
      window.isSecureContext === true &&
      typeof window.PublicKeyCredential === "function" &&
      typeof navigator.credentials?.create === "function" &&
      typeof navigator.credentials?.get === "function"
    );
  }

  // Base64url (with or without padding; standard base64 too) to bytes.
  function toBuffer(text) {
    const base64 = text.replace(/-/g, "+").replace(/_/g, "/").replace(/=+$/, "");
    const binary = atob(base64 + "=".repeat((4 - (base64.length % 4)) % 4));
    const bytes = new Uint8Array(binary.length);
    for (let i = 0; i < binary.length; i++) bytes[i] = binary.charCodeAt(i);
    return bytes.buffer;
  }

  // Bytes to base64url without padding: the form webauthn-rs writes.
  function toBase64url(buffer) {
    const bytes = new Uint8Array(buffer);
    let binary = "";
    for (let i = 0; i < bytes.length; i++) binary += String.fromCharCode(bytes[i]);
    return btoa(binary).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
  }

  function withBinaryIds(descriptors) {
    return descriptors ? descriptors.map((d) => ({ ...d, id: toBuffer(d.id) })) : descriptors;
  }

  // CreationChallengeResponse -> CredentialCreationOptions.
  function creationOptions(json) {
    const publicKey = JSON.parse(json).publicKey;
    publicKey.challenge = toBuffer(publicKey.challenge);
    publicKey.user = { ...publicKey.user, id: toBuffer(publicKey.user.id) };
    publicKey.excludeCredentials = withBinaryIds(publicKey.excludeCredentials);
    return { publicKey };
  }

  // RequestChallengeResponse -> CredentialRequestOptions. Its "mediation" (conditional UI) is not used here.
  function requestOptions(json) {
    const publicKey = JSON.parse(json).publicKey;
    publicKey.challenge = toBuffer(publicKey.challenge);
    publicKey.allowCredentials = withBinaryIds(publicKey.allowCredentials);
    return { publicKey };
  }

  // Only the extension results webauthn-rs reads, in the types it expects: anything else a browser adds would
  // make the whole answer unreadable to the server.
  function registrationExtensions(results) {
    const out = {};
    if (typeof results?.credProps?.rk === "boolean") out.credProps = { rk: results.credProps.rk };
    return out;
  }

  function authenticationExtensions(results) {
    const out = {};
    if (typeof results?.appid === "boolean") out.appid = results.appid;
    return out;
  }

  // PublicKeyCredential (attestation) -> webauthn-rs RegisterPublicKeyCredential.
  function registrationAnswer(credential) {
    const response = credential.response;
    const answer = {
      id: credential.id,
      rawId: toBase64url(credential.rawId),
      type: credential.type,
      response: {
        clientDataJSON: toBase64url(response.clientDataJSON),
        attestationObject: toBase64url(response.attestationObject),
      },
      clientExtensionResults: registrationExtensions(credential.getClientExtensionResults()),
    };
    if (typeof response.getTransports === "function") {
      answer.response.transports = response.getTransports();
    }
    return answer;
  }

  // PublicKeyCredential (assertion) -> webauthn-rs PublicKeyCredential.
  function authenticationAnswer(credential) {
    const response = credential.response;
    return {
      id: credential.id,
      rawId: toBase64url(credential.rawId),
      type: credential.type,
      response: {
        clientDataJSON: toBase64url(response.clientDataJSON),
        authenticatorData: toBase64url(response.authenticatorData),
        signature: toBase64url(response.signature),
        userHandle: response.userHandle ? toBase64url(response.userHandle) : null,
      },
      clientExtensionResults: authenticationExtensions(credential.getClientExtensionResults()),
    };
  }

  // Also through the style: a stylesheet's display rule (buttons have one) overrides the hidden attribute.
  function show(element, visible) {
    element.hidden = !visible;
    element.style.display = visible ? "" : "none";
  }

  function say(form, text) {
    const box = form.querySelector("[data-webauthn-message]");
    if (!box) return;
    box.textContent = text;
    show(box, Boolean(text));
  }

  function messageFor(error, mode) {
    switch (error?.name) {
      case "NotAllowedError":
      case "AbortError":
        return MESSAGES.cancelled;
      case "InvalidStateError":
        return mode === "register" ? MESSAGES.registered : MESSAGES.failed;
      case "SecurityError":
        return MESSAGES.address;
      case "NotSupportedError":
        return MESSAGES.unsupported;
      default:
        return MESSAGES.failed;
    }
  }

  // Posts the form without firing "submit" again, keeping the clicked button's name and value.
  function post(form, submitter) {
    if (submitter?.name) {
      const carried = document.createElement("input");
      carried.type = "hidden";
      carried.name = submitter.name;
      carried.value = submitter.value;
      form.appendChild(carried);
    }
    // Through the prototype: a control named "submit" would shadow form.submit.
    HTMLFormElement.prototype.submit.call(form);
  }

  function setBusy(form, busy) {
    form.toggleAttribute("data-webauthn-busy", busy);
    for (const button of form.querySelectorAll("button, input[type=submit]")) button.disabled = busy;
  }

  async function ceremony(form, mode) {
    const json = form.dataset.webauthnOptions;
    if (mode === "register") {
      const credential = await navigator.credentials.create(creationOptions(json));
      return registrationAnswer(credential);
    }
    const credential = await navigator.credentials.get(requestOptions(json));
    return authenticationAnswer(credential);
  }

  async function onSubmit(event) {
    const form = event.target;
    if (!(form instanceof HTMLFormElement) || !form.matches("form[data-webauthn]")) return;
    event.preventDefault();
    if (form.hasAttribute("data-webauthn-busy")) return;
    const mode = form.dataset.webauthn;
    if (!supported()) return say(form, MESSAGES.unsupported);
    // A registration's answer has a field of its own: a form that needs a fresh factor first must not take it
    // for the factor's answer.
    const field = form.querySelector(mode === "register" ? 'input[name="webauthn_registration"]' : 'input[name="webauthn_response"]');
    if (!field || !form.dataset.webauthnOptions || (mode !== "register" && mode !== "authenticate")) {
      return say(form, MESSAGES.failed);
    }
    const name = mode === "register" ? form.elements.namedItem("name") : null;
    if (name && "value" in name && !name.value.trim()) {
      name.focus();
      return say(form, MESSAGES.name);
    }
    say(form, "");
    setBusy(form, true);
    let answer;
    try {
      answer = await ceremony(form, mode);
    } catch (error) {
      setBusy(form, false);
      return say(form, error instanceof SyntaxError ? MESSAGES.failed : messageFor(error, mode));
    }
    field.value = JSON.stringify(answer);
    post(form, event.submitter);
  }

  document.addEventListener("submit", onSubmit);

  // Back from the history cache, a form must not stay disabled.
  window.addEventListener("pageshow", () => {
    for (const form of document.querySelectorAll("form[data-webauthn-busy]")) setBusy(form, false);
  });

  const each = (selector, action) => document.querySelectorAll(selector).forEach(action);
  if (supported()) {
    each("[data-webauthn-show-if-supported]", (element) => show(element, true));
    each("[data-webauthn-hide-if-supported]", (element) => show(element, false));
  } else {
    each("[data-webauthn-hide-if-unsupported]", (element) => show(element, false));
  }
})();
