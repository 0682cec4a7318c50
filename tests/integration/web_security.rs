//! What every page and form gets: the security headers (error pages too), the anti-forgery token and
//! same-site checks on every state-changing route, role pages refused to every other role, and escaping.

use crate::common::{self, encode, TestApp, PASSWORD};
use rocket::http::{Header, Status};

use pcii_portal::domain::Role;

fn assert_security_headers(page: &common::Page) {
    let csp = page.header("Content-Security-Policy").expect("CSP header");
    assert!(
        csp.contains("default-src 'self'")
            && csp.contains("frame-ancestors 'none'")
            && csp.contains("form-action 'self'")
    );
    assert!(!csp.contains("unsafe-inline"));
    assert_eq!(page.header("X-Content-Type-Options"), Some("nosniff"));
    assert_eq!(page.header("Referrer-Policy"), Some("no-referrer"));
    assert_eq!(
        page.header("Cross-Origin-Opener-Policy"),
        Some("same-origin")
    );
    assert_eq!(page.header("Cache-Control"), Some("no-store"));
    assert!(page.header("X-Request-Id").is_some());
}

#[test]
fn login_page_and_error_pages_carry_the_security_headers() {
    let app = TestApp::new();
    let mut b = app.browser();
    let login = b.get("/login");
    assert_eq!(login.status, Status::Ok);
    assert!(login
        .body
        .contains("<form method=\"post\" action=\"/login\""));
    assert_security_headers(&login);
    let missing = b.get("/no/such/page");
    assert_eq!(missing.status, Status::NotFound);
    assert_security_headers(&missing);
    assert!(missing.body.contains("Not found"));
    let refused = b.get("/admin");
    assert_eq!(refused.status, Status::Unauthorized);
    assert_security_headers(&refused);
}

/// The answers nginx makes itself (`deploy/nginx/snippets/pcii-portal-limits.conf`: a body too large, a limit's 429,
/// the portal down) carry every header the portal puts on its own pages, with the same values, so that a header
/// added to the portal and not to the proxy fails here. The proxy suite (`tests/proxy/`) checks nginx sends them.
#[test]
fn the_shipped_proxy_s_own_answers_carry_the_portal_s_security_headers() {
    let snippet = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("deploy/nginx/snippets/pcii-portal-limits.conf"),
    )
    .unwrap();
    let app = TestApp::new();
    let login = app.browser().get("/login");
    assert_eq!(login.status, Status::Ok);
    // What belongs to one answer rather than to every answer.
    let per_answer = [
        "content-type",
        "content-length",
        "set-cookie",
        "x-request-id",
        "server",
    ];
    let portal: Vec<(String, String)> = login
        .headers
        .iter()
        .filter(|(name, _)| !per_answer.contains(&name.to_ascii_lowercase().as_str()))
        .cloned()
        .collect();
    assert!(portal.len() >= 9, "the portal's headers: {portal:?}");
    for location in ["@pcii_error_page", "@pcii_error_json"] {
        let block = snippet
            .split(&format!("\nlocation {location} {{"))
            .nth(1)
            .unwrap_or_else(|| panic!("no `location {location}` in the limits snippet"))
            .split("\n}")
            .next()
            .unwrap();
        let proxy: Vec<(String, String)> = block
            .lines()
            .map(str::trim)
            .filter_map(|line| line.strip_prefix("add_header "))
            .map(|rest| {
                let rest = rest
                    .strip_suffix(" always;")
                    .unwrap_or_else(|| panic!("{location}: `add_header {rest}` without `always`"));
                let (name, value) = rest.split_once(' ').unwrap();
                (name.to_string(), value.trim_matches('"').to_string())
            })
            .collect();
        for (name, value) in &portal {
            assert_eq!(
                common::header(&proxy, name),
                Some(value.as_str()),
                "{location}: {name}"
            );
        }
        // HSTS and Retry-After are sent by the proxy when they apply (under TLS; a 429 or 503), from a map.
        assert_eq!(
            common::header(&proxy, "Strict-Transport-Security"),
            Some("$pcii_error_hsts")
        );
    }
    // The map's HSTS value is the portal's.
    let http = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("deploy/nginx/snippets/pcii-portal-http.conf"),
    )
    .unwrap();
    let hsts_map = http
        .split("map $scheme $pcii_error_hsts {")
        .nth(1)
        .expect("the HSTS map")
        .split('}')
        .next()
        .unwrap();
    assert!(
        hsts_map.contains(&format!(
            "https   \"{}\";",
            pcii_portal::web::fairings::HSTS
        )),
        "{hsts_map}"
    );
}

#[test]
fn state_changing_posts_need_the_token_and_a_same_site_origin() {
    let app = TestApp::new();
    let mut sam = app.login_as(Role::Submitter, "sam@acme.example", Some("Acme"));
    let form = encode(&[
        ("current_password", PASSWORD),
        ("new_password", "an entirely new passphrase"),
    ]);
    // No token.
    assert_eq!(
        sam.post_raw("/account/password", form.clone(), None).status,
        Status::Forbidden
    );
    // A wrong token.
    let wrong = format!("csrf={}&{form}", "0".repeat(64));
    assert_eq!(
        sam.post_raw("/account/password", wrong, None).status,
        Status::Forbidden
    );
    // The right token but from another site.
    let token = sam.csrf();
    let good = format!("csrf={token}&{form}");
    let foreign = Header::new("Origin", "https://evil.example");
    assert_eq!(
        sam.post_raw("/account/password", good.clone(), Some(foreign))
            .status,
        Status::Forbidden
    );
    let cross = Header::new("Sec-Fetch-Site", "cross-site");
    assert_eq!(
        sam.post_raw("/account/password", good.clone(), Some(cross))
            .status,
        Status::Forbidden
    );
    // The two from another site are folded into one entry (its page could post a thousand times).
    assert_eq!(app.audit_count("csrf.refused"), 3);
    // Same origin with the token: accepted.
    let same = Header::new("Sec-Fetch-Site", "same-origin");
    assert_eq!(
        sam.post_raw("/account/password", good, Some(same)).status,
        Status::SeeOther
    );
    // Anonymous forms too: login without the token is refused before any password check.
    let mut anon = app.browser();
    let res = anon.post_raw(
        "/login",
        encode(&[("email", "sam@acme.example"), ("password", PASSWORD)]),
        None,
    );
    assert_eq!(res.status, Status::Forbidden);
}

#[test]
fn every_state_changing_route_refuses_a_missing_token() {
    use diesel::prelude::*;
    use pcii_portal::db::schema::audit_entries;

    let app = TestApp::new();
    // One signed-in browser per role, so the role guard passes and the token check is what answers; and one that
    // has given only its password (owing the second factor), for the routes of that stage
    // (`/login/second-factor`), which refuse every signed-in browser before the token is looked at.
    let mut browsers: Vec<common::Browser<'_>> = app
        .one_browser_per_role()
        .into_iter()
        .map(|(_, b)| b)
        .collect();
    app.create_user(Role::Officer, "halfway@example.gov", None);
    let mut halfway = app.browser();
    let page = halfway.post(
        "/login",
        &[("email", "halfway@example.gov"), ("password", PASSWORD)],
    );
    assert_eq!(
        page.header("Location"),
        Some("/login/second-factor"),
        "{}",
        page.body
    );
    browsers.push(halfway);
    let refusals_of = |route: &str| -> i64 {
        app.with_conn(|c| {
            audit_entries::table
                .filter(audit_entries::action.eq("csrf.refused"))
                .filter(audit_entries::object_id.eq(route))
                .count()
                .get_result(c)
                .unwrap()
        })
    };
    let posts: Vec<(String, String)> = app
        .client
        .rocket()
        .routes()
        .filter(|r| {
            !matches!(
                r.method,
                rocket::http::Method::Get | rocket::http::Method::Head
            )
        })
        .map(|r| (r.uri.path().to_string(), r.uri.to_string()))
        .collect();
    assert!(
        posts.len() >= 10,
        "the portal has state-changing routes: {posts:?}"
    );
    assert!(
        posts.iter().any(|(p, _)| p == "/login/second-factor"),
        "{posts:?}"
    );
    for (path, template) in posts {
        let concrete = path
            .split('/')
            .map(|seg| {
                if seg.starts_with('<') {
                    "0123456789abcdef0123456789abcdef"
                } else {
                    seg
                }
            })
            .collect::<Vec<_>>()
            .join("/");
        let before = refusals_of(&template);
        let pages: Vec<common::Page> = browsers
            .iter_mut()
            .map(|b| b.post_raw(&concrete, "x=1".into(), None))
            .collect();
        let (signed_in, owing) = pages.split_at(5);
        // For whichever role the route belongs to, a missing token is 403; for the others the role guard
        // answers 403 first. Never a success and never a 404 that could hide a state change.
        assert!(
            signed_in.iter().all(|p| p.status == Status::Forbidden),
            "{path}: {:?}",
            signed_in.iter().map(|p| p.status).collect::<Vec<_>>()
        );
        // The browser owing its second factor is refused too: by the token check, or sent back to give the
        // factor (401 where the route answers scripts).
        let owing = &owing[0];
        assert!(
            owing.status == Status::Forbidden
                || owing.status == Status::Unauthorized
                || (owing.status == Status::SeeOther
                    && owing.header("Location") == Some("/login/second-factor")),
            "{path}: {} {:?}",
            owing.status,
            owing.header("Location")
        );
        // And the refusal was the token check's for at least one of them: a guard's 403 alone would leave the
        // route's token check untried.
        assert!(
            refusals_of(&template) > before,
            "{template}: no csrf.refused entry; the token check was never reached"
        );
    }
}

#[test]
fn every_role_page_is_refused_to_every_other_role() {
    let app = TestApp::new();
    let pages: &[(&str, Role)] = &[
        ("/admin", Role::Administrator),
        ("/admin/accounts/new", Role::Administrator),
        ("/submissions", Role::Submitter),
        ("/officer", Role::Officer),
        ("/analyst", Role::AuthorizedUser),
        ("/audit", Role::Auditor),
    ];
    let mut browsers = app.one_browser_per_role();
    let mut anon = app.browser();
    for (path, owner) in pages {
        assert_eq!(
            anon.get(path).status,
            Status::Unauthorized,
            "anonymous {path}"
        );
        for (role, b) in browsers.iter_mut() {
            let expected = if role == owner {
                Status::Ok
            } else {
                Status::Forbidden
            };
            assert_eq!(b.get(path).status, expected, "{role:?} {path}");
        }
    }
}

#[test]
fn templates_escape_what_people_type() {
    let app = TestApp::new();
    let mut b = app.browser();
    let res = b.post(
        "/login",
        &[
            ("email", "<script>alert(1)</script>@x.example"),
            ("password", "whatever password"),
        ],
    );
    assert!(!res.body.contains("<script>alert(1)</script>"));
    assert!(res.body.contains("&lt;script&gt;"));
}

/// Behind an HTTPS reverse proxy (the only HTTPS this build has) the scheme comes from `public_origin`: the session
/// cookie is `__Host-` and `Secure`, and HSTS is sent. A `tls` setting, which this build could not honour, refuses
/// to start instead of serving in clear.
#[test]
fn behind_an_https_proxy_cookies_are_secure_and_host_only_with_hsts_and_tls_settings_refuse_to_start(
) {
    let app = TestApp::with(|f| f.merge(("public_origin", "https://pcii.example.gov")));
    app.create_user(Role::Submitter, "sam@acme.example", Some("Acme"));
    let mut b = app.browser();
    let page = b.post(
        "/login",
        &[
            ("email", "sam@acme.example"),
            ("password", common::PASSWORD),
        ],
    );
    assert_eq!(page.status, Status::SeeOther, "{}", page.body);
    let session = page
        .headers
        .iter()
        .filter(|(n, _)| n.eq_ignore_ascii_case("set-cookie"))
        .map(|(_, v)| v.as_str())
        .find(|c| c.starts_with("__Host-pcii_session="))
        .expect("a __Host- session cookie");
    assert!(session.contains("Secure"), "{session}");
    assert!(session.contains("HttpOnly"), "{session}");
    assert!(session.contains("Path=/"), "{session}");
    assert!(!session.contains("Domain"), "{session}");
    assert_eq!(
        page.header("Strict-Transport-Security"),
        Some("max-age=63072000; includeSubDomains")
    );
    // Signing out removes it with `Secure` too: a browser ignores a `__Host-` cookie's removal without it, and the
    // cookie would outlive the sign-out.
    let out = b.post("/logout", &[]);
    assert_eq!(out.status, Status::SeeOther, "{}", out.body);
    let removal = out
        .headers
        .iter()
        .filter(|(n, _)| n.eq_ignore_ascii_case("set-cookie"))
        .map(|(_, v)| v.as_str())
        .find(|c| {
            c.starts_with("__Host-pcii_session=;") || c.starts_with("__Host-pcii_session=\"\";")
        })
        .expect("the session cookie's removal");
    assert!(removal.contains("Secure"), "{removal}");
    assert!(removal.contains("Path=/"), "{removal}");
    assert!(removal.contains("Max-Age=0"), "{removal}");
    // Plain HTTP (the default origin): no HSTS, a plain cookie name.
    let plain = TestApp::new();
    assert_eq!(
        plain
            .browser()
            .get("/login")
            .header("Strict-Transport-Security"),
        None
    );

    let dir = tempfile::tempdir().unwrap();
    let with_tls = pcii_portal::figment()
        .merge(("data_dir", dir.path().join("data")))
        .merge(("keys_dir", dir.path().join("keys")))
        .merge(("tls.certs", "/etc/ssl/cert.pem"))
        .merge(("tls.key", "/etc/ssl/key.pem"));
    let err = pcii_portal::build(with_tls).err().expect("refused");
    assert!(err.contains("`tls` is configured"), "{err}");
}

#[test]
fn a_request_for_another_host_name_is_refused_as_misdirected_dns_rebinding() {
    let app = TestApp::with(|f| f.merge(("public_origin", "https://pcii.example.gov")));
    let res = app
        .client
        .get("/login")
        .header(Header::new("Host", "rebind.attacker.example"))
        .dispatch();
    assert_eq!(res.status(), Status::MisdirectedRequest);
    let body = res.into_string().unwrap();
    assert!(body.contains("answers only at its own address"), "{body}");
    // A form post is refused the same way, before any handler runs.
    let res = app
        .client
        .post("/login")
        .header(Header::new("Host", "127.0.0.1:8000"))
        .dispatch();
    assert_eq!(res.status(), Status::MisdirectedRequest);
    // Its own name is answered.
    let res = app
        .client
        .get("/login")
        .header(Header::new("Host", "pcii.example.gov"))
        .dispatch();
    assert_eq!(res.status(), Status::Ok);
    // A load balancer's health check by address is answered (it discloses nothing).
    let res = app
        .client
        .get("/healthz")
        .header(Header::new("Host", "127.0.0.1:8000"))
        .dispatch();
    assert_eq!(res.status(), Status::Ok);
}

/// Rocket turns a form POST whose first field is `_method=get` into a GET before the cross-site check runs: such a
/// "GET" is judged as the POST it came as, so a cross-site form cannot reach the GET pages (which mark notices and
/// messages read, or begin an authenticator's setup) that way. The same form from the portal's own pages passes.
#[test]
fn a_cross_site_form_disguised_as_a_get_is_refused() {
    let app = TestApp::new();
    let mut sam = app.login_as(Role::Submitter, "sam@acme.example", Some("Acme"));
    let cross = Header::new("Sec-Fetch-Site", "cross-site");
    let res = sam.post_raw("/account", "_method=get".into(), Some(cross));
    assert_eq!(res.status, Status::Forbidden);
    let foreign = Header::new("Origin", "https://evil.example");
    let res = sam.post_raw("/account", "_method=get".into(), Some(foreign));
    assert_eq!(res.status, Status::Forbidden);
    let same = Header::new("Sec-Fetch-Site", "same-origin");
    let res = sam.post_raw("/account", "_method=get".into(), Some(same));
    assert_eq!(res.status, Status::Ok);
}

/// The forms where protected words are typed (the submission form, its thread, the officer's decision, grant,
/// revocation, dissemination and note forms) ask the browser not to keep what was typed in its form history, which
/// would put PCII on the user's disk and offer it on any site with a field of the same name.
#[test]
fn forms_that_take_protected_words_keep_them_out_of_the_browser_s_form_history() {
    let app = TestApp::new();
    let mut sam = app.login_as(Role::Submitter, "sam@acme.example", Some("Acme"));
    let mut olga = app.login_as(Role::Officer, "olga@pcii.example.gov", None);
    let page = sam.post_multipart(
        "/submissions",
        &common::complete_fields("Form history", "submit"),
    );
    let id = common::submission_id(&page);
    for (officer, path) in [
        (false, "/submissions/new".to_string()),
        (false, format!("/submissions/{id}/messages")),
        (true, format!("/officer/submissions/{id}")),
        (true, format!("/officer/submissions/{id}/messages")),
    ] {
        let page = if officer {
            olga.get(&path)
        } else {
            sam.get(&path)
        };
        assert_eq!(page.status, Status::Ok, "{path}");
        let forms: Vec<&str> = page
            .body
            .split("<form")
            .skip(1)
            .map(|f| f.split('>').next().unwrap())
            .filter(|f| f.contains("method=\"post\"") && !f.contains("/logout"))
            .collect();
        assert!(!forms.is_empty(), "{path}");
        for form in forms {
            assert!(
                form.contains("autocomplete=\"off\""),
                "{path}: <form{form}>"
            );
        }
    }
}
