//! Identity: nobody becomes a company's member, an officer or an auditor by saying so. Registration makes a new
//! organisation whatever name is typed; staff accounts are invitations, under the two-person rule; addresses
//! are confirmed and passwords reset by emailed link (read here from the outbox the embedded default writes).

use crate::common::{self, complete_fields, Browser, Part, TestApp, PASSWORD};
use rocket::http::Status;

use pcii_portal::audit::log::Actor;
use pcii_portal::auth::accounts::Membership;
use pcii_portal::auth::invitations::{self, InvitationRequest, Invited};
use pcii_portal::domain::Role;
use pcii_portal::models::account;

fn submit(b: &mut Browser<'_>) -> String {
    let mut parts = complete_fields("Company A's narrative", "submit");
    parts.push(Part::Text("description_1", "diagram"));
    parts.push(Part::File("file_1", "a.pdf", b"company A's file"));
    let page = b.post_multipart("/submissions", &parts);
    crate::common::submission_id(&page)
}

fn register(b: &mut Browser<'_>, email: &str, organisation: &str) -> common::Page {
    b.post(
        "/register",
        &[
            ("display_name", "Someone"),
            ("organisation", organisation),
            ("email", email),
            ("password", PASSWORD),
        ],
    )
}

#[test]
fn a_stranger_typing_a_companys_name_gets_a_new_empty_organisation_and_learns_nothing() {
    let app = TestApp::new();
    let mut a = app.login_as(Role::Submitter, "lead@acme.example", Some("Acme Water"));
    let sid = submit(&mut a);
    // A draft too: drafts are the organisation's alone.
    let draft = {
        let mut parts = complete_fields("draft text", "draft");
        parts.retain(|p| !matches!(p, Part::Text("express_statement", _)));
        let page = a.post_multipart("/submissions", &parts);
        assert_eq!(page.status, Status::SeeOther, "{}", page.body);
        page.header("Location")
            .unwrap()
            .trim_start_matches("/submissions/")
            .split('/')
            .next()
            .unwrap()
            .to_string()
    };
    let files = app.attachment_ids(&sid);

    // A fresh name, to compare the answers with.
    let mut control = app.browser();
    let fresh = register(&mut control, "control@elsewhere.example", "Nobody Ltd");

    let mut stranger = app.browser();
    let res = register(&mut stranger, "mallory@evil.example", "  aCME water ");
    assert_eq!(res.status, fresh.status);
    assert_eq!(res.header("Location"), fresh.header("Location"));
    let notice = stranger.get("/login").body;
    assert!(notice.contains("We sent a link"));
    assert!(!notice.to_lowercase().contains("acme"));

    // The stranger's account is in a new organisation of its own.
    let (mallory, acme) = app.with_conn(|c| {
        let m = account::find_by_email(c, "mallory@evil.example")
            .unwrap()
            .unwrap();
        let a = account::find_by_email(c, "lead@acme.example")
            .unwrap()
            .unwrap();
        (m, a)
    });
    assert_ne!(mallory.organisation_id, acme.organisation_id);
    assert!(mallory.org_admin);

    // Until the address is confirmed: no sign-in.
    assert_eq!(
        stranger.login("mallory@evil.example", PASSWORD),
        Status::Unauthorized
    );
    assert_eq!(stranger.get("/submissions").status, Status::Unauthorized);
    let link = app
        .mailed_link("mallory@evil.example", "/verify-email/")
        .expect("a confirmation link");
    let done = stranger.confirm_address(&link, "mallory@evil.example", PASSWORD);
    assert_eq!(done.status, Status::SeeOther);
    assert_eq!(stranger.get(&link).status, Status::Gone, "single use");

    // Confirmed: an empty organisation, and every id of A answers 404.
    let home = stranger.get("/submissions");
    assert_eq!(home.status, Status::Ok);
    for uri in [
        format!("/submissions/{sid}"),
        format!("/submissions/{sid}/receipt"),
        format!("/submissions/{sid}/receipt.txt"),
        format!("/submissions/{sid}/package"),
        format!("/submissions/{sid}/files/{}", files[0]),
        format!("/submissions/{draft}"),
        format!("/submissions/{draft}/edit"),
    ] {
        assert_eq!(stranger.get(&uri).status, Status::NotFound, "{uri}");
    }
    for uri in [
        format!("/submissions/{sid}/withdraw"),
        format!("/submissions/{draft}/delete"),
    ] {
        assert_eq!(
            stranger
                .post(&uri, &[("choice", "destroy"), ("confirm", "yes")])
                .status,
            Status::NotFound,
            "{uri}"
        );
    }
    // Nothing on the pages it can reach names A's organisation (its own name aside, which it typed).
    let acme_name = app.with_conn(|c| {
        account::organisation_name(c, acme.organisation_id.as_deref().unwrap()).unwrap()
    });
    assert_eq!(acme_name, "Acme Water");
    let tracking = app.with_conn(|c| {
        use diesel::prelude::*;
        use pcii_portal::db::schema::submissions;
        submissions::table
            .find(&sid)
            .select(submissions::tracking_number)
            .first::<Option<String>>(c)
            .unwrap()
            .unwrap()
    });
    for uri in [
        "/submissions",
        "/submissions/new",
        "/account",
        "/organisation",
        "/dashboard",
    ] {
        let page = stranger.get(uri);
        assert!(!page.body.contains("Acme Water"), "{uri} names A");
        assert!(
            !page.body.contains(&tracking),
            "{uri} shows A's tracking number"
        );
        assert!(
            !page.body.contains(acme.organisation_id.as_deref().unwrap()),
            "{uri}"
        );
    }
    // A is untouched.
    assert_eq!(a.get(&format!("/submissions/{sid}")).status, Status::Ok);
}

#[test]
fn two_registrations_with_one_name_are_two_organisations() {
    let app = TestApp::new();
    let mut one = app.browser();
    let mut two = app.browser();
    register(&mut one, "one@a.example", "Same Name Inc");
    register(&mut two, "two@b.example", "Same Name Inc");
    let (o1, o2) = app.with_conn(|c| {
        (
            account::find_by_email(c, "one@a.example")
                .unwrap()
                .unwrap()
                .organisation_id,
            account::find_by_email(c, "two@b.example")
                .unwrap()
                .unwrap()
                .organisation_id,
        )
    });
    assert!(o1.is_some() && o2.is_some());
    assert_ne!(o1, o2);
}

/// The id of the account's pending change of privilege (two-person rule).
fn pending_request(app: &TestApp, account_id: &str) -> String {
    use diesel::prelude::*;
    use pcii_portal::db::schema::privilege_requests;
    app.with_conn(|c| {
        privilege_requests::table
            .filter(privilege_requests::account_id.eq(account_id))
            .filter(privilege_requests::state.eq("pending"))
            .select(privilege_requests::id)
            .first::<String>(c)
            .unwrap()
    })
}

fn admin_user(app: &TestApp, email: &str) -> pcii_portal::models::account::User {
    app.with_conn(|c| account::find_by_email(c, email).unwrap().unwrap())
}

/// One administrator cannot quietly cancel another's pending change of privilege by filing its own for the same
/// account (the request it replaced vanished, unaudited); and a request outlives neither its asker's role nor
/// its asker's account: once the asker is disabled, no one can approve it, though it can still be refused.
#[test]
fn a_privilege_request_is_not_replaced_by_another_administrator_s_nor_approved_after_its_asker_is_disabled(
) {
    use diesel::prelude::*;
    use pcii_portal::db::schema::{privilege_requests, users};
    let app = TestApp::new();
    let mut first = app.login_as(Role::Administrator, "admin@example.gov", None);
    let mut second = app.login_as(Role::Administrator, "second@example.gov", None);
    app.login_as(Role::Officer, "off@example.gov", None);
    let off = admin_user(&app, "off@example.gov").id;
    first.post(
        &format!("/admin/accounts/{off}/disable"),
        &[("reason", "left"), ("confirm", "true")],
    );
    assert!(admin_user(&app, "off@example.gov").disabled);
    // The second administrator asks to enable it again: a request waits for the first.
    assert_eq!(
        second
            .post(&format!("/admin/accounts/{off}/enable"), &[])
            .status,
        Status::SeeOther
    );
    let rid = pending_request(&app, &off);
    // The first cannot replace it with a request of its own (enable, or a role) ...
    for (uri, fields) in [
        (format!("/admin/accounts/{off}/enable"), vec![]),
        (
            format!("/admin/accounts/{off}/role"),
            vec![("role", "administrator")],
        ),
    ] {
        let res = first.post(&uri, &fields);
        assert_eq!(res.status, Status::Conflict, "{uri}: {}", res.body);
        assert!(res.body.contains("waiting for a decision"), "{uri}");
    }
    // A form with a typed reason is refused at its field, the reason kept for when the waiting request is decided.
    let res = first.post(
        &format!("/admin/accounts/{off}/reset-factors"),
        &[
            ("reason", "Identity checked by phone <b>"),
            ("confirm", "true"),
        ],
    );
    assert_eq!(res.status, Status::Conflict, "{}", res.body);
    assert!(
        res.body.contains(r#"id="reset-reason-error""#),
        "{}",
        res.body
    );
    assert!(
        res.body
            .contains(r#"value="Identity checked by phone &lt;b&gt;""#),
        "{}",
        res.body
    );
    assert_eq!(pending_request(&app, &off), rid, "the request was replaced");
    assert_eq!(app.audit_count("account.privilege_request"), 1);
    // ... while its asker may replace its own.
    let res = second.post(
        &format!("/admin/accounts/{off}/role"),
        &[("role", "auditor")],
    );
    assert_eq!(res.status, Status::SeeOther, "{}", res.body);
    let rid = pending_request(&app, &off);
    // The asker is disabled (an incident, on the host): the first can no longer approve it, only refuse it.
    app.with_conn(|c| {
        diesel::update(users::table.filter(users::email.eq("second@example.gov")))
            .set(users::disabled.eq(true))
            .execute(c)
            .unwrap()
    });
    // The approvals page offers only the refusal.
    let page = first.get("/admin/approvals");
    assert!(
        page.body.contains("it can only be refused"),
        "{}",
        page.body
    );
    assert!(
        !page.body.contains("name=\"decision\" value=\"approve\""),
        "{}",
        page.body
    );
    let approve = first.post(
        &format!("/admin/requests/{rid}"),
        &[("decision", "approve")],
    );
    assert_eq!(approve.status, Status::Conflict, "{}", approve.body);
    assert!(approve.body.contains("may no longer ask for it"));
    assert_eq!(admin_user(&app, "off@example.gov").role, Role::Officer);
    assert_eq!(app.audit_count("account.privilege_approve"), 0);
    let refuse = first.post(&format!("/admin/requests/{rid}"), &[("decision", "refuse")]);
    assert_eq!(refuse.status, Status::SeeOther, "{}", refuse.body);
    let state: String = app.with_conn(|c| {
        privilege_requests::table
            .find(&rid)
            .select(privilege_requests::state)
            .first(c)
            .unwrap()
    });
    assert_eq!(state, "refused");
}

#[test]
fn no_page_lets_an_administrator_set_a_staff_password() {
    let app = TestApp::new();
    let mut admin = app.login_as(Role::Administrator, "admin@example.gov", None);
    let form = admin.get("/admin/accounts/new");
    assert_eq!(form.status, Status::Ok);
    assert!(!form.body.contains("type=\"password\""));
    // A password sent anyway is ignored: nothing exists to sign in with until the invitee chooses one.
    let res = admin.post(
        "/admin/accounts",
        &[
            ("display_name", "Olive Officer"),
            ("email", "olive@example.gov"),
            ("role", "officer"),
            ("agency", "CISA PCII Program Office"),
            ("password", "admin chosen passphrase"),
        ],
    );
    assert_eq!(res.status, Status::SeeOther, "{}", res.body);
    let mut olive = app.browser();
    assert_eq!(
        olive.login("olive@example.gov", "admin chosen passphrase"),
        Status::Unauthorized
    );
    // The invitee chooses its own password from the emailed link.
    let link = app
        .mailed_link("olive@example.gov", "/invitations/")
        .expect("an invitation link");
    let page = olive.get(&link);
    assert_eq!(page.status, Status::Ok);
    assert!(page.body.contains("as a PCII officer"));
    let res = olive.post(
        &link,
        &[
            ("display_name", "Olive Officer"),
            ("password", "olive's own long passphrase"),
        ],
    );
    assert_eq!(res.status, Status::SeeOther, "{}", res.body);
    assert_eq!(
        olive.login("olive@example.gov", "olive's own long passphrase"),
        Status::SeeOther
    );
    // Staff enrol a second factor before anything else.
    assert_eq!(
        olive.get("/officer").header("Location"),
        Some("/account/security")
    );
    olive.enrol_authenticator_on_pages();
    assert_eq!(olive.get("/officer").status, Status::Ok);
    // Its agency is kept and shown to administrators.
    let user = admin_user(&app, "olive@example.gov");
    assert_eq!(user.agency.as_deref(), Some("CISA PCII Program Office"));
    assert!(admin
        .get("/admin")
        .body
        .contains("CISA PCII Program Office"));
    // The link worked once.
    assert_eq!(app.browser().get(&link).status, Status::Gone);
    // The admin page shows one administrator and says the two-person rule cannot apply.
    assert!(admin
        .get("/admin")
        .body
        .contains("only one active administrator"));
}

#[test]
fn with_two_administrators_a_staff_grant_needs_the_second_one() {
    let app = TestApp::new();
    let mut first = app.login_as(Role::Administrator, "first@example.gov", None);
    let mut second = app.login_as(Role::Administrator, "second@example.gov", None);
    assert!(!first
        .get("/admin")
        .body
        .contains("only one active administrator"));

    // The first invites an officer: nothing is sent, nothing can sign in.
    let res = first.post(
        "/admin/accounts",
        &[
            ("display_name", "Otto Officer"),
            ("email", "otto@example.gov"),
            ("role", "officer"),
            ("agency", "PCII Program Office"),
        ],
    );
    assert_eq!(res.status, Status::SeeOther, "{}", res.body);
    assert!(app
        .mailed_link("otto@example.gov", "/invitations/")
        .is_none());
    let id = app.with_conn(|c| {
        use diesel::prelude::*;
        use pcii_portal::db::schema::invitations;
        invitations::table
            .filter(invitations::email.eq("otto@example.gov"))
            .select(invitations::id)
            .first::<String>(c)
            .unwrap()
    });
    // The inviter cannot approve its own grant.
    let own = first.post(&format!("/admin/invitations/{id}/approve"), &[]);
    assert_eq!(own.status, Status::Conflict);
    assert!(app
        .mailed_link("otto@example.gov", "/invitations/")
        .is_none());
    // The pending grant is listed for the second administrator, who approves it.
    let list = second.get("/admin/approvals");
    assert!(list.body.contains("otto@example.gov"));
    assert_eq!(
        second
            .post(&format!("/admin/invitations/{id}/approve"), &[])
            .status,
        Status::SeeOther
    );
    let link = app
        .mailed_link("otto@example.gov", "/invitations/")
        .expect("sent after approval");
    let mut otto = app.browser();
    assert_eq!(
        otto.post(
            &link,
            &[
                ("display_name", "Otto"),
                ("password", "otto picks this passphrase")
            ]
        )
        .status,
        Status::SeeOther
    );
    assert_eq!(
        otto.login("otto@example.gov", "otto picks this passphrase"),
        Status::SeeOther
    );
    otto.enrol_authenticator_on_pages();
    assert_eq!(otto.get("/officer").status, Status::Ok);
    // Both names are in the audit entry of the approval.
    let (first_id, second_id) = (
        admin_user(&app, "first@example.gov").id,
        admin_user(&app, "second@example.gov").id,
    );
    let reason: String = app.with_conn(|c| {
        use diesel::prelude::*;
        use pcii_portal::db::schema::audit_entries;
        audit_entries::table
            .filter(audit_entries::action.eq("invitation.approve"))
            .select(audit_entries::reason)
            .first::<Option<String>>(c)
            .unwrap()
            .unwrap()
    });
    assert!(
        reason.contains(&first_id) && reason.contains(&second_id),
        "{reason}"
    );

    // A role change to a staff role also waits; a refusal leaves the role as it was.
    let mut sam = app.login_as(Role::Submitter, "sam@acme.example", Some("Acme"));
    let sam_id = admin_user(&app, "sam@acme.example").id;
    let res = first.post(
        &format!("/admin/accounts/{sam_id}/role"),
        &[("role", "auditor")],
    );
    assert_eq!(res.status, Status::SeeOther);
    assert_eq!(
        admin_user(&app, "sam@acme.example").role.as_str(),
        "submitter"
    );
    assert_eq!(
        sam.get("/submissions").status,
        Status::Ok,
        "nothing changed yet"
    );
    let rid = pending_request(&app, &sam_id);
    assert_eq!(
        first
            .post(
                &format!("/admin/requests/{rid}"),
                &[("decision", "approve")]
            )
            .status,
        Status::Conflict
    );
    assert_eq!(
        second
            .post(&format!("/admin/requests/{rid}"), &[("decision", "refuse")])
            .status,
        Status::SeeOther
    );
    assert_eq!(
        admin_user(&app, "sam@acme.example").role.as_str(),
        "submitter"
    );
    // Asked again and approved: the role changes and the account's sessions end.
    first.post(
        &format!("/admin/accounts/{sam_id}/role"),
        &[("role", "auditor")],
    );
    let rid = pending_request(&app, &sam_id);
    assert_eq!(
        second
            .post(
                &format!("/admin/requests/{rid}"),
                &[("decision", "approve")]
            )
            .status,
        Status::SeeOther
    );
    assert_eq!(
        admin_user(&app, "sam@acme.example").role.as_str(),
        "auditor"
    );
    assert_eq!(sam.get("/account").status, Status::Unauthorized);
}

/// Who invites is decided on the inviter as it stands in the invitation's own transaction, not as its request's
/// guard read it: an organisation administrator demoted, or an administrator disabled, between the two (a request
/// already in flight) invites no one, and the refusal is recorded.
#[test]
fn an_inviter_demoted_or_disabled_while_its_request_is_in_flight_invites_no_one() {
    use diesel::prelude::*;
    use pcii_portal::db::schema::users;
    let app = TestApp::new();
    app.login_as(Role::Submitter, "lead@acme.example", Some("Acme"));
    app.login_as(Role::Administrator, "admin@example.gov", None);
    let lead = admin_user(&app, "lead@acme.example");
    let admin = admin_user(&app, "admin@example.gov");
    assert!(lead.org_admin, "the lead administers its organisation");
    let org = app.organisation_id("Acme").unwrap();
    let state = app.state();
    let invite = |inviter: &account::User, role: Role, membership: Membership, email: &str| {
        app.with_conn(|c| {
            invitations::invite(
                c,
                &state.audit,
                &state.mailer,
                &state.settings,
                &Actor::cli(),
                inviter,
                InvitationRequest {
                    email: email.into(),
                    display_name: "New Person".into(),
                    role,
                    membership,
                    agency: (role != Role::Submitter).then(|| "CISA".to_string()),
                },
                state.clock.now(),
            )
        })
    };
    // As read, both could invite: the stale rows still pass the checks made before the transaction.
    app.with_conn(|c| {
        diesel::update(users::table.filter(users::id.eq(&lead.id)))
            .set(users::org_admin.eq(false))
            .execute(c)
            .unwrap();
        diesel::update(users::table.filter(users::id.eq(&admin.id)))
            .set(users::disabled.eq(true))
            .execute(c)
            .unwrap();
    });
    let by_lead = invite(
        &lead,
        Role::Submitter,
        Membership::Existing(org),
        "new@acme.example",
    );
    assert!(
        matches!(by_lead, Err(pcii_portal::error::AppError::Refused(_))),
        "{:?}",
        by_lead.as_ref().err()
    );
    let by_admin = invite(&admin, Role::Officer, Membership::None, "off@example.gov");
    assert!(
        matches!(by_admin, Err(pcii_portal::error::AppError::Refused(_))),
        "{:?}",
        by_admin.as_ref().err()
    );
    assert_eq!(app.audit_count("invitation.create"), 2);
    assert_eq!(
        app.audit_reasons("invitation.create"),
        vec!["the inviter's role or membership changed while it was asked"; 2]
    );
    let made: i64 = app.with_conn(|c| {
        pcii_portal::db::schema::invitations::table
            .count()
            .get_result(c)
            .unwrap()
    });
    assert_eq!(made, 0, "no invitation was made");
}

#[test]
fn an_administrator_cannot_invite_itself_into_a_company() {
    let app = TestApp::new();
    let _lead = app.login_as(Role::Submitter, "lead@acme.example", Some("Acme"));
    let org = app.organisation_id("Acme").unwrap();
    app.login_as(Role::Administrator, "admin@example.gov", None);
    let admin = admin_user(&app, "admin@example.gov");
    let state = app.state();
    let invited = app.with_conn(|c| {
        invitations::invite(
            c,
            &state.audit,
            &state.mailer,
            &state.settings,
            &Actor::cli(),
            &admin,
            InvitationRequest {
                email: "admins-alias@example.gov".into(),
                display_name: "Alias".into(),
                role: Role::Submitter,
                membership: Membership::Existing(org.clone()),
                agency: None,
            },
            state.clock.now(),
        )
        .unwrap()
        .ok()
        .unwrap()
    });
    let id = match invited {
        Invited::AwaitingApproval { id, .. } => id,
        Invited::Sent { .. } => {
            panic!("an administrator's invitation into a company went out unapproved")
        }
    };
    assert!(app
        .mailed_link("admins-alias@example.gov", "/invitations/")
        .is_none());
    // The administrator cannot approve it either.
    assert!(app
        .with_conn(|c| invitations::approve(
            c,
            &state.audit,
            &state.mailer,
            &state.settings,
            &Actor::cli(),
            &admin,
            &id,
            state.clock.now()
        ))
        .is_err());
    assert!(app
        .mailed_link("admins-alias@example.gov", "/invitations/")
        .is_none());
}

#[test]
fn password_reset_by_emailed_link_without_enumeration() {
    let app = TestApp::new();
    let mut sam = app.login_as(Role::Submitter, "sam@acme.example", Some("Acme"));
    let mut anon = app.browser();
    let known = anon.post("/password/forgot", &[("email", "SAM@acme.example")]);
    let unknown = anon.post("/password/forgot", &[("email", "nobody@acme.example")]);
    assert_eq!(known.status, unknown.status);
    assert_eq!(known.header("Location"), unknown.header("Location"));
    let messages = app.outbox();
    assert_eq!(messages.len(), 1, "one message, to the known address");
    assert!(!messages[0].contains("nobody@acme.example"));
    let link = app
        .mailed_link("sam@acme.example", "/password/reset/")
        .unwrap();
    // The message carries the link and nothing of the account's organisation.
    assert!(!messages[0].contains("Acme"));
    let weak = anon.post(&link, &[("new_password", "short")]);
    assert_eq!(weak.status, Status::UnprocessableEntity);
    let ok = anon.post(&link, &[("new_password", "a brand new reset passphrase")]);
    assert_eq!(ok.status, Status::SeeOther);
    // Every session ended; the old password is dead; the link works once.
    assert_eq!(sam.get("/account").status, Status::Unauthorized);
    assert_eq!(
        anon.login("sam@acme.example", PASSWORD),
        Status::Unauthorized
    );
    assert_eq!(
        anon.login("sam@acme.example", "a brand new reset passphrase"),
        Status::SeeOther
    );
    assert_eq!(
        app.browser()
            .post(&link, &[("new_password", "yet another passphrase here")])
            .status,
        Status::Gone
    );
}

/// Someone registers another's address (a utility's shared mailbox) with a password of its own; the owner, mailed
/// the link, opens it. The link confirms only with the password chosen at registration: the owner's click (or its
/// own password, or another account's sign-in) confirms nothing, so the squatter's account never passes for the
/// utility's own.
#[test]
fn a_confirmation_link_confirms_only_with_the_password_chosen_at_registration() {
    let app = TestApp::new();
    let mut squatter = app.browser();
    assert_eq!(
        register(&mut squatter, "ops@bigutility.example", "Big Utility").status,
        Status::SeeOther
    );
    let link = app
        .mailed_link("ops@bigutility.example", "/verify-email/")
        .expect("a confirmation link");
    let token = link.trim_start_matches("/verify-email/").to_string();
    // A sign-in carrying the link's token, as its page sends it.
    let with_token = |b: &mut common::Browser, email: &str, password: &str| {
        b.post(
            "/login",
            &[
                ("email", email),
                ("password", password),
                ("confirm", &token),
            ],
        )
    };
    let verified = |app: &TestApp| {
        app.with_conn(|c| {
            account::find_by_email(c, "ops@bigutility.example")
                .unwrap()
                .unwrap()
                .email_verified_at
        })
    };
    // The owner opens it: a sign-in form for that address, and the owner's own password confirms nothing.
    let mut owner = app.browser();
    let page = owner.get(&link);
    assert_eq!(page.status, Status::Ok);
    assert!(
        page.body.contains("Confirm your email address"),
        "{}",
        page.body
    );
    assert!(
        page.body.contains("ops@bigutility.example"),
        "{}",
        page.body
    );
    let res = with_token(
        &mut owner,
        "ops@bigutility.example",
        "the utility's own passphrase",
    );
    assert_eq!(res.status, Status::Unauthorized);
    // Another account signing in with the link signs in as itself and confirms nothing: a confirmed one (the link
    // is not looked at), and one whose own address is not confirmed either (the link is another account's).
    app.create_user(
        Role::Submitter,
        "someone@elsewhere.example",
        Some("Elsewhere"),
    );
    let mut other = app.browser();
    let res = with_token(&mut other, "someone@elsewhere.example", PASSWORD);
    assert_eq!(res.status, Status::SeeOther);
    let mut unconfirmed = app.browser();
    assert_eq!(
        register(&mut unconfirmed, "new@elsewhere.example", "New Ltd").status,
        Status::SeeOther
    );
    let res = with_token(&mut unconfirmed, "new@elsewhere.example", PASSWORD);
    assert_eq!(res.status, Status::Unauthorized);
    assert_eq!(verified(&app), None);
    assert!(app
        .with_conn(|c| account::find_by_email(c, "new@elsewhere.example").unwrap())
        .unwrap()
        .email_verified_at
        .is_none());
    // The link still works with the password chosen at registration (the refusals did not spend it).
    let done = squatter.confirm_address(&link, "ops@bigutility.example", PASSWORD);
    assert_eq!(done.status, Status::SeeOther, "{}", done.body);
    assert!(verified(&app).is_some());
    // The mail tells whoever did not register to do nothing.
    let mail = app
        .outbox()
        .into_iter()
        .find(|m| m.contains("/verify-email/"))
        .unwrap();
    assert!(
        mail.contains("If you did not register, do nothing"),
        "{mail}"
    );
}

#[test]
fn registering_a_taken_address_tells_its_owner_not_the_visitor() {
    let app = TestApp::new();
    app.create_user(Role::Submitter, "taken@acme.example", Some("Acme"));
    let mut b = app.browser();
    let res = register(&mut b, "Taken@Acme.example", "Other");
    assert_eq!(res.status, Status::SeeOther);
    let mail = app.outbox().pop().expect("a note to the owner");
    assert!(mail.contains("already has one"));
    assert!(!mail.contains("/verify-email/"));
    // No second account, no new organisation.
    assert!(app.organisation_id("Other").is_none());
}

/// Mail whose address and words a stranger chooses is capped: a registration's confirmation link goes to an address
/// nobody confirmed once (registering it again mails its owner a note, under the registration limits; the
/// unconfirmed account cannot sign in to ask for more), and invitations from a company's administrator (a
/// self-registered one included). The confirmation mail greets no one by the typed name.
#[test]
fn mail_a_stranger_can_send_to_any_address_is_capped() {
    let app = TestApp::new();
    let mut stranger = app.browser();
    assert_eq!(
        register(&mut stranger, "victim@elsewhere.example", "Prize Dept").status,
        Status::SeeOther
    );
    let mails_to_victim = |app: &TestApp| {
        app.outbox()
            .into_iter()
            .filter(|m| m.to_lowercase().contains("to: victim@elsewhere.example"))
            .collect::<Vec<_>>()
    };
    let first = mails_to_victim(&app);
    assert_eq!(first.len(), 1);
    assert!(
        first[0].contains("Hello,") && !first[0].contains("Someone"),
        "{}",
        first[0]
    );
    assert_eq!(
        stranger.login("victim@elsewhere.example", PASSWORD),
        Status::Unauthorized
    );
    assert_eq!(stranger.get("/verify-email").status, Status::Unauthorized);

    // An organisation administrator: twenty invitations an hour, then 429, nothing created or mailed.
    let mut admin = app.login_as(Role::Submitter, "lead@acme.example", Some("Acme"));
    let cap = pcii_portal::auth::invitations::ORGANISATION_INVITATIONS_PER_HOUR;
    for i in 0..cap {
        let page = admin.post(
            "/organisation/invitations",
            &[
                ("email", &format!("p{i}@elsewhere.example")),
                ("display_name", "P"),
            ],
        );
        assert_eq!(page.status, Status::SeeOther, "{}", page.body);
    }
    let sent = app.outbox().len();
    let page = admin.post(
        "/organisation/invitations",
        &[
            ("email", "one-more@elsewhere.example"),
            ("display_name", "P"),
        ],
    );
    assert_eq!(page.status, Status::TooManyRequests, "{}", page.body);
    assert_eq!(app.outbox().len(), sent);
    assert_eq!(
        app.audit_reasons("invitation.create")
            .last()
            .map(String::as_str),
        Some("throttled")
    );
    // An hour later the count starts again.
    app.advance(3601);
    assert_eq!(admin.login("lead@acme.example", PASSWORD), Status::SeeOther);
    let page = admin.post(
        "/organisation/invitations",
        &[
            ("email", "one-more@elsewhere.example"),
            ("display_name", "P"),
        ],
    );
    assert_eq!(page.status, Status::SeeOther, "{}", page.body);

    // Reset links asked for one address from ever new networks: five an hour reach it, the rest get the same
    // answer and no mail (the answer must not tell whether the address has an account).
    let resets = |app: &TestApp| {
        app.outbox()
            .into_iter()
            .filter(|m| {
                m.to_lowercase().contains("to: lead@acme.example") && m.contains("/password/reset/")
            })
            .count()
    };
    let mut anon = app.browser();
    let mut answers = Vec::new();
    for i in 0..7u8 {
        let addr = std::net::SocketAddr::from(([198, 51, 100, 10 + i], 40000));
        let page = anon.post_from("/password/forgot", &[("email", "lead@acme.example")], addr);
        answers.push((page.status, page.header("Location").map(str::to_string)));
    }
    assert!(answers.windows(2).all(|w| w[0] == w[1]), "{answers:?}");
    // Reset mail leaves after the answer (send_detached): count once the outbox stops growing.
    let mut sent = resets(&app);
    loop {
        std::thread::sleep(std::time::Duration::from_millis(300));
        let now = resets(&app);
        if now == sent {
            break;
        }
        sent = now;
    }
    assert_eq!(sent, 5);
    assert_eq!(
        app.audit_reasons("account.reset_request")
            .last()
            .map(String::as_str),
        Some("throttled for this account")
    );
}

/// The hourly cap on invitations is the organisation's, all its administrators together (each member made an
/// administrator brought twenty more an hour), and one address gets at most three organisations' invitations a day,
/// whichever organisations send them.
#[test]
fn invitations_are_capped_per_organisation_and_per_address() {
    use diesel::prelude::*;
    use pcii_portal::auth::invitations::{
        ORGANISATIONS_PER_ADDRESS_PER_DAY, ORGANISATION_INVITATIONS_PER_HOUR,
    };
    use pcii_portal::db::schema::users;
    let app = TestApp::new();
    let mut lead = app.login_as(Role::Submitter, "lead@acme.example", Some("Acme"));
    app.create_user(Role::Submitter, "deputy@acme.example", Some("Acme"));
    let deputy_id = app.user_id("deputy@acme.example");
    app.with_conn(|c| {
        diesel::update(users::table.find(&deputy_id))
            .set(users::org_admin.eq(true))
            .execute(c)
            .unwrap()
    });
    let mut deputy = app.browser();
    assert_eq!(
        deputy.login("deputy@acme.example", PASSWORD),
        Status::SeeOther
    );
    let invite = |b: &mut Browser<'_>, email: &str| {
        b.post(
            "/organisation/invitations",
            &[("email", email), ("display_name", "P")],
        )
        .status
    };
    let half = ORGANISATION_INVITATIONS_PER_HOUR / 2;
    for i in 0..ORGANISATION_INVITATIONS_PER_HOUR {
        let who = if i < half { &mut lead } else { &mut deputy };
        assert_eq!(
            invite(who, &format!("p{i}@elsewhere.example")),
            Status::SeeOther
        );
    }
    let sent = app.outbox().len();
    assert_eq!(
        invite(&mut lead, "one-more@elsewhere.example"),
        Status::TooManyRequests
    );
    assert_eq!(
        invite(&mut deputy, "one-more@elsewhere.example"),
        Status::TooManyRequests
    );
    assert_eq!(app.outbox().len(), sent);

    // A new hour: one address is invited by at most three organisations a day; an organisation inviting it again
    // (a typo corrected) does not count twice.
    app.advance(3601);
    assert_eq!(lead.login("lead@acme.example", PASSWORD), Status::SeeOther);
    let mut others: Vec<Browser<'_>> = ["globex", "initech", "umbrella"]
        .iter()
        .map(|name| {
            app.login_as(
                Role::Submitter,
                &format!("lead@{name}.example"),
                Some(&name.to_uppercase()),
            )
        })
        .collect();
    assert_eq!(invite(&mut lead, "victim@target.example"), Status::SeeOther);
    assert_eq!(invite(&mut lead, "victim@target.example"), Status::SeeOther);
    for b in others
        .iter_mut()
        .take(ORGANISATIONS_PER_ADDRESS_PER_DAY as usize - 1)
    {
        assert_eq!(invite(b, "victim@target.example"), Status::SeeOther);
    }
    let fourth = others.last_mut().unwrap();
    assert_eq!(
        invite(fourth, "Victim@Target.example"),
        Status::TooManyRequests
    );
    // One that invited already may again; other addresses are still invited.
    assert_eq!(invite(&mut lead, "victim@target.example"), Status::SeeOther);
    assert_eq!(invite(fourth, "someone@target.example"), Status::SeeOther);
}

#[test]
fn without_smtp_mail_goes_to_the_outbox_and_the_banner_says_so() {
    let app = TestApp::new();
    let route = app.state().mailer.describe();
    assert!(route.contains("outbox"), "{route}");
    let mut b = app.browser();
    register(&mut b, "new@co.example", "New Co");
    assert_eq!(app.outbox().len(), 1);
}

#[test]
fn one_administrator_cannot_disable_the_other_and_then_grant_alone() {
    let app = TestApp::new();
    let mut first = app.login_as(Role::Administrator, "first@example.gov", None);
    let mut second = app.login_as(Role::Administrator, "second@example.gov", None);
    let second_id = admin_user(&app, "second@example.gov").id;
    let res = first.post(
        &format!("/admin/accounts/{second_id}/disable"),
        &[("reason", "taking over"), ("confirm", "true")],
    );
    assert_eq!(res.status, Status::SeeOther);
    // Nothing happened yet: the second administrator is still active, and the rule still binds.
    assert!(!admin_user(&app, "second@example.gov").disabled);
    assert_eq!(second.get("/admin").status, Status::Ok);
    let res = first.post(
        "/admin/accounts",
        &[
            ("display_name", "Crony"),
            ("email", "crony@example.gov"),
            ("role", "officer"),
            ("agency", "Nowhere"),
        ],
    );
    assert_eq!(res.status, Status::SeeOther);
    assert!(app
        .mailed_link("crony@example.gov", "/invitations/")
        .is_none());
    // The second administrator sees the request to disable it; it decides nothing about its own account
    // (a third administrator, or the operator's CLI in an incident, does). Until then nothing changes.
    let rid = pending_request(&app, &second_id);
    assert!(second
        .get("/admin/approvals")
        .body
        .contains("Disable (taking over)"));
    for decision in ["approve", "refuse"] {
        assert_eq!(
            second
                .post(&format!("/admin/requests/{rid}"), &[("decision", decision)])
                .status,
            Status::Conflict
        );
    }
    assert_eq!(
        first
            .post(
                &format!("/admin/requests/{rid}"),
                &[("decision", "approve")]
            )
            .status,
        Status::Conflict,
        "nor does the administrator who asked"
    );
    assert!(!admin_user(&app, "second@example.gov").disabled);

    // Disabling an officer takes effect at once (it removes privilege); enabling it again waits.
    app.login_as(Role::Officer, "off@example.gov", None);
    let off = admin_user(&app, "off@example.gov").id;
    first.post(
        &format!("/admin/accounts/{off}/disable"),
        &[("reason", "left"), ("confirm", "true")],
    );
    assert!(admin_user(&app, "off@example.gov").disabled);
    first.post(&format!("/admin/accounts/{off}/enable"), &[]);
    assert!(
        admin_user(&app, "off@example.gov").disabled,
        "waits for a second administrator"
    );
    let rid = pending_request(&app, &off);
    assert_eq!(
        second
            .post(
                &format!("/admin/requests/{rid}"),
                &[("decision", "approve")]
            )
            .status,
        Status::SeeOther
    );
    assert!(!admin_user(&app, "off@example.gov").disabled);
    assert_eq!(app.audit_count("account.privilege_approve"), 1);
}

/// A reset mail held by a mail server on loopback that takes the connection and says nothing, so that no SMTP
/// exchange with it can finish until the test lets go: the portal (configured for that server), the server's end
/// of the connection, a receiver told when the portal's side closes (a finished exchange, given up on), and the
/// server's thread.
fn reset_mail_held_by_a_silent_server() -> (
    TestApp,
    std::net::TcpStream,
    std::sync::mpsc::Receiver<()>,
    std::thread::JoinHandle<()>,
) {
    use std::io::Read;
    use std::net::TcpListener;
    use std::sync::mpsc;
    use std::time::Duration;
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let (accepted_tx, accepted) = mpsc::channel();
    let (closed_tx, closed) = mpsc::channel();
    let server = std::thread::spawn(move || {
        let (mut conn, _) = listener.accept().unwrap();
        accepted_tx.send(conn.try_clone().unwrap()).unwrap();
        let _ = conn.read(&mut [0u8; 64]);
        let _ = closed_tx.send(());
    });
    let app = TestApp::with(|f| {
        f.merge(("smtp_host", "127.0.0.1"))
            .merge(("smtp_port", port))
            .merge(("smtp_security", "none"))
            .merge(("mail_from", "PCII Portal <pcii@portal.test>"))
    });
    app.create_user(Role::Submitter, "sam@acme.example", Some("Acme"));
    let res = app
        .browser()
        .post("/password/forgot", &[("email", "sam@acme.example")]);
    assert_eq!(res.status, Status::SeeOther);
    // The mail goes to the server.
    let held = accepted
        .recv_timeout(Duration::from_secs(15))
        .expect("the portal hands the reset mail to the mail server");
    (app, held, closed, server)
}

#[test]
fn a_reset_request_is_answered_while_its_mail_is_still_with_the_mail_server() {
    use std::net::Shutdown;
    use std::time::Duration;
    let (_app, held, closed, server) = reset_mail_held_by_a_silent_server();
    // The answer did not wait for the exchange: the portal is still waiting on the server.
    assert!(
        closed.recv_timeout(Duration::from_millis(500)).is_err(),
        "the request waited for the SMTP exchange to end"
    );
    held.shutdown(Shutdown::Both).unwrap();
    server.join().unwrap();
}

#[test]
fn a_shutdown_lets_a_reset_mail_under_way_finish() {
    use std::net::Shutdown;
    use std::time::Duration;
    // The server hangs up a moment after the portal begins to shut down: the exchange under way ends (failed) only
    // then.
    let (app, held, _closed, server) = reset_mail_held_by_a_silent_server();
    let mailer = app.state().mailer.clone();
    assert!(
        !mailer.wait_for_detached(Duration::ZERO),
        "the mail is under way"
    );
    // Later than the second the local client's runtime gives blocking work when it stops, sooner than the
    // `grace` + `mercy` (5 s) Rocket lets a shutdown fairing take.
    let hang_up = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(2500));
        held.shutdown(Shutdown::Both).unwrap();
    });
    // Shutting down runs the shutdown fairings; when it returns, no mail is left under way.
    let TestApp { client, dir, .. } = app;
    drop(client.terminate());
    assert!(
        mailer.wait_for_detached(Duration::ZERO),
        "the shutdown ended while the reset mail was still being sent"
    );
    hang_up.join().unwrap();
    server.join().unwrap();
    drop(dir);
}

/// Whether the account with this address has any second factor (authenticator app, passkey, recovery codes).
fn factor_rows(app: &TestApp, email: &str) -> i64 {
    use diesel::prelude::*;
    use pcii_portal::db::schema::{recovery_codes, totp_factors};
    let id = app.user_id(email);
    app.with_conn(|c| {
        let apps: i64 = totp_factors::table
            .filter(totp_factors::user_id.eq(&id))
            .count()
            .get_result(c)
            .unwrap();
        let codes: i64 = recovery_codes::table
            .filter(recovery_codes::user_id.eq(&id))
            .count()
            .get_result(c)
            .unwrap();
        apps + codes
    })
}

#[test]
fn a_squatted_registration_sets_up_no_factor_and_the_owners_reset_clears_any() {
    let app = TestApp::new();
    // A stranger registers the victim's address (never confirmed): it cannot sign in with it, so it can set up
    // no factor.
    let mut squatter = app.browser();
    assert_eq!(
        register(&mut squatter, "victim@acme.example", "Squat Co").status,
        Status::SeeOther
    );
    assert_eq!(
        squatter.login("victim@acme.example", PASSWORD),
        Status::Unauthorized
    );
    let page = squatter.get("/account/security/totp");
    assert_eq!(page.status, Status::Unauthorized, "{}", page.body);
    assert_eq!(factor_rows(&app, "victim@acme.example"), 0);

    // Had one been set up anyway (an account from before this rule), the owner's reset, which proves the
    // address for the first time, removes it: the owner signs in with the password alone.
    app.enrol_authenticator(&app.user_id("victim@acme.example"));
    assert!(factor_rows(&app, "victim@acme.example") > 0);
    let mut owner = app.browser();
    owner.post("/password/forgot", &[("email", "victim@acme.example")]);
    let link = app
        .mailed_link("victim@acme.example", "/password/reset/")
        .unwrap();
    let ok = owner.post(&link, &[("new_password", "the owner's own new passphrase")]);
    assert_eq!(ok.status, Status::SeeOther, "{}", ok.body);
    assert_eq!(factor_rows(&app, "victim@acme.example"), 0);
    assert_eq!(
        owner.login("victim@acme.example", "the owner's own new passphrase"),
        Status::SeeOther
    );
    assert_eq!(owner.get("/account/security").status, Status::Ok);
    // The squatter never signed in.
    assert_ne!(squatter.get("/account").status, Status::Ok);
}

#[test]
fn changing_the_password_voids_a_reset_link_asked_for_earlier() {
    let app = TestApp::new();
    let mut sam = app.login_as(Role::Submitter, "sam@acme.example", Some("Acme"));
    app.browser()
        .post("/password/forgot", &[("email", "sam@acme.example")]);
    let link = app
        .mailed_link("sam@acme.example", "/password/reset/")
        .unwrap();
    let page = sam.post(
        "/account/password",
        &[
            ("current_password", PASSWORD),
            ("new_password", "a fresh passphrase of sam's own"),
        ],
    );
    assert_eq!(page.status, Status::SeeOther, "{}", page.body);
    let page = app
        .browser()
        .post(&link, &[("new_password", "someone else's passphrase now")]);
    assert_eq!(page.status, Status::Gone, "{}", page.body);
    assert_eq!(
        app.browser()
            .login("sam@acme.example", "a fresh passphrase of sam's own"),
        Status::SeeOther
    );
}

/// A reset link mailed before the account was disabled sets no password, then or after the account is enabled again.
#[test]
fn disabling_an_account_voids_its_reset_link() {
    use pcii_portal::audit::log::Actor;
    use pcii_portal::auth::accounts::{self, AccountChange};
    let app = TestApp::new();
    app.login_as(Role::Submitter, "sam@acme.example", Some("Acme"));
    let id = app.user_id("sam@acme.example");
    app.browser()
        .post("/password/forgot", &[("email", "sam@acme.example")]);
    let link = app
        .mailed_link("sam@acme.example", "/password/reset/")
        .unwrap();
    let state = app.state();
    let change = |change| {
        accounts::change_account(
            &mut state.db.get().unwrap(),
            &state.audit,
            &Actor::cli(),
            &id,
            change,
        )
        .unwrap()
    };
    change(AccountChange::Disable {
        reason: "left the company".into(),
    });
    // While disabled, and once enabled again, the link sets no password.
    for _ in 0..2 {
        let page = app
            .browser()
            .post(&link, &[("new_password", "someone else's passphrase now")]);
        assert_eq!(page.status, Status::Gone, "{}", page.body);
        change(AccountChange::Enable);
    }
    assert_eq!(
        app.browser().login("sam@acme.example", PASSWORD),
        Status::SeeOther
    );
}

/// Until its address is confirmed, an account's name is whatever its registrant typed: a reset mail, which goes to
/// the address's real owner, does not greet them with it.
#[test]
fn a_reset_mail_greets_by_name_only_a_confirmed_address() {
    let app = TestApp::new();
    let mut squatter = app.browser();
    let res = squatter.post(
        "/register",
        &[
            ("display_name", "Call 555-0100 for support"),
            ("organisation", "Squat Co"),
            ("email", "victim@acme.example"),
            ("password", PASSWORD),
        ],
    );
    assert_eq!(res.status, Status::SeeOther, "{}", res.body);
    app.create_user(Role::Submitter, "sam@acme.example", Some("Acme"));
    for email in ["victim@acme.example", "sam@acme.example"] {
        app.browser().post("/password/forgot", &[("email", email)]);
    }
    let mails = app.outbox();
    let reset_to = |to: &str| {
        mails
            .iter()
            .rev()
            .find(|m| {
                m.to_lowercase().contains(&format!("to: {to}")) && m.contains("/password/reset/")
            })
            .cloned()
            .unwrap_or_else(|| panic!("no reset mail to {to}"))
    };
    let victim = reset_to("victim@acme.example");
    assert!(!victim.contains("555-0100"), "{victim}");
    assert!(victim.contains("Hello,"), "{victim}");
    // A confirmed account is greeted by its name (a positive control for the check above).
    let name = app.with_conn(|c| {
        pcii_portal::models::account::find(c, &app.user_id("sam@acme.example"))
            .unwrap()
            .display_name
    });
    assert!(reset_to("sam@acme.example").contains(&format!("Hello {name},")));
}

/// Wrong current passwords sent at once to the password change, with the right one among them: the right one may
/// change the password only if it was counted before the wrong ones locked the form, never after.
#[test]
fn the_right_password_among_parallel_guesses_changes_nothing_once_the_form_is_locked() {
    use pcii_portal::audit::log::Outcome;
    use pcii_portal::auth::login::{self, PasswordChange};
    use pcii_portal::auth::throttle::Policy;

    let app = TestApp::new();
    let id = app.create_user(Role::Submitter, "ann@acme.example", Some("Acme"));
    let state = app.state();
    let user = app.with_conn(|c| account::find(c, &id).unwrap());
    let policy = Policy::current_password(&state.settings);
    let limit = usize::try_from(policy.max_failures).unwrap();
    // Every guess within the checks a person may make in an hour, so that the race is with the lock only.
    let checks = usize::try_from(Policy::CURRENT_PASSWORD_CHECKS.max_failures).unwrap();
    assert!(
        limit < checks - 1,
        "the lock is reached before the hourly checks"
    );
    let mut guesses: Vec<String> = (0..checks - 1)
        .map(|n| format!("not the password {n}"))
        .collect();
    // The right one last, so that it is likely to reach its transaction after the lock.
    guesses.push(PASSWORD.to_string());
    let answers = common::all_at_once(&guesses, |guess| {
        login::change_password(
            &state.db,
            &state.audit,
            &state.hasher,
            &state.throttle_key,
            policy,
            &Actor::cli(),
            &user,
            "no-session",
            guess,
            "a new and rather long passphrase 7",
            state.clock.now(),
        )
        .unwrap()
    });
    // In the order they were recorded, each must be what the throttle allowed at that point: a wrong password
    // checked only while fewer than the limit had failed, the change likewise (it clears the count).
    let recorded: Vec<(String, Option<String>)> = app.with_conn(|c| {
        use diesel::prelude::*;
        use pcii_portal::db::schema::audit_entries;
        audit_entries::table
            .filter(audit_entries::action.eq("account.password"))
            .order(audit_entries::seq.asc())
            .select((audit_entries::outcome, audit_entries::reason))
            .load(c)
            .unwrap()
    });
    assert_eq!(recorded.len(), guesses.len());
    let mut failed = 0;
    for (outcome, reason) in &recorded {
        let reason = reason.as_deref().unwrap_or_default();
        if outcome == Outcome::Success.as_str() {
            assert!(
                failed < limit,
                "changed after {failed} failures had locked the form: {recorded:?}"
            );
            failed = 0;
        } else if reason == "throttled" {
            assert!(failed >= limit, "refused before the limit: {recorded:?}");
        } else if reason == login::TOO_MANY_CHECKS {
            // More checks at once than a person makes in an hour: refused unchecked, whenever it comes.
        } else {
            assert!(
                failed < limit,
                "a guess checked after the lock: {recorded:?}"
            );
            failed += 1;
        }
    }
    let changed = answers
        .iter()
        .any(|a| matches!(a, PasswordChange::Changed { .. }));
    assert_eq!(
        changed,
        recorded.iter().any(|(o, _)| o == Outcome::Success.as_str())
    );
    if !changed {
        let mut b = app.browser();
        assert_eq!(b.login("ann@acme.example", PASSWORD), Status::SeeOther);
    }
}

/// The administrators' approvals page lists the 200 oldest staff invitations waiting for a second administrator; its
/// caption counts them all, and a note says when not all are listed.
#[test]
fn the_approvals_page_counts_every_waiting_invitation_and_says_when_it_lists_fewer() {
    use pcii_portal::models::invitation::{self, Approval, NewInvitation, AWAITING_APPROVAL};
    let app = TestApp::new();
    let mut admin = app.login_as(Role::Administrator, "admin@example.gov", None);
    let other = app.create_user(Role::Administrator, "other@example.gov", None);
    let now = app.now();
    let seed = |from: usize, to: usize| {
        app.with_conn(|c| {
            for i in from..to {
                invitation::insert(
                    c,
                    &NewInvitation {
                        id: &format!("seeded-{i:03}"),
                        token_hash: None,
                        email: &format!("officer{i}@example.gov"),
                        display_name: &format!("Officer {i}"),
                        role: Role::Officer,
                        organisation_id: None,
                        new_organisation: None,
                        org_admin: false,
                        agency: Some("CISA PCII Program Office"),
                        invited_by: Some(&other),
                        approval: Some(Approval::SecondAdministrator.as_str()),
                        state: AWAITING_APPROVAL,
                        created_at: now - 10_000 + i as i64,
                        expires_at: now + 7 * 86_400,
                    },
                )
                .unwrap();
            }
        })
    };
    seed(0, 200);
    let page = admin.get("/admin/approvals");
    assert!(
        page.body.contains("200 staff invitations pending"),
        "{}",
        page.body
    );
    assert!(!page.body.contains("data-capped"));
    seed(200, 203);
    let page = admin.get("/admin/approvals");
    assert!(page.body.contains("203 staff invitations pending"));
    assert!(page
        .body
        .contains("203 in all: the 200 oldest are listed here."));
    // The oldest are the ones listed for approval; the open invitations (the same ones, as an administrator made
    // them) list the newest, and say so too.
    let (waiting, rest) = page
        .body
        .split_once("Changes of role or status waiting")
        .unwrap();
    assert!(waiting.contains("officer0@example.gov"));
    assert!(!waiting.contains("officer202@example.gov"));
    assert!(rest.contains("203 in all: the 200 newest are listed here."));
}
