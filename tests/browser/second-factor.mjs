// Second factors as the suite's people hold them: the authenticator app each staff member set up (its seed, read
// from the secret the portal showed as text), the recovery codes it was shown, and the last time step it used.
//
// TOTP as RFC 6238 and the portal have it: HMAC-SHA-1 over the 8-byte big-endian count of 30-second steps,
// dynamic truncation, six digits. The portal accepts one step of skew either way and a code only once: a step
// already used (or an earlier one) is refused. So two answers of one account within one step need the second to
// be the next step's code; one step ahead is the most the skew allows, beyond that we wait for the next step.

import crypto from 'node:crypto';

export const STEP_SECONDS = 30;
const BASE32 = 'ABCDEFGHIJKLMNOPQRSTUVWXYZ234567';

/** The bytes of a base32 secret as an authenticator app reads it (spaces, padding and case ignored). */
export function base32Decode(text) {
  const clean = text.replace(/[\s=]/g, '').toUpperCase();
  let bits = 0;
  let value = 0;
  const out = [];
  for (const ch of clean) {
    const i = BASE32.indexOf(ch);
    if (i < 0) throw new Error(`not base32: ${JSON.stringify(ch)}`);
    value = ((value << 5) | i) & 0xfff;
    bits += 5;
    if (bits >= 8) {
      bits -= 8;
      out.push((value >>> bits) & 0xff);
    }
  }
  return Buffer.from(out);
}

/** The six-digit code of `seed` for time step `step`. */
export function totp(seed, step) {
  const counter = Buffer.alloc(8);
  counter.writeBigUInt64BE(BigInt(step));
  const h = crypto.createHmac('sha1', seed).update(counter).digest();
  const offset = h[h.length - 1] & 0x0f;
  const binary = ((h[offset] & 0x7f) << 24) | (h[offset + 1] << 16) | (h[offset + 2] << 8) | h[offset + 3];
  return String(binary % 1_000_000).padStart(6, '0');
}

export const stepNow = () => Math.floor(Date.now() / 1000 / STEP_SECONDS);

/** RFC 6238's SHA-1 test vectors, cut to six digits: a wrong implementation here would fail every sign-in. */
export function totpSelfTest() {
  const seed = Buffer.from('12345678901234567890');
  const problems = [];
  if (!base32Decode('GEZD GNBV GY3T QOJQ GEZD GNBV GY3T QOJQ').equals(seed)) problems.push('base32 decoding is wrong');
  for (const [time, code] of [[59, '287082'], [1111111109, '081804'], [1234567890, '005924'], [2000000000, '279037']]) {
    const got = totp(seed, Math.floor(time / STEP_SECONDS));
    if (got !== code) problems.push(`TOTP at ${time}: ${got}, expected ${code}`);
  }
  return problems;
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/** Each person's factors, kept in the suite's memory only (as a person keeps them in their app). */
export class Factors {
  #byEmail = new Map();

  has(email) {
    return this.#byEmail.has(email.toLowerCase());
  }

  get(email) {
    const f = this.#byEmail.get(email.toLowerCase());
    if (!f) throw new Error(`${email} has no authenticator app in the suite's memory`);
    return f;
  }

  /** An app set up from the secret shown as text; nothing used yet. */
  enrol(email, secretText) {
    const f = { seed: base32Decode(secretText), lastStep: -Infinity, lastCode: null, recoveryCodes: [] };
    this.#byEmail.set(email.toLowerCase(), f);
    return f;
  }

  /** The factors are gone (an administrator reset them). */
  forget(email) {
    this.#byEmail.delete(email.toLowerCase());
  }

  /**
   * The code to type now: the current step's, or the next one's when the current step is used already (the
   * portal's skew accepts it); waits for the next step when even that one is used. `waited` tells how long.
   */
  async code(email) {
    const f = this.get(email);
    let waited = 0;
    for (;;) {
      const now = stepNow();
      const step = Math.max(now, f.lastStep + 1);
      if (step <= now + 1) {
        f.lastStep = step;
        f.lastCode = totp(f.seed, step);
        return { code: f.lastCode, step, waited };
      }
      const ms = (now + 1) * STEP_SECONDS * 1000 - Date.now() + 100;
      waited += ms;
      await sleep(ms);
    }
  }

  /** An unused recovery code, taken off the list (it works once). */
  takeRecoveryCode(email) {
    const f = this.get(email);
    const code = f.recoveryCodes.shift();
    if (!code) throw new Error(`${email} has no unused recovery code left in the suite's memory`);
    return code;
  }
}
