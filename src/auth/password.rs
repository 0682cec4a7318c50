//! argon2id password hashing with the parameters from config, the password policy, and a dummy hash for
//! unknown accounts so that timing does not reveal which emails exist.

use argon2::password_hash::{
    rand_core::OsRng, Output, ParamsString, PasswordHash, Salt, SaltString,
};
use argon2::{Algorithm, Argon2, Block, Params, Version};

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{mpsc, Arc, Mutex};

use zeroize::Zeroizing;

use crate::config::Settings;
use crate::error::{AppError, AppResult};

pub const MIN_CHARS: usize = 12;
/// Input is capped before hashing so a huge password cannot burn CPU.
pub const MAX_BYTES: usize = 256;

static COMMON: &str = include_str!("common-passwords.txt");

/// How many hashes may wait for a worker before the next is refused as busy (per worker).
const QUEUE_PER_WORKER: usize = 32;

/// The password workers' nice value (0 is the default, 19 the lowest priority).
const WORKER_NICE: i32 = 10;

/// What a person is told when every password worker is busy and the queue is full (a 503 with Retry-After).
pub const BUSY: &str = "The portal is busy checking passwords. Try again in a few seconds.";

/// Hashes and checks passwords on a few worker threads of its own, fed by a bounded queue.
///
/// argon2 takes 19 MiB and tens of milliseconds per run: run on the request's thread, a storm of sign-ins would
/// take as many threads and as much memory as it has requests, while holding their database connections. Here at
/// most `workers` runs happen at once (a core each), a full queue is refused at once as busy (503, never a wait
/// without end), and the callers hold no database connection while they wait (see `auth::login`). Each worker
/// allocates on its own thread, so the memory freed after a run is reused by the next, not kept per request thread.
#[derive(Clone)]
pub struct Hasher {
    inner: Arc<Inner>,
}

/// What an account's stored password is set to when it must be chosen again through a mailed reset link (its
/// second factors were reset): no password matches it.
pub const VOIDED: &str = "!voided";

struct Inner {
    params: Params,
    /// A hash of a random password, verified against when the account does not exist.
    dummy: String,
    jobs: mpsc::SyncSender<Job>,
    /// Jobs handed to the workers since start.
    runs: AtomicU64,
}

/// A job for a worker, given the worker's own argon2 memory.
type Job = Box<dyn FnOnce(&mut Memory) + Send>;

/// A worker's argon2 memory (19 MiB at the default cost), allocated once and reused by every run: a run that
/// allocated and freed its own would leave the freed megabytes with the allocator, run after run.
type Memory = Vec<Block>;

impl std::fmt::Debug for Hasher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Hasher")
            .field("params", &self.inner.params)
            .finish_non_exhaustive()
    }
}

/// argon2 of `password` as `PasswordHasher::hash_password_customized` computes it, in `memory`.
fn argon2_with_memory<'a>(
    algorithm: Algorithm,
    version: Version,
    params: Params,
    salt: Salt<'a>,
    password: &[u8],
    memory: &mut Memory,
) -> Result<PasswordHash<'a>, argon2::password_hash::Error> {
    let blocks = params.block_count();
    if memory.len() < blocks {
        memory.resize(blocks, Block::default());
    }
    let mut salt_buf = [0u8; 64];
    let salt_bytes = salt.decode_b64(&mut salt_buf)?;
    let output_len = params.output_len().unwrap_or(Params::DEFAULT_OUTPUT_LEN);
    let argon2 = Argon2::new(algorithm, version, params.clone());
    let output = Output::init_with(output_len, |out| {
        Ok(argon2.hash_password_into_with_memory(
            password,
            salt_bytes,
            out,
            &mut memory[..blocks],
        )?)
    })?;
    Ok(PasswordHash {
        algorithm: algorithm.ident(),
        version: Some(version.into()),
        params: ParamsString::try_from(&params)?,
        salt: Some(salt),
        hash: Some(output),
    })
}

impl Inner {
    fn hash(
        &self,
        password: &str,
        memory: &mut Memory,
    ) -> Result<String, argon2::password_hash::Error> {
        if password.len() > MAX_BYTES {
            return Err(argon2::password_hash::Error::Password);
        }
        let salt = SaltString::generate(&mut OsRng);
        Ok(argon2_with_memory(
            Algorithm::Argon2id,
            Version::V0x13,
            self.params.clone(),
            salt.as_salt(),
            password.as_bytes(),
            memory,
        )?
        .to_string())
    }

    /// A password over the cap, or an account whose password was voided ([`VOIDED`]), is still run against the
    /// dummy hash so the refusal takes the same time.
    fn verify(&self, password: &str, stored: Option<&str>, memory: &mut Memory) -> bool {
        let over_cap = password.len() > MAX_BYTES;
        let stored = stored.filter(|s| *s != VOIDED);
        let candidate = if over_cap { "" } else { password };
        let target = if over_cap {
            &self.dummy
        } else {
            stored.unwrap_or(&self.dummy)
        };
        // As `PasswordVerifier::verify_password`: the stored hash's own algorithm, version, cost and salt; the outputs
        // compared in constant time (`Output`'s equality).
        let mut check = || -> Result<bool, argon2::password_hash::Error> {
            let parsed = PasswordHash::new(target)?;
            let (Some(salt), Some(expected)) = (parsed.salt, parsed.hash) else {
                return Ok(false);
            };
            let algorithm = Algorithm::try_from(parsed.algorithm)?;
            let version = parsed
                .version
                .map(Version::try_from)
                .transpose()?
                .unwrap_or_default();
            let params = Params::try_from(&parsed)?;
            let computed = argon2_with_memory(
                algorithm,
                version,
                params,
                salt,
                candidate.as_bytes(),
                memory,
            )?;
            Ok(computed.hash == Some(expected))
        };
        check().unwrap_or(false) && stored.is_some() && !over_cap
    }
}

impl Hasher {
    /// Starts `settings.password_hash_workers` workers (0: one per core).
    pub fn new(settings: &Settings) -> Result<Hasher, String> {
        let params = Params::new(
            settings.argon2_memory_kib,
            settings.argon2_iterations,
            settings.argon2_parallelism,
            None,
        )
        .map_err(|e| format!("argon2 parameters: {e}"))?;
        let workers = match settings.password_hash_workers {
            0 => std::thread::available_parallelism().map_or(1, |n| n.get()),
            n => n as usize,
        };
        let (tx, rx) = mpsc::sync_channel::<Job>(workers * QUEUE_PER_WORKER);
        let mut inner = Inner {
            params,
            dummy: String::new(),
            jobs: tx,
            runs: AtomicU64::new(0),
        };
        inner.dummy = inner
            .hash(&crate::db::new_id(), &mut Memory::new())
            .map_err(|e| format!("argon2: {e}"))?;
        let rx = Arc::new(Mutex::new(rx));
        for i in 0..workers {
            let rx = rx.clone();
            std::thread::Builder::new()
                .name(format!("argon2-{i}"))
                .spawn(move || {
                    // Below the threads that serve pages: a storm of sign-ins waits a little longer, pages do not.
                    // Linux gives each thread its own nice value; where that fails the worker just runs as others.
                    let _ = rustix::process::setpriority_process(
                        Some(rustix::thread::gettid()),
                        WORKER_NICE,
                    );
                    let mut memory = Memory::new();
                    loop {
                        // The lock is held only to take the next job; a closed channel (every Hasher dropped) ends
                        // the worker.
                        let job = match rx.lock() {
                            Ok(rx) => rx.recv(),
                            Err(_) => return,
                        };
                        let Ok(job) = job else { return };
                        // A panicking job (a bug) fails its caller only: the worker goes on, with fresh memory.
                        // Without this each such panic took a worker for good, and the last one every sign-in.
                        let ran = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                            job(&mut memory)
                        }));
                        if ran.is_err() {
                            tracing::error!("a password job panicked; its worker goes on");
                            memory = Memory::new();
                        }
                    }
                })
                .map_err(|e| format!("starting a password worker: {e}"))?;
        }
        Ok(Hasher {
            inner: Arc::new(inner),
        })
    }

    /// Runs `f` on a worker and waits for it; `Unavailable` (busy) at once when the queue is full.
    fn on_worker<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Inner, &mut Memory) -> T + Send + 'static,
    ) -> AppResult<T> {
        let (done, result) = mpsc::sync_channel(1);
        let inner = self.inner.clone();
        let job: Job = Box::new(move |memory| {
            let _ = done.send(f(&inner, memory));
        });
        match self.inner.jobs.try_send(job) {
            Ok(()) => {
                self.inner.runs.fetch_add(1, Ordering::Relaxed);
            }
            Err(mpsc::TrySendError::Full(_)) => {
                tracing::warn!("password check refused: every worker busy and the queue full");
                return Err(AppError::Unavailable(BUSY.into()));
            }
            Err(mpsc::TrySendError::Disconnected(_)) => {
                return Err(AppError::Internal("password workers stopped".into()))
            }
        }
        result
            .recv()
            .map_err(|_| AppError::Internal("a password worker failed".into()))
    }

    /// How many hashes and checks were handed to the workers since start: what a form costs them.
    pub fn runs(&self) -> u64 {
        self.inner.runs.load(Ordering::Relaxed)
    }

    /// Hashes a new password on a worker. `Invalid` for a password over the length cap (the policy refuses it first).
    pub fn hash(&self, password: &str) -> AppResult<String> {
        let password = Zeroizing::new(password.to_string());
        self.on_worker(move |inner, memory| inner.hash(&password, memory))?
            .map_err(|e| AppError::Internal(format!("argon2: {e}")))
    }

    /// Verifies `password` against `stored` (or the dummy hash when `stored` is None) on a worker.
    pub fn verify(&self, password: &str, stored: Option<&str>) -> AppResult<bool> {
        let password = Zeroizing::new(password.to_string());
        let stored = stored.map(str::to_string);
        self.on_worker(move |inner, memory| inner.verify(&password, stored.as_deref(), memory))
    }

    /// True when a stored hash was made with other parameters than the configured ones (re-hash at login).
    pub fn needs_rehash(&self, stored: &str) -> bool {
        match PasswordHash::new(stored) {
            Ok(h) => {
                h.algorithm != argon2::Algorithm::Argon2id.ident()
                    // Compare the costs only: a parsed hash also carries its output length.
                    || Params::try_from(&h)
                        .map(|p| {
                            (p.m_cost(), p.t_cost(), p.p_cost())
                                != (self.inner.params.m_cost(), self.inner.params.t_cost(), self.inner.params.p_cost())
                        })
                        .unwrap_or(true)
            }
            Err(_) => true,
        }
    }
}

/// zxcvbn scores below this are refused (3: more than 10^8 guesses; "safely unguessable" by an online attack
/// and moderately protected against an offline one).
pub const MIN_SCORE: zxcvbn::Score = zxcvbn::Score::Three;
/// zxcvbn's matching grows faster than linearly with the length: estimate the first characters only (more
/// characters only add guesses, so this never makes a password look stronger than it is).
const ESTIMATE_CHARS: usize = 100;

fn is_common(lower: &str) -> bool {
    use std::collections::HashSet;
    use std::sync::OnceLock;
    static SET: OnceLock<HashSet<&'static str>> = OnceLock::new();
    SET.get_or_init(|| {
        COMMON
            .lines()
            .filter(|l| !l.starts_with('#') && !l.is_empty())
            .collect()
    })
    .contains(lower)
}

/// Pieces of a local part zxcvbn is given at most: an address has a few; a long one made of thousands is work
/// for the estimate and no better an answer.
const USER_INPUT_PIECES: usize = 16;

/// What zxcvbn should treat as guessable for this person: the email, its local part and the local part's
/// pieces (`ann.smith` gives `ann` and `smith`; the first [`USER_INPUT_PIECES`]).
fn user_inputs(email: &str) -> Vec<String> {
    let email = email.trim().to_lowercase();
    if email.is_empty() {
        return Vec::new();
    }
    let mut inputs = vec![email.clone()];
    if let Some((local, _)) = email.rsplit_once('@') {
        inputs.push(local.to_string());
        inputs.extend(
            local
                .split(|c: char| !c.is_alphanumeric())
                .filter(|p| p.chars().count() >= 3 && *p != local)
                .take(USER_INPUT_PIECES)
                .map(str::to_string),
        );
    }
    inputs
}

/// zxcvbn's estimate; `Err` carries its feedback (warning, then suggestions) when the score is too low.
fn check_strength(password: &str, email: &str) -> Result<(), String> {
    let head: String = password.chars().take(ESTIMATE_CHARS).collect();
    let inputs = user_inputs(email);
    let inputs: Vec<&str> = inputs.iter().map(String::as_str).collect();
    let estimate = zxcvbn::zxcvbn(&head, &inputs);
    if estimate.score() >= MIN_SCORE {
        return Ok(());
    }
    let mut message = String::from("This password is too easy to guess.");
    match estimate.feedback() {
        Some(f) => {
            if let Some(w) = f.warning() {
                message.push_str(&format!(" {w}"));
            }
            for s in f.suggestions() {
                message.push_str(&format!(" {s}"));
            }
        }
        None => message.push_str(" Add another word or two. Uncommon words are better."),
    }
    Err(message)
}

/// The policy of SECURITY.md: 12+ characters, at most 256 bytes, no composition rules, not a common password,
/// and not easy to guess by zxcvbn's estimate (score 3 or more, with the email as a known word).
pub fn check_policy(password: &str, email: &str) -> Result<(), String> {
    if password.len() > MAX_BYTES {
        return Err(format!("Use at most {MAX_BYTES} bytes."));
    }
    if password.chars().count() < MIN_CHARS {
        return Err(format!(
            "Use at least {MIN_CHARS} characters. A few unrelated words make a good password."
        ));
    }
    let lower = password.to_lowercase();
    if is_common(&lower) {
        return Err(
            "This password is on a list of commonly used passwords. Choose another.".into(),
        );
    }
    let first = lower.chars().next().unwrap_or(' ');
    if lower.chars().all(|c| c == first) {
        return Err("This password repeats one character. Choose another.".into());
    }
    let email_lower = email.trim().to_lowercase();
    if !email_lower.is_empty() && lower.contains(&email_lower) {
        return Err("The password must not contain your email address.".into());
    }
    check_strength(password, email)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn policy_rejects_short_common_and_overlong() {
        assert!(check_policy("short", "").is_err());
        assert!(check_policy("qwerty123456", "").is_err());
        assert!(check_policy("aaaaaaaaaaaaaaaa", "").is_err());
        assert!(check_policy(&"x".repeat(300), "").is_err());
        assert!(check_policy("correct horse battery staple", "").is_ok());
    }

    #[test]
    fn policy_refuses_guessable_passwords_with_feedback() {
        for weak in ["123456789012", "passwordpassword", "qwertyuiopasdfgh"] {
            let e = check_policy(weak, "ann@example.com").unwrap_err();
            assert!(
                e.contains("too easy to guess") || e.contains("commonly used"),
                "{weak}: {e}"
            );
        }
        // zxcvbn's own feedback: a warning, then suggestions.
        let e = check_policy("qwertyuiopasdfgh", "").unwrap_err();
        assert!(e.contains("commonly used password"), "{e}");
        assert!(e.contains("Add another word or two"), "{e}");
    }

    #[test]
    fn the_email_counts_as_a_known_word() {
        let strong_elsewhere = "annabelle.quartermaine2024";
        let email = "annabelle.quartermaine@example.com";
        assert_eq!(check_policy(strong_elsewhere, "x@example.com"), Ok(()));
        assert!(check_policy(strong_elsewhere, email).is_err());
    }

    #[test]
    fn a_long_address_gives_the_estimate_few_pieces() {
        assert_eq!(
            user_inputs("ann.smith@example.com"),
            ["ann.smith@example.com", "ann.smith", "ann", "smith"]
        );
        let long = format!("{}@example.com", "abc.".repeat(5000));
        // The address, its local part, and no more than the first pieces.
        assert_eq!(user_inputs(&long).len(), 2 + USER_INPUT_PIECES);
    }

    #[test]
    fn the_list_is_the_long_entries_of_django_s_and_zxcvbn_s_lists() {
        assert!(is_common("1qaz2wsx3edc"));
        // From zxcvbn's frequency list, not in Django's.
        assert!(is_common("websolutions"));
        assert!(check_policy("WebSolutions", "").is_err());
        assert!(!is_common("# common passwords"));
        let entries = COMMON
            .lines()
            .filter(|l| !l.starts_with('#') && !l.is_empty());
        for e in entries {
            assert!(e.chars().count() >= MIN_CHARS, "{e}");
            assert_eq!(e, e.to_lowercase());
        }
    }

    #[test]
    fn passwords_the_tests_use_are_accepted() {
        // The passwords of tests/ and tests/browser/run.mjs, with the emails they go with.
        for (p, email) in [
            ("correct horse battery staple", "sam@acme.example"),
            ("correct horse battery staple", "s@acme.example"),
            ("correct horse battery staple", "ann@example.com"),
            ("correct horse battery staple 42", "admin@example.gov"),
            ("an entirely new passphrase", "sam@acme.example"),
            ("a different long passphrase", "taken@acme.example"),
            (
                "MARKER-SUBMITTER-PASSWORD-91 staple",
                "marker-sam@example.com",
            ),
            ("MARKER-NEW-PASSWORD-22 battery", "marker-sam@example.com"),
            (
                "MARKER-ADMIN-PASSWORD-7f3a horse",
                "marker-admin@example.gov",
            ),
        ] {
            assert_eq!(check_policy(p, email), Ok(()), "{p}");
        }
    }

    /// The longest password allowed is estimated and accepted; one byte more (bytes, not characters) is refused
    /// before any estimate. (How fast the estimate is belongs in bench/, not in a unit test.)
    #[test]
    fn the_longest_password_is_accepted_and_one_byte_more_is_refused() {
        let long: String = "correct horse battery staple ".repeat(9);
        let longest = &long[..MAX_BYTES];
        assert_eq!(longest.len(), MAX_BYTES);
        assert_eq!(check_policy(longest, "sam@acme.example"), Ok(()));
        let over = format!("{}!", longest);
        assert_eq!(over.len(), MAX_BYTES + 1);
        assert_eq!(
            check_policy(&over, "sam@acme.example"),
            Err(format!("Use at most {MAX_BYTES} bytes."))
        );
        // Counted in bytes: MAX_BYTES - 1 ASCII bytes and one two-byte character are no more than MAX_BYTES
        // characters, but one byte too many.
        let multibyte = format!("{}é", &longest[..MAX_BYTES - 1]);
        assert_eq!(multibyte.chars().count(), MAX_BYTES);
        assert_eq!(multibyte.len(), MAX_BYTES + 1);
        assert_eq!(
            check_policy(&multibyte, "sam@acme.example"),
            Err(format!("Use at most {MAX_BYTES} bytes."))
        );
    }

    #[test]
    fn hash_and_verify() {
        let h = Hasher::new(&Settings::default()).unwrap();
        let stored = h.hash("correct horse battery staple").unwrap();
        assert!(stored.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"));
        assert!(h
            .verify("correct horse battery staple", Some(&stored))
            .unwrap());
        assert!(!h
            .verify("wrong horse battery staple", Some(&stored))
            .unwrap());
        assert!(!h.verify("correct horse battery staple", None).unwrap());
        assert!(!h.needs_rehash(&stored));
        // A hash made by the crate's own allocating path (and another cost) verifies through a worker's reused memory,
        // and the worker's hashes verify through the crate's own verifier.
        use argon2::password_hash::{PasswordHasher, PasswordVerifier};
        let salt = SaltString::generate(&mut OsRng);
        let other_cost = Argon2::new(
            Algorithm::Argon2id,
            Version::V0x13,
            Params::new(8 * 1024, 3, 1, None).unwrap(),
        );
        let theirs = other_cost
            .hash_password(b"correct horse battery staple", &salt)
            .unwrap()
            .to_string();
        assert!(h
            .verify("correct horse battery staple", Some(&theirs))
            .unwrap());
        assert!(!h
            .verify("correct horse battery stapler", Some(&theirs))
            .unwrap());
        assert!(h.needs_rehash(&theirs));
        let parsed = PasswordHash::new(&stored).unwrap();
        assert!(Argon2::default()
            .verify_password(b"correct horse battery staple", &parsed)
            .is_ok());
    }

    #[test]
    fn a_job_that_panics_fails_its_caller_and_the_worker_goes_on() {
        let settings = Settings {
            password_hash_workers: 1,
            ..Settings::default()
        };
        let h = Hasher::new(&settings).unwrap();
        let failed = h.on_worker(|_, _| -> bool { panic!("a bug in a password job") });
        assert!(matches!(failed, Err(AppError::Internal(_))));
        // The one worker still answers.
        let stored = h.hash("correct horse battery staple").unwrap();
        assert!(h
            .verify("correct horse battery staple", Some(&stored))
            .unwrap());
    }

    #[test]
    fn a_full_queue_is_refused_as_busy_at_once_and_the_workers_go_on() {
        let settings = Settings {
            password_hash_workers: 1,
            ..Settings::default()
        };
        let h = Hasher::new(&settings).unwrap();
        let stored = h.hash("correct horse battery staple").unwrap();
        // Far more checks at once than one worker and its queue of 32 take.
        let answers: Vec<AppResult<bool>> = std::thread::scope(|s| {
            let running: Vec<_> = (0..80)
                .map(|_| s.spawn(|| h.verify("correct horse battery staple", Some(&stored))))
                .collect();
            running.into_iter().map(|t| t.join().unwrap()).collect()
        });
        let busy = answers
            .iter()
            .filter(|a| matches!(a, Err(AppError::Unavailable(m)) if m == BUSY))
            .count();
        let checked = answers.iter().filter(|a| matches!(a, Ok(true))).count();
        assert!(busy > 0, "some checks must be refused as busy");
        assert!(
            checked >= 32,
            "the queued checks are all answered: {checked}"
        );
        assert_eq!(busy + checked, 80);
        // Once the storm has passed, the worker answers again.
        assert!(h
            .verify("correct horse battery staple", Some(&stored))
            .unwrap());
    }
}
