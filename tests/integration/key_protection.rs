//! `master_key_protection`: with `passphrase` and with `shares` (2 of 3), a copy of `keys/` and `data/`
//! opens nothing without the secret; the sealed portal answers 503 until unsealed; a wrong share is
//! refused and counted; after unsealing everything works as before.

use std::path::Path;
use std::sync::Arc;

use rocket::http::{ContentType, Header, Status};
use rocket::local::blocking::Client;

use pcii_portal::audit::log::Actor;
use pcii_portal::auth::accounts::{self, Membership, NewAccount};
use pcii_portal::clock::Clock;
use pcii_portal::crypto::keyfile::{self, AtRest, UnlockKey};
use pcii_portal::domain::Role;
use pcii_portal::key_store::protection::{self, Target};
use pcii_portal::services::Services;

use crate::common::{self, encode, extract_csrf, files_under, PASSWORD};

const SECRET_LINE: &str = concat!("AGE-SECRET-", "KEY-1");

fn figment(dir: &Path) -> rocket::figment::Figment {
    pcii_portal::figment()
        .merge(("data_dir", dir.join("data")))
        .merge(("keys_dir", dir.join("keys")))
        .merge(("database_url", ""))
        .merge(("db_pool_size", 2))
}

fn settings(f: &rocket::figment::Figment) -> pcii_portal::config::Settings {
    pcii_portal::config::load(f).unwrap()
}

/// The portal's binary as the operator runs it on the host of `dir` (as [`figment`] lays it out: `data/`, `keys/`,
/// SQLite, no configuration file); add the arguments and the protection's settings.
fn host_command(dir: &Path) -> std::process::Command {
    let mut c = std::process::Command::new(env!("CARGO_BIN_EXE_pcii-portal"));
    c.env("PCII_CONFIG", "/nonexistent.toml")
        .env("PCII_DATA_DIR", dir.join("data"))
        .env("PCII_KEYS_DIR", dir.join("keys"))
        .env("PCII_DATABASE_URL", "");
    c
}

/// `keys protect --mode passphrase` on the host of `dir`, the passphrase (new and, for a store already sealed by
/// one, current) read from `pass_file`.
fn protect_with_passphrase(dir: &Path, pass_file: &Path) -> std::process::Command {
    let mut c = host_command(dir);
    c.args([
        "keys",
        "protect",
        "--mode",
        "passphrase",
        "--passphrase-file",
    ])
    .arg(pass_file)
    .env("PCII_MASTER_KEY_PROTECTION", "passphrase")
    .env("PCII_MASTER_KEY_PASSPHRASE_FILE", pass_file)
    .env("PCII_LOG", "warn");
    c
}

/// No file under `keys/` holds a secret key line or any of `secrets` in clear, and no `.age` file there
/// opens with any identity or passphrase that the directory itself holds.
fn assert_keys_disclose_nothing(keys: &Path, secrets: &[&str]) {
    let files = files_under(keys);
    assert!(files
        .iter()
        .any(|p| p.extension().is_some_and(|e| e == "age")));
    let mut identities: Vec<age::x25519::Identity> = Vec::new();
    for p in &files {
        let bytes = std::fs::read(p).unwrap();
        let text = String::from_utf8_lossy(&bytes);
        assert!(
            !text.contains(SECRET_LINE),
            "{} holds a secret key line",
            p.display()
        );
        for s in secrets {
            assert!(!text.contains(s), "{} holds a secret in clear", p.display());
        }
        identities.extend(text.lines().filter_map(|l| l.trim().parse().ok()));
    }
    assert!(identities.is_empty(), "an identity lies in keys/");
    for p in files
        .iter()
        .filter(|p| p.extension().is_some_and(|e| e == "age"))
    {
        let ct = std::fs::read(p).unwrap();
        // Every other file, taken as a passphrase: none opens it.
        if p.file_name().is_some_and(|n| n == protection::UNLOCK_FILE) {
            for q in &files {
                let guess = String::from_utf8_lossy(&std::fs::read(q).unwrap()).into_owned();
                let id = age::scrypt::Identity::new(guess.trim().to_owned().into());
                assert!(
                    keyfile::open_with(&id, &ct).is_err(),
                    "{} opened",
                    p.display()
                );
            }
        }
        // A fresh key (and so any key not in the directory) opens nothing either.
        assert!(UnlockKey::generate().open(&ct).is_err());
    }
}

fn create_user(client: &Client, email: &str, role: Role) {
    let state = client.rocket().state::<Services>().unwrap();
    let id = accounts::create(
        &state.db,
        &state.audit,
        &state.hasher,
        &Actor::cli(),
        NewAccount {
            email: email.into(),
            display_name: email.into(),
            role,
            membership: Membership::None,
            org_admin: false,
            agency: None,
            password: PASSWORD.into(),
        },
        state.clock.now(),
    )
    .unwrap()
    .unwrap();
    // Its TOTP seed is sealed to the master identity, which rests under the passphrase or the shares.
    common::give_authenticator(state, &id);
}

/// Signs in with the password and the second factor; the status of the password step.
fn login(client: &Client, email: &str) -> Status {
    let page = client.get("/login").dispatch().into_string().unwrap();
    let token = extract_csrf(&page).unwrap();
    let res = client
        .post("/login")
        .header(ContentType::Form)
        .body(encode(&[
            ("csrf", &token),
            ("email", email),
            ("password", PASSWORD),
        ]))
        .dispatch();
    let status = res.status();
    if res.headers().get_one("Location") == Some("/login/second-factor") {
        assert_eq!(common::finish_sign_in(client, email), Status::SeeOther);
    }
    status
}

#[test]
fn passphrase_store_opens_nothing_without_the_passphrase() {
    protection::weaken_scrypt_for_tests(4);
    let tmp = tempfile::tempdir().unwrap();
    let secrets = tempfile::tempdir().unwrap();
    let pass_file = secrets.path().join("passphrase");
    keyfile::write_private(&pass_file, b"a passphrase for the test suite\n").unwrap();
    let sealed = figment(tmp.path())
        .merge(("master_key_protection", "passphrase"))
        .merge(("master_key_passphrase_file", &pass_file));

    // First start: the keys are generated sealed; nothing is ever written in clear.
    let (rocket, _) = pcii_portal::build(sealed.clone()).unwrap();
    let client = Client::tracked(rocket).unwrap();
    create_user(&client, "officer@example.gov", Role::Officer);
    assert_eq!(login(&client, "officer@example.gov"), Status::SeeOther);
    assert_eq!(client.get("/officer").dispatch().status(), Status::Ok);
    // The health check finds the sealed key files.
    assert_eq!(client.get("/healthz").dispatch().status(), Status::Ok);

    let keys = tmp.path().join("keys");
    let key = protection::unwrap_with_passphrase(&keys, "a passphrase for the test suite").unwrap();
    let at_rest = AtRest::Sealed(Arc::new(key));
    let cookie = at_rest
        .read(&at_rest.path(&keys, "rocket-secret.key"))
        .unwrap();
    let seed = at_rest
        .read(&at_rest.path(&keys, "audit-signing.key"))
        .unwrap();
    assert_keys_disclose_nothing(&keys, &[cookie.trim(), seed.trim()]);

    // A rotation through the CLI keeps the identity file sealed, and the running portal follows it.
    let s = settings(&sealed);
    pcii_portal::cli::keys_rotate(&s, false).unwrap();
    assert_keys_disclose_nothing(&keys, &[cookie.trim(), seed.trim()]);
    let state = client.rocket().state::<Services>().unwrap();
    let current = state
        .current_keys()
        .read()
        .unwrap()
        .current_key_id()
        .to_owned();
    let ring = pcii_portal::crypto::KeyRing::load_with(&keys, &[], &at_rest).unwrap();
    assert_eq!(ring.current_key_id(), current);
    assert_eq!(ring.keys().len(), 1);
    drop(client);

    // Without the passphrase, with a wrong one, or as a clear store: nothing opens, nothing is generated.
    let err =
        pcii_portal::build(figment(tmp.path()).merge(("master_key_protection", "passphrase")))
            .err()
            .unwrap();
    assert!(err.contains("needs the secret"), "{err}");
    let wrong = secrets.path().join("wrong");
    keyfile::write_private(&wrong, b"not the passphrase at all").unwrap();
    let err = pcii_portal::build(sealed.clone().merge(("master_key_passphrase_file", &wrong)))
        .err()
        .unwrap();
    assert!(err.contains("does not open"), "{err}");
    assert!(!err.contains("not the passphrase"), "{err}");
    let err = pcii_portal::build(figment(tmp.path())).err().unwrap();
    assert!(err.contains("is protected (passphrase)"), "{err}");
    assert!(!keys.join("age-identities.txt").exists());

    // With it, everything as before.
    let (rocket, _) = pcii_portal::build(sealed).unwrap();
    let client = Client::tracked(rocket).unwrap();
    assert_eq!(login(&client, "officer@example.gov"), Status::SeeOther);
    assert_eq!(client.get("/officer").dispatch().status(), Status::Ok);
}

#[test]
fn a_passphrase_changed_with_a_new_unlock_key_leaves_the_old_passphrase_and_an_old_copy_of_keys_useless(
) {
    protection::weaken_scrypt_for_tests(4);
    let tmp = tempfile::tempdir().unwrap();
    let secrets = tempfile::tempdir().unwrap();
    let (old_file, new_file) = (secrets.path().join("old"), secrets.path().join("new"));
    keyfile::write_private(&old_file, b"the passphrase of last year\n").unwrap();
    keyfile::write_private(&new_file, b"the passphrase of this year\n").unwrap();
    let with = |file: &Path| {
        figment(tmp.path())
            .merge(("master_key_protection", "passphrase"))
            .merge(("master_key_passphrase_file", file))
    };
    let (rocket, _) = pcii_portal::build(with(&old_file)).unwrap();
    let client = Client::tracked(rocket).unwrap();
    create_user(&client, "officer@example.gov", Role::Officer);
    drop(client);
    let keys = tmp.path().join("keys");
    let backup = tmp.path().join("keys-backup");
    std::fs::create_dir_all(&backup).unwrap();
    for e in std::fs::read_dir(&keys).unwrap().flatten() {
        if e.file_type().unwrap().is_file() {
            std::fs::copy(e.path(), backup.join(e.file_name())).unwrap();
        }
    }

    // The operator's command, through the real binary: the current passphrase from the configured file, the new
    // one from --passphrase-file.
    let portal = || {
        let mut c = host_command(tmp.path());
        c.env("PCII_MASTER_KEY_PROTECTION", "passphrase")
            .env("PCII_MASTER_KEY_PASSPHRASE_FILE", &old_file)
            .env("PCII_LOG", "warn");
        c
    };
    let protect = || {
        portal()
            .args([
                "keys",
                "protect",
                "--mode",
                "passphrase",
                "--new-unlock-key",
                "--passphrase-file",
            ])
            .arg(&new_file)
            .output()
            .unwrap()
    };

    // Not while a portal runs on these keys: it holds the old unlock key and could not read what it reloads.
    let mut serving = portal()
        .arg("serve")
        .env("PCII_ADDRESS", "127.0.0.1")
        .env("PCII_PORT", "0")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut started = String::new();
    for line in std::io::BufRead::lines(std::io::BufReader::new(serving.stderr.take().unwrap())) {
        let line = line.unwrap();
        started.push_str(&line);
        if line.contains("listening on") {
            break;
        }
    }
    assert!(started.contains("listening on"), "{started}");
    let refused = protect();
    let err = String::from_utf8_lossy(&refused.stderr);
    assert!(!refused.status.success());
    assert!(
        err.contains("a portal is running on this key directory"),
        "{err}"
    );
    assert!(
        protection::unwrap_with_passphrase(&keys, "the passphrase of last year").is_ok(),
        "the refused command changed nothing"
    );
    // However the portal ends, its hold ends with it.
    serving.kill().unwrap();
    serving.wait().unwrap();

    let out = protect();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("a new unlock key"), "{stdout}");

    // The new passphrase opens the portal as before; the old one no longer does.
    let (rocket, _) = pcii_portal::build(with(&new_file)).unwrap();
    let client = Client::tracked(rocket).unwrap();
    assert_eq!(login(&client, "officer@example.gov"), Status::SeeOther);
    // The host's act is in the audit log, as the host's (public parts only), once: the refused run left nothing.
    let protected = entries_of(&client, "key.protect");
    assert_eq!(protected.len(), 1, "{protected:?}");
    let (role, reason) = &protected[0];
    assert_eq!(role.as_deref(), Some("cli"));
    let reason = reason.as_deref().unwrap_or_default();
    assert!(
        reason.starts_with("passphrase; unlock key age1") && reason.ends_with("; a new unlock key"),
        "{reason}"
    );
    drop(client);
    let err = pcii_portal::build(with(&old_file)).err().unwrap();
    assert!(err.contains("does not open"), "{err}");
    // A copy of keys/ taken before, with the old passphrase, unlocks an old key that opens none of today's files.
    let old_key =
        protection::unwrap_with_passphrase(&backup, "the passphrase of last year").unwrap();
    let old = AtRest::Sealed(Arc::new(old_key));
    for name in protection::SECRET_FILES {
        assert!(
            old.read(&old.path(&backup, name)).is_ok(),
            "{name} of the backup"
        );
        assert!(old.read(&old.path(&keys, name)).is_err(), "{name} of today");
    }
    assert_keys_disclose_nothing(&keys, &[]);
}

fn post_share(client: &Client, share: &str) -> (Status, String) {
    let page = client.get("/unseal").dispatch().into_string().unwrap();
    let token = extract_csrf(&page).unwrap();
    let res = client
        .post("/unseal")
        .header(ContentType::Form)
        .body(encode(&[("csrf", &token), ("share", share)]))
        .dispatch();
    let status = res.status();
    (status, res.into_string().unwrap_or_default())
}

/// The actor's role and the reason of every audit entry of `action`, oldest first.
fn entries_of(client: &Client, action: &str) -> Vec<(Option<String>, Option<String>)> {
    use diesel::prelude::*;
    use pcii_portal::db::schema::audit_entries;
    let state = client.rocket().state::<Services>().unwrap();
    let mut conn = state.db.get().unwrap();
    audit_entries::table
        .filter(audit_entries::action.eq(action))
        .order(audit_entries::seq.asc())
        .select((audit_entries::actor_role, audit_entries::reason))
        .load(&mut conn)
        .unwrap()
}

/// Keys a command on the host generated because they were missing are recorded as the server records its own,
/// and the portal started on them afterwards records none again.
#[test]
fn keys_generated_by_a_host_command_are_audited() {
    let tmp = tempfile::tempdir().unwrap();
    let out = host_command(tmp.path())
        .args(["keys", "init"])
        .env("PCII_LOG", "warn")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let (rocket, _) = pcii_portal::build(figment(tmp.path())).unwrap();
    let client = Client::tracked(rocket).unwrap();
    let generated = entries_of(&client, "key.generate");
    let reasons: Vec<&str> = generated
        .iter()
        .map(|(role, reason)| {
            assert_eq!(role.as_deref(), Some("cli"));
            reason.as_deref().unwrap_or_default()
        })
        .collect();
    assert_eq!(reasons.len(), 3, "{reasons:?}");
    assert!(reasons[0].starts_with("age identity "), "{reasons:?}");
    assert_eq!(reasons[1], "cookie secret key");
    assert!(reasons[2].starts_with("audit signing key "), "{reasons:?}");
}

/// Behind an HTTPS proxy the unseal page is served as every other page is: HSTS, a `Secure` form cookie, and a form
/// posted from the public origin (a browser that sends `Origin` without `Sec-Fetch-Site`) taken, not refused.
#[test]
fn the_sealed_portal_behind_https_reads_public_origin() {
    let tmp = tempfile::tempdir().unwrap();
    let (_custodians, shares, _) = shares_store(tmp.path());
    let sealed_figment = figment(tmp.path())
        .merge(("master_key_protection", "shares"))
        .merge(("public_origin", "https://pcii.example.gov"));
    let (rocket, unlocked) =
        pcii_portal::web::sealed::build_with_clock(sealed_figment, Clock::system()).unwrap();
    let client = Client::tracked(rocket).unwrap();
    let page = client.get("/unseal").dispatch();
    assert_eq!(page.status(), Status::Ok);
    assert_eq!(
        page.headers().get_one("Strict-Transport-Security"),
        Some("max-age=63072000; includeSubDomains")
    );
    let cookies: Vec<String> = page
        .headers()
        .get("Set-Cookie")
        .map(str::to_owned)
        .collect();
    assert!(
        !cookies.is_empty() && cookies.iter().all(|c| c.contains("Secure")),
        "{cookies:?}"
    );
    let token = extract_csrf(&page.into_string().unwrap()).unwrap();
    // A browser that sends `Origin` but not `Sec-Fetch-Site`.
    let post_from = |origin: &str, share: &str| {
        client
            .post("/unseal")
            .header(ContentType::Form)
            .header(Header::new("Origin", origin.to_owned()))
            .body(encode(&[("csrf", &token), ("share", share)]))
            .dispatch()
    };
    let res = post_from("https://pcii.example.gov", &shares[0]);
    assert_eq!(res.status(), Status::Ok);
    assert!(res.into_string().unwrap().contains("1 of 2"));
    // Another origin is still refused: its share, the second, unseals nothing.
    let res = post_from("https://elsewhere.example", &shares[1]);
    assert_eq!(res.status(), Status::Forbidden, "refused, not 'sealed'");
    assert!(res.into_string().unwrap().contains("another site"));
    assert!(unlocked.try_recv().is_err(), "a cross-site post unsealed");
}

fn unseal_count(client: &Client, outcome: &str) -> i64 {
    use diesel::prelude::*;
    use pcii_portal::db::schema::audit_entries;
    let state = client.rocket().state::<Services>().unwrap();
    let mut conn = state.db.get().unwrap();
    audit_entries::table
        .filter(audit_entries::action.eq("key.unseal"))
        .filter(audit_entries::outcome.eq(outcome))
        .count()
        .get_result(&mut conn)
        .unwrap()
}

/// A [`shares_store`] in `dir` and its sealed portal on the real clock: the shares, the client, and where an unseal
/// hands on the unlock key.
fn sealed_portal(dir: &Path) -> (Vec<String>, Client, std::sync::mpsc::Receiver<UnlockKey>) {
    let (_, shares, _) = shares_store(dir);
    let sealed_figment = figment(dir).merge(("master_key_protection", "shares"));
    let (rocket, unlocked) =
        pcii_portal::web::sealed::build_with_clock(sealed_figment, Clock::system()).unwrap();
    (shares, Client::tracked(rocket).unwrap(), unlocked)
}

/// A clear store with one account, converted to 2-of-3 shares; the custodians' identities and the
/// cookie secret and signing seed it had in clear.
fn shares_store(dir: &Path) -> (Vec<age::x25519::Identity>, Vec<String>, Vec<String>) {
    let clear = figment(dir);
    let (rocket, _) = pcii_portal::build(clear.clone()).unwrap();
    let client = Client::tracked(rocket).unwrap();
    create_user(&client, "officer@example.gov", Role::Officer);
    drop(client);
    let keys = dir.join("keys");
    let cookie = std::fs::read_to_string(keys.join("rocket-secret.key")).unwrap();
    let seed = std::fs::read_to_string(keys.join("audit-signing.key")).unwrap();
    let custodians: Vec<_> = (0..3).map(|_| age::x25519::Identity::generate()).collect();
    let recipients = custodians
        .iter()
        .map(|c| c.to_public().to_string())
        .collect();
    let done = protection::protect(
        &settings(&clear),
        Target::Shares {
            threshold: 2,
            custodians: recipients,
        },
        &mut || unreachable!("a clear store needs no unlocking"),
    )
    .unwrap();
    assert_eq!(done.removed.len(), 3);
    let shares = done
        .share_files
        .iter()
        .zip(&custodians)
        .map(|((path, _), id)| {
            let plain = keyfile::open_with(id, &std::fs::read(path).unwrap()).unwrap();
            String::from_utf8(plain.to_vec()).unwrap()
        })
        .collect();
    (
        custodians,
        shares,
        vec![cookie.trim().to_owned(), seed.trim().to_owned()],
    )
}

#[test]
fn shares_portal_is_sealed_until_two_of_three_unseal_it() {
    let tmp = tempfile::tempdir().unwrap();
    let (_custodians, shares, clear_secrets) = shares_store(tmp.path());
    let keys = tmp.path().join("keys");
    let mut secrets: Vec<&str> = clear_secrets.iter().map(String::as_str).collect();
    secrets.extend(shares.iter().map(|s| &s[20..]));
    assert_keys_disclose_nothing(&keys, &secrets);

    let sealed_figment = figment(tmp.path()).merge(("master_key_protection", "shares"));
    // The ordinary build refuses: there is no way to open the keys without the custodians.
    let err = pcii_portal::build(sealed_figment.clone()).err().unwrap();
    assert!(err.contains("shares"), "{err}");

    let (rocket, unlocked) =
        pcii_portal::web::sealed::build_with_clock(sealed_figment.clone(), Clock::system())
            .unwrap();
    let client = Client::tracked(rocket).unwrap();
    for path in ["/", "/login", "/signin", "/officer", "/dashboard", "/admin"] {
        let res = client.get(path).dispatch();
        assert_eq!(res.status(), Status::ServiceUnavailable, "{path}");
        let csp = res
            .headers()
            .get_one("Content-Security-Policy")
            .unwrap_or("");
        assert!(csp.contains("frame-ancestors 'none'"), "{path}");
        assert_eq!(
            res.headers().get_one("X-Content-Type-Options"),
            Some("nosniff")
        );
        assert!(res.into_string().unwrap().contains("sealed"), "{path}");
    }
    let res = client
        .post("/login")
        .header(ContentType::Form)
        .body("email=a&password=b")
        .dispatch();
    assert_eq!(res.status(), Status::ServiceUnavailable);
    let res = client
        .get("/officer")
        .header(Header::new("Accept", "application/json"))
        .dispatch();
    assert_eq!(res.status(), Status::ServiceUnavailable);
    assert!(res.into_string().unwrap().contains("\"Sealed\""));
    let res = client.get("/healthz").dispatch();
    assert_eq!(res.status(), Status::ServiceUnavailable);
    assert!(res.into_string().unwrap().contains("\"sealed\""));
    assert_eq!(client.get("/unseal").dispatch().status(), Status::Ok);

    // A caller's mistake is said as such, not "sealed, try again later".
    let res = client
        .post("/unseal")
        .header(ContentType::Form)
        .body(format!("share={}", "a".repeat(300 << 10)))
        .dispatch();
    assert_eq!(res.status(), Status::PayloadTooLarge);
    assert!(res.headers().get_one("Retry-After").is_none());
    assert!(res
        .into_string()
        .unwrap()
        .contains("The form was too large"));

    // No token: refused, nothing taken.
    let res = client
        .post("/unseal")
        .header(ContentType::Form)
        .body(encode(&[("share", &shares[0])]))
        .dispatch();
    assert_eq!(res.status(), Status::Forbidden);

    // A wrong share (of another split of the same shape) is refused and counted.
    let other = tempfile::tempdir().unwrap();
    let (_, foreign, _) = shares_store(other.path());
    let (status, body) = post_share(&client, &foreign[0]);
    assert_eq!(status, Status::UnprocessableEntity);
    assert!(body.contains("0 of 2"), "{body}");
    assert_eq!(unseal_count_sealed(tmp.path(), "refused"), 1);

    // Two of the three: the first is accepted, given twice it counts once, the second unseals.
    let (status, body) = post_share(&client, &shares[2]);
    assert_eq!(status, Status::Ok);
    assert!(body.contains("1 of 2"), "{body}");
    let (_, body) = post_share(&client, &shares[2]);
    assert!(body.contains("given already"), "{body}");
    assert!(unlocked.try_recv().is_err(), "one share unseals nothing");
    let (status, body) = post_share(&client, &shares[0]);
    assert_eq!(status, Status::Ok);
    assert!(body.contains("Unsealed"), "{body}");
    let key = unlocked.try_recv().expect("the unlock key, handed over");

    // The real portal, built with the key held in memory: everything as before.
    let (rocket, startup) = pcii_portal::build_unlocked(
        sealed_figment,
        Clock::system(),
        AtRest::Sealed(Arc::new(key)),
    )
    .unwrap();
    assert!(
        startup.generated_keys.is_empty(),
        "the converted keys are used"
    );
    let client = Client::tracked(rocket).unwrap();
    assert_eq!(login(&client, "officer@example.gov"), Status::SeeOther);
    assert_eq!(client.get("/officer").dispatch().status(), Status::Ok);
    assert_eq!(unseal_count(&client, "refused"), 1);
    // Two shares taken, and the one given twice recorded as such.
    assert_eq!(unseal_count(&client, "success"), 3);
    // The entries written while sealed (without a checkpoint) are part of a chain that verifies.
    let state = client.rocket().state::<Services>().unwrap();
    let mut conn = state.db.get().unwrap();
    let summary = state
        .audit
        .verify_and_record(&mut conn, &Actor::cli(), &[])
        .unwrap();
    assert!(summary.is_ok(), "{summary:?}");
    assert_keys_disclose_nothing(&keys, &secrets);
}

fn unseal_count_sealed(dir: &Path, outcome: &str) -> i64 {
    use diesel::prelude::*;
    use pcii_portal::db::schema::audit_entries;
    let s = settings(&figment(dir));
    let db = pcii_portal::db::Db::open(&s.database_url(), 1).unwrap();
    let mut conn = db.get().unwrap();
    audit_entries::table
        .filter(audit_entries::action.eq("key.unseal"))
        .filter(audit_entries::outcome.eq(outcome))
        .count()
        .get_result(&mut conn)
        .unwrap()
}

/// Like [`post_share`], from the client address `ip`.
fn post_share_from(client: &Client, ip: &str, share: &str) -> Status {
    let remote = std::net::SocketAddr::new(ip.parse().unwrap(), 4000);
    let page = client
        .get("/unseal")
        .remote(remote)
        .dispatch()
        .into_string()
        .unwrap();
    let token = extract_csrf(&page).unwrap();
    client
        .post("/unseal")
        .remote(remote)
        .header(ContentType::Form)
        .body(encode(&[("csrf", &token), ("share", share)]))
        .dispatch()
        .status()
}

#[test]
fn wrong_shares_are_throttled_but_never_keep_a_true_one_out() {
    use pcii_portal::web::sealed::{MAX_FAILURES_OVERALL, MAX_FAILURES_PER_ADDRESS};
    let tmp = tempfile::tempdir().unwrap();
    let (shares, client, unlocked) = sealed_portal(tmp.path());
    let wrong = "pcii-share-v1:0102030405";
    for _ in 0..MAX_FAILURES_PER_ADDRESS {
        assert_eq!(
            post_share_from(&client, "192.0.2.1", wrong),
            Status::UnprocessableEntity
        );
    }
    // Locked now: a wrong share is refused unread.
    assert_eq!(
        post_share_from(&client, "192.0.2.1", wrong),
        Status::TooManyRequests
    );
    // A true share is still taken from the locked address.
    assert_eq!(
        post_share_from(&client, "192.0.2.1", &shares[0]),
        Status::Ok
    );
    for i in 0..(MAX_FAILURES_PER_ADDRESS - 1) {
        assert_eq!(
            post_share_from(&client, &format!("2001:db8::{i:x}"), wrong),
            Status::UnprocessableEntity
        );
    }
    assert_eq!(
        post_share_from(&client, "2001:db8::ff", wrong),
        Status::UnprocessableEntity
    );
    assert_eq!(
        post_share_from(&client, "2001:db8::1:0", wrong),
        Status::TooManyRequests,
        "one /64 is one party"
    );
    // Strangers fill the overall limit from addresses of their own: every wrong share is refused unread...
    let mut stranger = 0;
    while stranger < MAX_FAILURES_OVERALL {
        let status = post_share_from(&client, &format!("198.51.100.{stranger}"), wrong);
        if status == Status::TooManyRequests {
            break;
        }
        assert_eq!(status, Status::UnprocessableEntity);
        stranger += 1;
    }
    assert_eq!(
        post_share_from(&client, "203.0.113.9", wrong),
        Status::TooManyRequests
    );
    assert!(unlocked.try_recv().is_err(), "one share unseals nothing");
    // ...and a custodian's true share from yet another address still unseals.
    assert_eq!(
        post_share_from(&client, "203.0.113.9", &shares[1]),
        Status::Ok
    );
    assert!(unlocked.try_recv().is_ok(), "unsealed by the second share");
    assert_eq!(unseal_count_sealed(tmp.path(), "success"), 2);
}

/// Runs `pcii-portal unseal --share-file F` against the sealed portal of `dir`, driving the portal's runtime with
/// requests until the CLI is done: (success, its output).
fn unseal_by_cli(client: &Client, dir: &Path, share: &str) -> (bool, String) {
    let file = dir.join(format!("share-{}.txt", rand::random::<u32>()));
    keyfile::write_private(&file, share.as_bytes()).unwrap();
    let mut child = host_command(dir)
        .args(["unseal", "--share-file"])
        .arg(&file)
        .env("PCII_MASTER_KEY_PROTECTION", "shares")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while child.try_wait().unwrap().is_none() {
        assert!(
            std::time::Instant::now() < deadline,
            "the CLI never finished"
        );
        let _ = client.get("/healthz").dispatch();
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let out = child.wait_with_output().unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

#[test]
fn a_custodian_on_the_same_host_unseals_through_the_cli() {
    let tmp = tempfile::tempdir().unwrap();
    let (shares, client, unlocked) = sealed_portal(tmp.path());
    let socket = tmp
        .path()
        .join("keys")
        .join(pcii_portal::key_store::UNSEAL_SOCKET);
    assert!(
        socket.exists(),
        "the sealed portal listens on its local socket"
    );
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        std::fs::metadata(&socket).unwrap().permissions().mode() & 0o777,
        0o600
    );

    let (ok, out) = unseal_by_cli(&client, tmp.path(), &shares[1]);
    assert!(ok && out.contains("accepted: 1 of 2"), "{out}");
    let other = tempfile::tempdir().unwrap();
    let (_, foreign, _) = shares_store(other.path());
    let (ok, out) = unseal_by_cli(&client, tmp.path(), &foreign[1]);
    assert!(!ok && out.contains("refused"), "{out}");
    assert!(
        !out.contains(&foreign[1][20..]),
        "the share is never echoed"
    );
    assert!(unlocked.try_recv().is_err());
    let (ok, out) = unseal_by_cli(&client, tmp.path(), &shares[2]);
    assert!(ok && out.contains("unsealed"), "{out}");
    assert!(
        unlocked.try_recv().is_ok(),
        "the unlock key was handed over"
    );
    assert_eq!(unseal_count_sealed(tmp.path(), "refused"), 1);
}

/// The local socket accepts shares from whoever can connect to it: a sealed portal whose key directory other
/// accounts can enter (an operator's `mkdir keys`, mode 0755) does not open it; the unseal page is still there.
#[test]
fn the_unseal_socket_opens_only_in_a_key_directory_closed_to_other_accounts() {
    use std::os::unix::fs::PermissionsExt;
    let tmp = tempfile::tempdir().unwrap();
    let keys = tmp.path().join("keys");
    shares_store(tmp.path());
    std::fs::set_permissions(&keys, std::fs::Permissions::from_mode(0o755)).unwrap();
    let sealed_figment = figment(tmp.path()).merge(("master_key_protection", "shares"));
    let (rocket, _unlocked) =
        pcii_portal::web::sealed::build_with_clock(sealed_figment, Clock::system()).unwrap();
    let client = Client::tracked(rocket).unwrap();
    assert_eq!(
        client.get("/healthz").dispatch().status(),
        Status::ServiceUnavailable
    );
    assert!(
        !keys.join(pcii_portal::key_store::UNSEAL_SOCKET).exists(),
        "the socket is open in a directory others can enter"
    );
    assert_eq!(client.get("/unseal").dispatch().status(), Status::Ok);
}

/// `keys protect` stopped after its commit point but before its audit entry — the state the conversion alone
/// leaves (called here as the command calls it): the store converted, no entry, the run's note of it. The next
/// run that opens the store with its secret records it, once, naming the unlock key in force: a re-run of the
/// command, or the portal's start. A note whose run stopped before committing records nothing.
#[test]
fn a_conversion_stopped_before_its_audit_entry_is_recorded_by_the_next_run_that_opens_the_store() {
    protection::weaken_scrypt_for_tests(4);
    let secrets = tempfile::tempdir().unwrap();
    let pass_file = secrets.path().join("passphrase");
    keyfile::write_private(&pass_file, b"the passphrase of the test\n").unwrap();
    let converted_unrecorded = |dir: &Path| {
        let clear = figment(dir);
        let (rocket, _) = pcii_portal::build(clear.clone()).unwrap();
        drop(Client::tracked(rocket).unwrap());
        let done = protection::protect(
            &settings(&clear),
            Target::Passphrase(zeroize::Zeroizing::new("the passphrase of the test".into())),
            &mut || unreachable!("a clear store needs no unlocking"),
        )
        .unwrap();
        // The note holds public parts only.
        assert!(dir.join("keys").join(protection::UNRECORDED_FILE).exists());
        assert_keys_disclose_nothing(&dir.join("keys"), &["the passphrase of the test"]);
        done.unlock_recipient.unwrap()
    };
    let sealed = |dir: &Path| {
        figment(dir)
            .merge(("master_key_protection", "passphrase"))
            .merge(("master_key_passphrase_file", &pass_file))
    };
    let recorded_once = |dir: &Path, recipient: &str| {
        let (rocket, _) = pcii_portal::build(sealed(dir)).unwrap();
        let client = Client::tracked(rocket).unwrap();
        let entries = entries_of(&client, "key.protect");
        assert_eq!(entries.len(), 1, "{entries:?}");
        assert_eq!(entries[0].0.as_deref(), Some("cli"));
        let reason = entries[0].1.as_deref().unwrap_or_default();
        assert!(
            reason.starts_with(&format!("passphrase; unlock key {recipient}"))
                && reason.contains("recorded by a later run"),
            "{reason}"
        );
    };
    let noted = |dir: &Path| dir.join("keys").join(protection::UNRECORDED_FILE).exists();
    let protect = |dir: &Path| protect_with_passphrase(dir, &pass_file).output().unwrap();

    // The operator runs the command again: it records the conversion and says so; once more, it has nothing to do.
    let by_command = tempfile::tempdir().unwrap();
    let recipient = converted_unrecorded(by_command.path());
    let out = protect(by_command.path());
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("recorded the conversion"), "{stdout}");
    let again = protect(by_command.path());
    assert!(!again.status.success());
    assert!(
        String::from_utf8_lossy(&again.stderr).contains("already protected"),
        "{}",
        String::from_utf8_lossy(&again.stderr)
    );
    recorded_once(by_command.path(), &recipient);
    assert!(!noted(by_command.path()));

    // Or the portal starts on it: its start records it (and the next start does not again).
    let by_start = tempfile::tempdir().unwrap();
    let recipient = converted_unrecorded(by_start.path());
    recorded_once(by_start.path(), &recipient);
    assert!(!noted(by_start.path()));
    recorded_once(by_start.path(), &recipient);

    // A run that stopped before its commit point (here a split refused: 5 of 2) left a note of a conversion that
    // never happened: starts record nothing, and the next `keys protect` forgets it.
    let s = settings(&sealed(by_start.path()));
    let refused = protection::protect(
        &s,
        Target::Shares {
            threshold: 5,
            custodians: (0..2)
                .map(|_| age::x25519::Identity::generate().to_public().to_string())
                .collect(),
        },
        &mut || protection::unlock_passphrase(&s, true),
    );
    assert!(refused.is_err());
    assert!(noted(by_start.path()));
    recorded_once(by_start.path(), &recipient);
    assert!(noted(by_start.path()), "kept for the next `keys protect`");
    let out = protect(by_start.path());
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("already protected"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!noted(by_start.path()));
    recorded_once(by_start.path(), &recipient);
}

/// `keys protect` run with a wrong data directory converts the store but makes no database there to record it in:
/// it says there is none, keeps its note, and the same command with the right one records the conversion once.
#[test]
fn a_conversion_run_with_a_wrong_data_dir_makes_no_database_and_is_recorded_by_the_right_one() {
    protection::weaken_scrypt_for_tests(4);
    let dir = tempfile::tempdir().unwrap();
    let secrets = tempfile::tempdir().unwrap();
    let pass_file = secrets.path().join("passphrase");
    keyfile::write_private(&pass_file, b"the passphrase of the test\n").unwrap();
    let (rocket, _) = pcii_portal::build(figment(dir.path())).unwrap();
    drop(Client::tracked(rocket).unwrap());
    let wrong = dir.path().join("elsewhere");
    let protect = |data_dir: &Path| {
        protect_with_passphrase(dir.path(), &pass_file)
            .env("PCII_DATA_DIR", data_dir)
            .output()
            .unwrap()
    };
    let out = protect(&wrong);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(stderr.contains("no database at"), "{stderr}");
    assert!(
        !wrong.join("pcii.sqlite3").exists(),
        "no database made in the wrong directory"
    );
    let noted = dir.path().join("keys").join(protection::UNRECORDED_FILE);
    assert!(noted.exists(), "the conversion is still to be recorded");

    let out = protect(&dir.path().join("data"));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("recorded the conversion"), "{stdout}");
    assert!(!noted.exists());
    let sealed = figment(dir.path())
        .merge(("master_key_protection", "passphrase"))
        .merge(("master_key_passphrase_file", &pass_file));
    let (rocket, _) = pcii_portal::build(sealed).unwrap();
    let client = Client::tracked(rocket).unwrap();
    assert_eq!(entries_of(&client, "key.protect").len(), 1);
}

/// `keys protect` from a passphrase store to shares makes a new unlock key, as a new passphrase does: re-wrapping
/// the one in force would let a copy of `keys/` taken before (its `unlock.age`) and the old passphrase open today's
/// files.
#[test]
fn a_passphrase_store_moved_to_shares_leaves_the_old_passphrase_and_an_old_copy_of_keys_useless() {
    protection::weaken_scrypt_for_tests(4);
    let tmp = tempfile::tempdir().unwrap();
    let clear = figment(tmp.path());
    let (rocket, _) = pcii_portal::build(clear.clone()).unwrap();
    let client = Client::tracked(rocket).unwrap();
    create_user(&client, "officer@example.gov", Role::Officer);
    drop(client);
    let keys = tmp.path().join("keys");
    let pass = "the passphrase of last year";
    protection::protect(
        &settings(&clear),
        Target::Passphrase(pass.to_owned().into()),
        &mut || unreachable!("a clear store needs no unlocking"),
    )
    .unwrap();
    let backup = tmp.path().join("keys-backup");
    std::fs::create_dir_all(&backup).unwrap();
    for e in std::fs::read_dir(&keys).unwrap().flatten() {
        if e.file_type().unwrap().is_file() {
            std::fs::copy(e.path(), backup.join(e.file_name())).unwrap();
        }
    }

    let custodians: Vec<String> = (0..3)
        .map(|_| age::x25519::Identity::generate().to_public().to_string())
        .collect();
    let done = protection::protect(
        &settings(&clear),
        Target::Shares {
            threshold: 2,
            custodians,
        },
        &mut || protection::unwrap_with_passphrase(&keys, pass),
    )
    .unwrap();
    assert!(!keys.join(protection::UNLOCK_FILE).exists());

    // The copy's unlock key, from its unlock.age and the old passphrase, opens the copy and none of today's files;
    // the new unlock key opens them all.
    let old = AtRest::Sealed(Arc::new(
        protection::unwrap_with_passphrase(&backup, pass).unwrap(),
    ));
    let new = AtRest::Sealed(done.unlock.clone().unwrap());
    for name in protection::SECRET_FILES {
        assert!(
            old.read(&old.path(&backup, name)).is_ok(),
            "{name} of the copy"
        );
        assert!(old.read(&old.path(&keys, name)).is_err(), "{name} of today");
        assert!(
            new.read(&new.path(&keys, name)).is_ok(),
            "{name} with the new key"
        );
    }
    assert_keys_disclose_nothing(&keys, &[]);
    // Audited as such.
    assert!(
        done.entry
            .as_deref()
            .unwrap_or_default()
            .ends_with("; a new unlock key"),
        "{:?}",
        done.entry
    );
}

/// A flood of tokenless posts to the sealed portal's form: the first is recorded, the rest folded into one counted
/// entry written when the sealed portal stops (as the real portal folds anonymous refusals), not one row each.
#[test]
fn a_flood_of_tokenless_unseal_posts_costs_the_log_two_entries() {
    use diesel::prelude::*;
    use pcii_portal::db::schema::audit_entries;
    let tmp = tempfile::tempdir().unwrap();
    let (shares, client, _unlocked) = sealed_portal(tmp.path());
    for _ in 0..50 {
        let res = client
            .post("/unseal")
            .header(ContentType::Form)
            .body(encode(&[("share", &shares[0])]))
            .dispatch();
        assert_eq!(res.status(), Status::Forbidden);
    }
    let refusals = || -> Vec<Option<String>> {
        let s = settings(&figment(tmp.path()));
        let db = pcii_portal::db::Db::open(&s.database_url(), 1).unwrap();
        let mut conn = db.get().unwrap();
        audit_entries::table
            .filter(audit_entries::action.eq("csrf.refused"))
            .order(audit_entries::seq.asc())
            .select(audit_entries::reason)
            .load(&mut conn)
            .unwrap()
    };
    assert_eq!(refusals().len(), 1, "{:?}", refusals());
    client.terminate();
    let recorded = refusals();
    assert_eq!(recorded.len(), 2, "{recorded:?}");
    assert!(
        recorded[1]
            .as_deref()
            .unwrap_or_default()
            .starts_with("49 more like this"),
        "{recorded:?}"
    );
}

/// The sealed portal fails closed: the share that completes the key is refused (503) when its `key.unseal` entry
/// cannot be written, the key is dropped and nothing is unsealed; once the database answers the custodians give
/// their shares again and it unseals, recorded.
#[test]
fn an_unseal_that_cannot_be_recorded_unseals_nothing() {
    use diesel::connection::SimpleConnection;
    use diesel::Connection;
    let tmp = tempfile::tempdir().unwrap();
    let (_custodians, shares, _) = shares_store(tmp.path());
    let sealed_figment = figment(tmp.path())
        .merge(("master_key_protection", "shares"))
        .merge(("database_busy_timeout_ms", 300));
    let (rocket, unlocked) =
        pcii_portal::web::sealed::build_with_clock(sealed_figment, Clock::system()).unwrap();
    let client = Client::tracked(rocket).unwrap();
    let (status, body) = post_share(&client, &shares[0]);
    assert_eq!(status, Status::Ok);
    assert!(body.contains("1 of 2"), "{body}");
    // Another process holds the database's write lock while the second share arrives.
    let path = settings(&figment(tmp.path())).data_dir.join("pcii.sqlite3");
    let mut holder = diesel::sqlite::SqliteConnection::establish(path.to_str().unwrap()).unwrap();
    holder.batch_execute("BEGIN EXCLUSIVE").unwrap();
    let (status, body) = post_share(&client, &shares[1]);
    assert_eq!(status, Status::ServiceUnavailable, "{body}");
    assert!(body.contains("could not record"), "{body}");
    assert!(unlocked.try_recv().is_err(), "unsealed without its entry");
    holder.batch_execute("ROLLBACK").unwrap();
    // The shares given before were forgotten: two again.
    let (_, body) = post_share(&client, &shares[1]);
    assert!(body.contains("1 of 2"), "{body}");
    let (status, body) = post_share(&client, &shares[0]);
    assert_eq!(status, Status::Ok);
    assert!(body.contains("Unsealed"), "{body}");
    assert!(unlocked.try_recv().is_ok());
    drop(client);
    assert_eq!(unseal_count_sealed(tmp.path(), "success"), 3);
}

/// `backup --to` needs no key: on a store sealed by shares it runs unattended (no terminal, no share), as a nightly
/// job does, and records `backup.made`; it used to open the whole key store, asking for the custodians' shares.
#[test]
fn a_backup_of_a_shares_store_asks_for_no_share() {
    let tmp = tempfile::tempdir().unwrap();
    let (_custodians, _shares, _) = shares_store(tmp.path());
    let to = tmp.path().join("backup");
    let out = host_command(tmp.path())
        .env("PCII_MASTER_KEY_PROTECTION", "shares")
        .args(["backup", "--to"])
        .arg(&to)
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(to.join("manifest.json").exists());
    let check = host_command(tmp.path())
        .env("PCII_MASTER_KEY_PROTECTION", "shares")
        .args(["backup", "--check"])
        .arg(&to)
        .output()
        .unwrap();
    assert!(
        check.status.success(),
        "{}",
        String::from_utf8_lossy(&check.stderr)
    );
}
