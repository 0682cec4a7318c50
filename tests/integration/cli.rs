//! The host CLI's `user add`: accounts of every role, and a submitter attached to an organisation by id, never
//! by name.

use crate::common::{TestApp, PASSWORD};
use rocket::http::Status;

#[test]
fn cli_creates_users_of_every_role() {
    let app = TestApp::new();
    let bin = env!("CARGO_BIN_EXE_pcii-portal");
    for (i, role) in [
        "submitter",
        "officer",
        "authorized_user",
        "auditor",
        "administrator",
    ]
    .iter()
    .enumerate()
    {
        let mut cmd = std::process::Command::new(bin);
        cmd.args([
            "user",
            "add",
            "--email",
            &format!("cli{i}@example.gov"),
            "--role",
            role,
            "--password-stdin",
        ])
        .env("PCII_DATA_DIR", app.data_dir())
        .env("PCII_KEYS_DIR", app.keys_dir())
        .env("PCII_DATABASE_URL", &app.database_url)
        .env("PCII_CONFIG", "/nonexistent.toml")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
        if *role == "submitter" {
            cmd.args(["--new-organisation", "CLI Org"]);
        }
        let mut child = cmd.spawn().unwrap();
        use std::io::Write;
        child
            .stdin
            .take()
            .unwrap()
            .write_all(format!("{PASSWORD}\n").as_bytes())
            .unwrap();
        let out = child.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "{role}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let mut b = app.browser();
        assert_eq!(
            b.login(&format!("cli{i}@example.gov"), PASSWORD),
            Status::SeeOther,
            "{role} can sign in"
        );
    }
    // A bad role is a clear error with a non-zero exit code.
    let out = std::process::Command::new(bin)
        .args([
            "user",
            "add",
            "--email",
            "x@example.gov",
            "--role",
            "superuser",
        ])
        .env("PCII_DATA_DIR", app.data_dir())
        .env("PCII_KEYS_DIR", app.keys_dir())
        .env("PCII_DATABASE_URL", &app.database_url)
        .env("PCII_CONFIG", "/nonexistent.toml")
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("unknown role"));
}

#[test]
fn cli_attaches_to_an_organisation_by_id_never_by_name() {
    let app = TestApp::new();
    let bin = env!("CARGO_BIN_EXE_pcii-portal");
    let run = |args: &[&str]| {
        let mut cmd = std::process::Command::new(bin);
        cmd.args(["user", "add", "--password-stdin"])
            .args(args)
            .env("PCII_DATA_DIR", app.data_dir())
            .env("PCII_KEYS_DIR", app.keys_dir())
            .env("PCII_DATABASE_URL", &app.database_url)
            .env("PCII_CONFIG", "/nonexistent.toml")
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped());
        let mut child = cmd.spawn().unwrap();
        use std::io::Write;
        child
            .stdin
            .take()
            .unwrap()
            .write_all(format!("{PASSWORD}\n").as_bytes())
            .unwrap();
        child.wait_with_output().unwrap()
    };
    let first = run(&[
        "--email",
        "lead@acme.example",
        "--role",
        "submitter",
        "--new-organisation",
        "Acme",
        "--org-admin",
    ]);
    assert!(
        first.status.success(),
        "{}",
        String::from_utf8_lossy(&first.stderr)
    );
    let org = app.organisation_id("Acme").unwrap();
    assert!(String::from_utf8_lossy(&first.stdout).contains(&org));
    // The same name again is a second organisation, not a way in.
    let same_name = run(&[
        "--email",
        "other@else.example",
        "--role",
        "submitter",
        "--new-organisation",
        "Acme",
    ]);
    assert!(same_name.status.success());
    let join = run(&[
        "--email",
        "colleague@acme.example",
        "--role",
        "submitter",
        "--organisation-id",
        &org,
    ]);
    assert!(
        join.status.success(),
        "{}",
        String::from_utf8_lossy(&join.stderr)
    );
    let orgs = app.with_conn(|c| {
        let find = |c: &mut pcii_portal::db::DbConn, e: &str| {
            pcii_portal::models::account::find_by_email(c, e)
                .unwrap()
                .unwrap()
                .organisation_id
                .unwrap()
        };
        (
            find(c, "lead@acme.example"),
            find(c, "other@else.example"),
            find(c, "colleague@acme.example"),
        )
    });
    assert_eq!(orgs.0, org);
    assert_eq!(orgs.2, org);
    assert_ne!(orgs.1, org);
    let bogus = run(&[
        "--email",
        "x@acme.example",
        "--role",
        "submitter",
        "--organisation-id",
        "Acme",
    ]);
    assert!(!bogus.status.success());
    assert!(String::from_utf8_lossy(&bogus.stderr).contains("No organisation has this id"));
    // A submitter needs one or the other.
    let neither = run(&["--email", "y@acme.example", "--role", "submitter"]);
    assert!(!neither.status.success());
}

#[test]
fn cli_resets_an_accounts_second_factors() {
    let app = TestApp::new();
    app.create_user(
        pcii_portal::domain::Role::Administrator,
        "lone@example.gov",
        None,
    );
    let mut b = app.browser();
    assert_eq!(b.login("lone@example.gov", PASSWORD), Status::SeeOther);
    assert_eq!(b.get("/admin").status, Status::Ok);
    let bin = env!("CARGO_BIN_EXE_pcii-portal");
    let run = |reason: &str| {
        std::process::Command::new(bin)
            .args([
                "user",
                "reset-factors",
                "--email",
                "lone@example.gov",
                "--reason",
                reason,
            ])
            .env("PCII_DATA_DIR", app.data_dir())
            .env("PCII_KEYS_DIR", app.keys_dir())
            .env("PCII_DATABASE_URL", &app.database_url)
            .env("PCII_CONFIG", "/nonexistent.toml")
            .output()
            .unwrap()
    };
    assert!(!run(" ").status.success(), "a reason is required");
    let out = run("lost phone; identity checked in person");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // The session ended and the password no longer works; a new one through the mailed link, then enrolment.
    assert_eq!(b.get("/admin").status, Status::Unauthorized);
    let mut again = app.browser();
    let res = again.post(
        "/login",
        &[("email", "lone@example.gov"), ("password", PASSWORD)],
    );
    assert_eq!(res.status, Status::Unauthorized);
    again.post("/password/forgot", &[("email", "lone@example.gov")]);
    let link = app
        .mailed_link("lone@example.gov", "/password/reset/")
        .expect("a reset link");
    let res = again.post(
        &link,
        &[("new_password", "a new passphrase of the lone one")],
    );
    assert_eq!(res.status, Status::SeeOther, "{}", res.body);
    let res = again.post(
        "/login",
        &[
            ("email", "lone@example.gov"),
            ("password", "a new passphrase of the lone one"),
        ],
    );
    assert_eq!(res.header("Location"), Some("/account/security"));
    assert_eq!(app.audit_count("mfa.reset"), 1);
}

/// A loopback port nothing listens on now.
fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

/// Starts `program` (the portal, or a shell that execs it) on fresh directories under `dir`, listening on `port`.
fn start_portal(
    program: &mut std::process::Command,
    dir: &std::path::Path,
    port: u16,
) -> std::process::Child {
    program
        .env("ROCKET_PORT", port.to_string())
        .env("PCII_DATA_DIR", dir.join("data"))
        .env("PCII_KEYS_DIR", dir.join("keys"))
        .env("PCII_DATABASE_URL", "")
        .env("PCII_CONFIG", "/nonexistent.toml")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap()
}

/// The portal's answer to `GET /healthz` on `port`, waited for up to 30 s (empty when none came); `Err` with the
/// exit status when the process ended first.
fn healthz_answer(
    child: &mut std::process::Child,
    port: u16,
) -> Result<String, std::process::ExitStatus> {
    use std::io::{Read, Write};
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        if let Ok(mut s) = std::net::TcpStream::connect(("127.0.0.1", port)) {
            s.write_all(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
                .unwrap();
            let mut out = String::new();
            let _ = s.read_to_string(&mut out);
            return Ok(out);
        }
        if let Some(status) = child.try_wait().unwrap() {
            return Err(status);
        }
        if std::time::Instant::now() > deadline {
            return Ok(String::new());
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
}

/// Rocket's own keys answer to `ROCKET_` as in every Rocket application: tried as a new user would, the portal
/// started with `ROCKET_PORT` listens there (it used to bind 8000 regardless).
#[test]
fn rocket_port_in_the_environment_is_where_the_portal_listens() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let mut child = start_portal(
        &mut std::process::Command::new(env!("CARGO_BIN_EXE_pcii-portal")),
        dir.path(),
        port,
    );
    let answer = healthz_answer(&mut child, port).unwrap_or_default();
    let _ = child.kill();
    let _ = child.wait();
    assert!(
        answer.starts_with("HTTP/1.1 200"),
        "the portal answered on ROCKET_PORT {port}: {answer:?}"
    );
}

/// A core dump would write the master key to disk beside the data: the binary turns them off itself, whatever
/// limit it was started with (here a shell that allows them, as a careless unit or login shell would).
#[test]
fn the_portal_makes_no_core_dump_whatever_limit_it_is_started_with() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let mut child = start_portal(
        std::process::Command::new("sh").args([
            "-c",
            // Allowed first, as far as the hard limit lets (at 0 the test could not fail: it says so and stops);
            // `exec` keeps the process id.
            r#"ulimit -c "$(ulimit -H -c)"; [ "$(ulimit -c)" != 0 ] || exit 97; exec "$0""#,
            env!("CARGO_BIN_EXE_pcii-portal"),
        ]),
        dir.path(),
        port,
    );
    let up = match healthz_answer(&mut child, port) {
        Ok(answer) => answer.starts_with("HTTP/1.1 200"),
        Err(status) if status.code() == Some(97) => {
            eprintln!("not checked: this machine's hard limit allows no core dumps at all");
            return;
        }
        Err(status) => panic!("the portal did not start: {status}"),
    };
    let limits =
        std::fs::read_to_string(format!("/proc/{}/limits", child.id())).unwrap_or_default();
    let _ = child.kill();
    let _ = child.wait();
    assert!(up, "the portal did not answer");
    let core = limits
        .lines()
        .find(|l| l.starts_with("Max core file size"))
        .unwrap_or_else(|| panic!("no core limit in {limits:?}"));
    let values: Vec<&str> = core
        .trim_start_matches("Max core file size")
        .split_whitespace()
        .collect();
    assert_eq!(values[..2], ["0", "0"], "{core}");
}

/// The real binary, started as an operator would: a `tls` setting (this build cannot serve TLS) stops it with the
/// reason instead of serving in clear, and a key nothing reads is named.
#[test]
fn the_binary_refuses_tls_and_names_a_setting_nothing_reads() {
    let dir = tempfile::tempdir().unwrap();
    let run = |extra: &[(&str, &str)]| {
        let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_pcii-portal"));
        cmd.env("PCII_DATA_DIR", dir.path().join("data"))
            .env("PCII_KEYS_DIR", dir.path().join("keys"))
            .env("PCII_DATABASE_URL", "")
            .env("PCII_CONFIG", "/nonexistent.toml")
            .env("PCII_PORT", "1")
            .env_remove("PCII_TEST_DATABASE_URL");
        for (k, v) in extra {
            cmd.env(k, v);
        }
        cmd.output().unwrap()
    };
    let out = run(&[
        ("PCII_TLS", "{certs=\"a.pem\",key=\"b.pem\"}"),
        ("PCII_SMTP_HOTS", "mail.example"),
    ]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(stderr.contains("`tls` is configured"), "{stderr}");
    assert!(stderr.contains("`smtp_hots`"), "{stderr}");
    assert!(
        !dir.path().join("keys").exists(),
        "refused before anything was made"
    );
}

/// Commands that report on the portal's database or act on it refuse one that is not there, and make none: `status`
/// or `backup` run from the wrong directory (or without the unit's environment) made a new, empty database beside
/// it and reported on that one — `backup` exited 0 with "0 stored file(s)", and a monitor read success.
#[test]
fn commands_that_read_the_portal_s_database_make_none_where_there_is_none() {
    let dir = tempfile::tempdir().unwrap();
    let run = |args: &[&str]| {
        std::process::Command::new(env!("CARGO_BIN_EXE_pcii-portal"))
            .args(args)
            .env("PCII_DATA_DIR", dir.path().join("data"))
            .env("PCII_KEYS_DIR", dir.path().join("keys"))
            .env("PCII_DATABASE_URL", "")
            .env("PCII_CONFIG", "/nonexistent.toml")
            .env_remove("PCII_TEST_DATABASE_URL")
            .output()
            .unwrap()
    };
    // Refused, naming the missing database, and none made.
    let refused = |args: &[&str]| {
        let out = run(args);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{args:?}: {stderr}");
        assert!(stderr.contains("no database at"), "{args:?}: {stderr}");
        assert!(
            !dir.path().join("data").join("pcii.sqlite3").exists(),
            "{args:?} made a database"
        );
    };
    let to = dir.path().join("backup");
    for args in [
        &["status"][..],
        &["backup", "--to", to.to_str().unwrap()],
        &["audit", "verify"],
        &["organisation", "list"],
    ] {
        refused(args);
    }
    // The account commands other than `user add` too, with a key store in place (they open it first): made by
    // `keys init` for a database elsewhere.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_pcii-portal"))
        .args(["keys", "init"])
        .env("PCII_DATA_DIR", dir.path().join("elsewhere"))
        .env("PCII_KEYS_DIR", dir.path().join("keys"))
        .env("PCII_DATABASE_URL", "")
        .env("PCII_CONFIG", "/nonexistent.toml")
        .env_remove("PCII_TEST_DATABASE_URL")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for args in [
        &["user", "disable", "--email", "ann@acme.example"][..],
        &[
            "user",
            "reset-factors",
            "--email",
            "ann@acme.example",
            "--reason",
            "checked in person",
        ],
        &["user", "purge-unconfirmed", "--dry-run"],
    ] {
        refused(args);
    }
}
