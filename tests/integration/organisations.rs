//! Identity: nobody becomes a company's member by saying so. Organisation administrators invite, remove and
//! hand their role on; PCII officers verify organisations, merge duplicates and approve administrators'
//! invitations into organisations that have no administrator of their own.

use crate::common::{self, complete_fields, Browser, TestApp, PASSWORD};
use diesel::prelude::*;
use rocket::http::Status;

use pcii_portal::audit::log::Actor;
use pcii_portal::auth::accounts::Membership;
use pcii_portal::auth::invitations::{self, InvitationRequest, Invited};
use pcii_portal::db::schema::{
    audit_entries, invitations as inv_t, merge_proposals, organisations, users,
};
use pcii_portal::domain::Role;
use pcii_portal::models::account;

// ---- helpers ----

fn location(page: &common::Page) -> String {
    page.header("Location").expect("a redirect").to_string()
}

/// Submits one complete submission; returns its id.
fn submit(b: &mut Browser<'_>, narrative: &str) -> String {
    let page = b.post_multipart("/submissions", &complete_fields(narrative, "submit"));
    assert_eq!(page.status, Status::SeeOther, "{}", page.body);
    location(&page)
        .trim_start_matches("/submissions/")
        .split('/')
        .next()
        .unwrap()
        .to_string()
}

/// The invitation token in the newest message, which must be addressed to `to`.
fn newest_invitation_token(app: &TestApp, to: &str) -> String {
    let mails = app.outbox();
    let text = mails.last().expect("a message in the outbox");
    assert!(text.contains(to), "the newest message is for {to}");
    let at = text.find("/invitations/").expect("an invitation link") + "/invitations/".len();
    text[at..]
        .chars()
        .take_while(|c| c.is_ascii_alphanumeric())
        .collect()
}

fn invitation_id(app: &TestApp, email: &str) -> String {
    app.with_conn(|c| {
        inv_t::table
            .filter(inv_t::email.eq(email))
            .order(inv_t::created_at.desc())
            .select(inv_t::id)
            .first(c)
            .unwrap()
    })
}

/// An organisation administrator invites `email` from /organisation; the link comes back.
fn invite(app: &TestApp, admin: &mut Browser<'_>, email: &str, name: &str) -> String {
    let page = admin.post(
        "/organisation/invitations",
        &[("email", email), ("display_name", name)],
    );
    assert_eq!(page.status, Status::SeeOther, "{}", page.body);
    assert_eq!(location(&page), "/organisation");
    newest_invitation_token(app, email)
}

/// Follows an emailed link as a new visitor and chooses a password.
fn accept(app: &TestApp, token: &str, name: &str) -> Status {
    let mut visitor = app.browser();
    let uri = format!("/invitations/{token}");
    let page = visitor.get(&uri);
    if page.status != Status::Ok {
        return page.status;
    }
    visitor
        .post(&uri, &[("display_name", name), ("password", PASSWORD)])
        .status
}

fn signed_out(page: &common::Page) -> bool {
    page.status == Status::Unauthorized
        || (page.status == Status::SeeOther
            && page
                .header("Location")
                .is_some_and(|l| l.starts_with("/login")))
}

// ---- organisation administrators ----

/// An invitation into an organisation names who invited and whether the Program Office has verified the
/// organisation (anyone may register one under a real company's name), in the mail and on the acceptance page.
#[test]
fn an_invitation_says_who_invited_and_whether_the_office_verified_the_organisation() {
    let app = TestApp::new();
    let mut admin = app.login_as(Role::Submitter, "a@acme.example", Some("Acme"));
    let token = invite(&app, &mut admin, "new@acme.example", "New Hire");
    let mail = app.outbox().pop().unwrap();
    // Said before the organisation's name (which its registrant chose and could make claim otherwise).
    let warning = mail
        .find("This organisation has NOT been verified by the PCII Program Office")
        .unwrap_or_else(|| panic!("{mail}"));
    assert!(
        warning < mail.find("as a member of \"Acme\"").unwrap(),
        "{mail}"
    );
    assert!(
        mail.contains("You were invited by Test a@acme.example <a@acme.example>."),
        "{mail}"
    );
    let page = app.browser().get(&format!("/invitations/{token}"));
    assert!(page.body.contains("has NOT been verified"), "{}", page.body);
    assert!(
        page.body.contains("&lt;a@acme.example&gt;"),
        "{}",
        page.body
    );
    // Verified by an officer, the next invitation says so.
    let acme = app.organisation_id("Acme").unwrap();
    let mut officer = app.login_as(Role::Officer, "o@example.gov", None);
    let page = officer.post(
        &format!("/officer/organisations/{acme}/verify"),
        &[("method", "Called the company's published number")],
    );
    assert_eq!(page.status, Status::SeeOther, "{}", page.body);
    let token = invite(&app, &mut admin, "next@acme.example", "Next Hire");
    let page = app.browser().get(&format!("/invitations/{token}"));
    assert!(
        page.body
            .contains("This organisation has been verified by the PCII Program Office."),
        "{}",
        page.body
    );
    assert!(!page.body.contains("NOT been verified"));
}

#[test]
fn an_invited_colleague_sees_the_submissions_until_removed_then_is_signed_out_and_locked_out() {
    let app = TestApp::new();
    let mut admin = app.login_as(Role::Submitter, "a@acme.example", Some("Acme"));
    let sub = submit(&mut admin, "Acme's report");

    let token = invite(&app, &mut admin, "col@acme.example", "Col League");
    assert_eq!(accept(&app, &token, "Col League"), Status::SeeOther);
    let mut colleague = app.browser();
    assert_eq!(
        colleague.login("col@acme.example", PASSWORD),
        Status::SeeOther
    );
    assert_eq!(
        colleague.get(&format!("/submissions/{sub}")).status,
        Status::Ok
    );
    // The administrator sees its new member.
    assert!(admin.get("/organisation").body.contains("col@acme.example"));

    let col_id = app.user_id("col@acme.example");
    // Without the confirmation box nothing happens.
    let page = admin.post(&format!("/organisation/members/{col_id}/remove"), &[]);
    assert_eq!(page.status, Status::UnprocessableEntity);
    assert_eq!(
        colleague.get(&format!("/submissions/{sub}")).status,
        Status::Ok
    );
    let page = admin.post(
        &format!("/organisation/members/{col_id}/remove"),
        &[("confirm", "yes")],
    );
    assert_eq!(page.status, Status::SeeOther, "{}", page.body);

    // Its session ended at once; it cannot sign in again.
    let page = colleague.get(&format!("/submissions/{sub}"));
    assert!(signed_out(&page), "status {}", page.status);
    let mut again = app.browser();
    assert_ne!(again.login("col@acme.example", PASSWORD), Status::SeeOther);
    let (org, org_admin, disabled): (Option<String>, bool, bool) = app.with_conn(|c| {
        users::table
            .find(&col_id)
            .select((users::organisation_id, users::org_admin, users::disabled))
            .first(c)
            .unwrap()
    });
    assert_eq!((org, org_admin, disabled), (None, false, true));
    let removed: Vec<Option<String>> = app.with_conn(|c| {
        audit_entries::table
            .filter(audit_entries::action.eq("organisation.member_remove"))
            .select(audit_entries::object_id)
            .load(c)
            .unwrap()
    });
    assert_eq!(removed, vec![Some(col_id.clone())]);

    // Invited into another company later, the same person sees none of A's submissions: 404.
    let mut globex = app.login_as(Role::Submitter, "g@globex.example", Some("Globex"));
    let token = invite(&app, &mut globex, "col@acme.example", "Col League");
    assert_eq!(accept(&app, &token, "Col League"), Status::SeeOther);
    let mut col = app.browser();
    assert_eq!(col.login("col@acme.example", PASSWORD), Status::SeeOther);
    assert_eq!(
        col.get(&format!("/submissions/{sub}")).status,
        Status::NotFound
    );
    assert_eq!(
        col.get(&format!("/submissions/{sub}/receipt")).status,
        Status::NotFound
    );
}

/// An account the Program Office disabled is not enabled again by its organisation: removed and invited back, its
/// acceptance is refused and it stays disabled. Once an administrator enables it, an invitation brings it back.
#[test]
fn a_member_the_program_office_disabled_cannot_be_removed_and_invited_back_into_use() {
    use pcii_portal::auth::accounts::{change_account, AccountChange};
    let app = TestApp::new();
    let mut admin = app.login_as(Role::Submitter, "a@acme.example", Some("Acme"));
    let sub = submit(&mut admin, "Acme's report");
    let token = invite(&app, &mut admin, "col@acme.example", "Col League");
    assert_eq!(accept(&app, &token, "Col League"), Status::SeeOther);
    let col_id = app.user_id("col@acme.example");
    let state = app.state();
    let set = |change| {
        app.with_conn(|c| change_account(c, &state.audit, &Actor::cli(), &col_id, change))
            .unwrap()
    };
    set(AccountChange::Disable {
        reason: "incident: credentials seen on a paste site".into(),
    });
    let page = admin.post(
        &format!("/organisation/members/{col_id}/remove"),
        &[("confirm", "yes")],
    );
    assert_eq!(page.status, Status::SeeOther, "{}", page.body);
    let token = invite(&app, &mut admin, "col@acme.example", "Col League");
    assert_eq!(accept(&app, &token, "Col League"), Status::Conflict);
    let disabled: bool = app.with_conn(|c| {
        users::table
            .find(&col_id)
            .select(users::disabled)
            .first(c)
            .unwrap()
    });
    assert!(disabled);
    let mut col = app.browser();
    assert_ne!(col.login("col@acme.example", PASSWORD), Status::SeeOther);

    // The Program Office lifts the suspension; the organisation may then invite the person back.
    set(AccountChange::Enable);
    assert_eq!(accept(&app, &token, "Col League"), Status::SeeOther);
    assert_eq!(col.login("col@acme.example", PASSWORD), Status::SeeOther);
    assert_eq!(col.get(&format!("/submissions/{sub}")).status, Status::Ok);
}

#[test]
fn an_invitation_link_works_once_and_a_withdrawn_one_answers_410() {
    let app = TestApp::new();
    let mut admin = app.login_as(Role::Submitter, "a@acme.example", Some("Acme"));

    let token = invite(&app, &mut admin, "once@acme.example", "Once");
    assert_eq!(accept(&app, &token, "Once"), Status::SeeOther);
    let mut visitor = app.browser();
    let uri = format!("/invitations/{token}");
    assert_eq!(visitor.get(&uri).status, Status::Gone);
    assert_eq!(
        visitor
            .post(&uri, &[("display_name", "Twice"), ("password", PASSWORD)])
            .status,
        Status::Gone
    );

    let token = invite(&app, &mut admin, "later@acme.example", "Later");
    let id = invitation_id(&app, "later@acme.example");
    assert!(admin
        .get("/organisation")
        .body
        .contains("later@acme.example"));
    let page = admin.post(&format!("/organisation/invitations/{id}/revoke"), &[]);
    assert_eq!(page.status, Status::SeeOther, "{}", page.body);
    assert_eq!(
        app.browser().get(&format!("/invitations/{token}")).status,
        Status::Gone
    );
    assert_eq!(accept(&app, &token, "Later"), Status::Gone);
    assert_eq!(app.audit_count("invitation.revoke"), 1);
}

#[test]
fn another_organisations_admin_gets_404_and_a_plain_member_403() {
    let app = TestApp::new();
    let mut admin = app.login_as(Role::Submitter, "a@acme.example", Some("Acme"));
    invite(&app, &mut admin, "pending@acme.example", "Pending");
    let inv = invitation_id(&app, "pending@acme.example");
    let mut member = app.login_as(Role::Submitter, "m@acme.example", Some("Acme"));
    let member_id = app.user_id("m@acme.example");
    let admin_id = app.user_id("a@acme.example");

    let mut other = app.login_as(Role::Submitter, "b@globex.example", Some("Globex"));
    assert_eq!(other.get("/organisation").status, Status::Ok);
    for id in [member_id.as_str(), admin_id.as_str(), "no-such-id"] {
        for (uri, fields) in [
            (
                format!("/organisation/members/{id}/remove"),
                vec![("confirm", "yes")],
            ),
            (format!("/organisation/members/{id}/admin"), vec![]),
            (format!("/organisation/members/{id}/admin/revoke"), vec![]),
        ] {
            assert_eq!(
                other.post(&uri, &fields).status,
                Status::NotFound,
                "POST {uri}"
            );
        }
    }
    for id in [inv.as_str(), "no-such-id"] {
        for action in ["revoke", "approve", "refuse"] {
            let uri = format!("/organisation/invitations/{id}/{action}");
            assert_eq!(other.post(&uri, &[]).status, Status::NotFound, "POST {uri}");
        }
    }
    // Each reach for Acme's invitation is recorded against the asker (an unknown id has nothing to name).
    let refusals: Vec<(Option<String>, Option<String>)> = app.with_conn(|c| {
        audit_entries::table
            .filter(audit_entries::action.eq("access.refused"))
            .filter(audit_entries::object_kind.eq("invitation"))
            .select((audit_entries::object_id, audit_entries::actor_id))
            .load(c)
            .unwrap()
    });
    let other_id = app.user_id("b@globex.example");
    assert_eq!(
        refusals,
        vec![(Some(inv.clone()), Some(other_id.clone())); 3],
        "one entry per attempt"
    );
    // So is each reach for one of Acme's people: three acts on each of two accounts.
    let reached: Vec<(Option<String>, Option<String>)> = app.with_conn(|c| {
        audit_entries::table
            .filter(audit_entries::action.eq("access.refused"))
            .filter(audit_entries::object_kind.eq("account"))
            .order(audit_entries::seq)
            .select((audit_entries::object_id, audit_entries::actor_id))
            .load(c)
            .unwrap()
    });
    let mut expected = vec![(Some(member_id.clone()), Some(other_id.clone())); 3];
    expected.extend(vec![(Some(admin_id.clone()), Some(other_id)); 3]);
    assert_eq!(
        reached, expected,
        "one entry per attempt, none for an unknown id"
    );
    let page = other.get("/organisation");
    assert!(!page.body.contains("m@acme.example"));
    assert!(!page.body.contains("pending@acme.example"));

    // Nothing changed in Acme.
    let (org, disabled): (Option<String>, bool) = app.with_conn(|c| {
        users::table
            .find(&member_id)
            .select((users::organisation_id, users::disabled))
            .first(c)
            .unwrap()
    });
    assert_eq!(org, app.organisation_id("Acme"));
    assert!(!disabled);
    let state: String = app.with_conn(|c| {
        inv_t::table
            .find(&inv)
            .select(inv_t::state)
            .first(c)
            .unwrap()
    });
    assert_eq!(state, "sent");

    // A member that does not administer the organisation is refused its pages.
    assert_eq!(member.get("/organisation").status, Status::Forbidden);
    assert_eq!(
        member
            .post(
                "/organisation/invitations",
                &[("email", "x@acme.example"), ("display_name", "X")]
            )
            .status,
        Status::Forbidden
    );
}

#[test]
fn the_admin_role_is_handed_on_and_the_last_admin_cannot_step_down() {
    let app = TestApp::new();
    let mut admin = app.login_as(Role::Submitter, "a@acme.example", Some("Acme"));
    let mut member = app.login_as(Role::Submitter, "m@acme.example", Some("Acme"));
    let admin_id = app.user_id("a@acme.example");
    let member_id = app.user_id("m@acme.example");

    // Alone, the administrator cannot step down.
    let page = admin.post(
        &format!("/organisation/members/{admin_id}/admin/revoke"),
        &[],
    );
    assert!(
        page.status == Status::Conflict || page.status == Status::UnprocessableEntity,
        "status {}",
        page.status
    );
    assert!(
        page.body.contains("at least one administrator"),
        "{}",
        page.body
    );
    assert_eq!(admin.get("/organisation").status, Status::Ok);

    // It makes the member an administrator, then steps down.
    let page = admin.post(&format!("/organisation/members/{member_id}/admin"), &[]);
    assert_eq!(page.status, Status::SeeOther, "{}", page.body);
    assert_eq!(member.get("/organisation").status, Status::Ok);
    let page = admin.post(
        &format!("/organisation/members/{admin_id}/admin/revoke"),
        &[],
    );
    assert_eq!(page.status, Status::SeeOther, "{}", page.body);
    assert_eq!(admin.get("/organisation").status, Status::Forbidden);
    assert_eq!(app.audit_count("organisation.admin_grant"), 1);
    assert_eq!(app.audit_count("organisation.admin_revoke"), 1);

    // Now the member is the last one.
    let page = member.post(
        &format!("/organisation/members/{member_id}/admin/revoke"),
        &[],
    );
    assert!(
        page.status == Status::Conflict || page.status == Status::UnprocessableEntity,
        "status {}",
        page.status
    );
    assert_eq!(member.get("/organisation").status, Status::Ok);
    assert_eq!(app.audit_count("organisation.admin_revoke"), 1);
}

// ---- the Program Office ----

#[test]
fn an_officer_verifies_with_a_method_and_merges_a_duplicate_with_a_reason() {
    let app = TestApp::new();
    let mut a = app.login_as(Role::Submitter, "a@acme.example", Some("Acme"));
    let mut a2 = app.login_as(Role::Submitter, "a2@acme.example", Some("Acme"));
    let mut d = app.login_as(Role::Submitter, "d@acme-dup.example", Some("ACME Inc"));
    let a_sub = submit(&mut a, "the original's report");
    let d_sub = submit(&mut d, "the duplicate's report");
    let acme = app.organisation_id("Acme").unwrap();
    let dup = app.organisation_id("ACME Inc").unwrap();
    let mut officer = app.login_as(Role::Officer, "o@example.gov", None);

    let page = officer.get("/officer/organisations?q=acme");
    assert_eq!(page.status, Status::Ok);
    assert!(page.body.contains(&acme) && page.body.contains(&dup));
    assert_eq!(
        officer
            .get(&format!("/officer/organisations/{acme}"))
            .status,
        Status::Ok
    );

    // The officer's view of a submission says whether its organisation is verified.
    let before = officer.get(&format!("/officer/submissions/{a_sub}"));
    assert!(before.body.contains("Not verified"), "{}", before.body);

    // Verification needs its method.
    let uri = format!("/officer/organisations/{acme}/verify");
    assert_eq!(
        officer.post(&uri, &[("method", "  ")]).status,
        Status::UnprocessableEntity
    );
    let page = officer.post(
        &uri,
        &[("method", "called the listed phone number of the company")],
    );
    assert_eq!(page.status, Status::SeeOther, "{}", page.body);
    let (at, method): (Option<i64>, Option<String>) = app.with_conn(|c| {
        organisations::table
            .find(&acme)
            .select((
                organisations::verified_at,
                organisations::verification_method,
            ))
            .first(c)
            .unwrap()
    });
    assert!(at.is_some());
    assert_eq!(
        method.as_deref(),
        Some("called the listed phone number of the company")
    );
    assert_eq!(app.audit_count("organisation.verify"), 1);
    let after = officer.get(&format!("/officer/submissions/{a_sub}"));
    assert!(after.body.contains(">Verified<") && !after.body.contains("Not verified"));
    let page = officer.get("/officer/organisations?verified=yes");
    assert!(page.body.contains(&acme) && !page.body.contains(&dup));

    // A merge needs a reason, and never into itself.
    let uri = format!("/officer/organisations/{dup}/merge");
    assert_eq!(
        officer
            .post(&uri, &[("target", &acme), ("reason", "")])
            .status,
        Status::UnprocessableEntity
    );
    assert_eq!(
        officer
            .post(&uri, &[("target", &dup), ("reason", "same company")])
            .status,
        Status::UnprocessableEntity
    );
    let reason = "same company registered twice, confirmed by phone";
    // A merge cannot be undone and opens each side's submissions to the other: with a second factor older than
    // `step_up_minutes` it asks for it again, keeping what was typed, and merges nothing until it is given.
    app.advance(20 * 60);
    let page = officer.post(&uri, &[("target", &acme), ("reason", reason)]);
    assert_eq!(page.status, Status::Unauthorized, "{}", page.body);
    assert!(page.body.contains("Confirm it is you"), "{}", page.body);
    assert_eq!(app.audit_count("organisation.merge"), 0);
    let code = crate::common::totp_code(app.state(), "o@example.gov");
    let page = officer.post(
        &uri,
        &[
            ("target", &acme),
            ("reason", reason),
            ("factor_code", &code),
        ],
    );
    assert_eq!(page.status, Status::SeeOther, "{}", page.body);
    // That only proposed it: nothing moved, and one open proposal per duplicate.
    assert_eq!(app.audit_count("organisation.merge_propose"), 1);
    // Each company's administrator is told by email, with a link to answer and nothing of the proposal itself.
    for admin in ["a@acme.example", "d@acme-dup.example"] {
        assert_eq!(
            app.mailed_link(admin, "/organisation").as_deref(),
            Some("/organisation"),
            "{admin}"
        );
    }
    let told: Vec<String> = app
        .outbox()
        .into_iter()
        .filter(|m| m.contains("A merge of your organisation is proposed"))
        .collect();
    assert_eq!(told.len(), 2, "{told:?}");
    for m in &told {
        assert!(
            !m.contains(reason) && !m.contains("Acme") && !m.contains("ACME") && !m.contains("a2@"),
            "{m}"
        );
    }
    assert_eq!(app.pending_mail(), 0);
    assert_eq!(app.audit_count("organisation.merge"), 0);
    assert_eq!(
        d.get(&format!("/submissions/{a_sub}")).status,
        Status::NotFound
    );
    assert_eq!(
        officer
            .post(&uri, &[("target", &acme), ("reason", reason)])
            .status,
        Status::Conflict
    );
    assert_eq!(
        officer
            .post(
                &format!("/officer/organisations/{acme}/merge"),
                &[("target", &dup), ("reason", "the other way round")]
            )
            .status,
        Status::Conflict
    );
    let pid = open_proposal(&app, &dup);
    let page = officer.get(&format!("/officer/organisations/{dup}"));
    assert!(page
        .body
        .contains(&format!("merge-proposals/{pid}/withdraw")));

    // Each company's administrator accepts it (with a recent second factor, if it has one: these have none);
    // the second acceptance merges.
    let accept = format!("/organisation/merge-proposals/{pid}/accept");
    let page = d.post(&accept, &[]);
    assert_eq!(page.status, Status::SeeOther, "{}", page.body);
    assert_eq!(app.audit_count("organisation.merge_accept"), 1);
    assert_eq!(app.audit_count("organisation.merge"), 0);
    let page = a.post(&accept, &[]);
    assert_eq!(page.status, Status::SeeOther, "{}", page.body);
    assert_eq!(app.audit_count("organisation.merge_accept"), 2);
    assert_eq!(proposal_state(&app, &pid), "merged");

    // Not into a merged one, and not twice.
    assert_eq!(
        officer
            .post(
                &format!("/officer/organisations/{acme}/merge"),
                &[("target", &dup), ("reason", "back again")]
            )
            .status,
        Status::UnprocessableEntity
    );
    assert_eq!(
        officer
            .post(&uri, &[("target", &acme), ("reason", reason)])
            .status,
        Status::Conflict
    );

    // Both sides now see each other's submissions.
    assert_eq!(d.get(&format!("/submissions/{a_sub}")).status, Status::Ok);
    assert_eq!(a.get(&format!("/submissions/{d_sub}")).status, Status::Ok);
    assert_eq!(a2.get(&format!("/submissions/{d_sub}")).status, Status::Ok);
    // The duplicate's administrator keeps its role.
    assert_eq!(d.get("/organisation").status, Status::Ok);
    let merged_into: Option<String> = app.with_conn(|c| {
        organisations::table
            .find(&dup)
            .select(organisations::merged_into)
            .first(c)
            .unwrap()
    });
    assert_eq!(merged_into.as_deref(), Some(acme.as_str()));
    let page = officer.get(&format!("/officer/organisations/{dup}"));
    assert!(page.body.contains("Merged into"));

    let entries: Vec<(Option<String>, Option<String>)> = app.with_conn(|c| {
        audit_entries::table
            .filter(audit_entries::action.eq("organisation.merge"))
            .select((audit_entries::object_id, audit_entries::reason))
            .load(c)
            .unwrap()
    });
    assert_eq!(entries.len(), 1);
    let (object, why) = &entries[0];
    assert_eq!(object.as_deref(), Some(dup.as_str()));
    let why = why.clone().unwrap_or_default();
    assert!(
        why.contains(reason) && why.contains(&acme) && why.contains(&dup),
        "{why}"
    );
    // It names the proposing officer and both acceptors.
    for who in ["o@example.gov", "d@acme-dup.example", "a@acme.example"] {
        assert!(why.contains(&app.user_id(who)), "{who}: {why}");
    }
}

/// The open merge proposal of a duplicate.
fn open_proposal(app: &TestApp, duplicate: &str) -> String {
    app.with_conn(|c| {
        merge_proposals::table
            .filter(merge_proposals::duplicate_id.eq(duplicate))
            .filter(merge_proposals::state.eq("open"))
            .select(merge_proposals::id)
            .first(c)
            .unwrap()
    })
}

fn proposal_state(app: &TestApp, id: &str) -> String {
    app.with_conn(|c| {
        merge_proposals::table
            .find(id)
            .select(merge_proposals::state)
            .first(c)
            .unwrap()
    })
}

fn organisation_of(app: &TestApp, email: &str) -> Option<String> {
    let id = app.user_id(email);
    app.with_conn(|c| {
        users::table
            .find(&id)
            .select(users::organisation_id)
            .first(c)
            .unwrap()
    })
}

/// A company's acceptance of a merge lasts only while whoever gave it still administers the company: an
/// administrator who accepted, then was removed, can no longer bring the merge (and a shell company of its own, with
/// its shell account an administrator of the victim) in by having the shell accept later. The victim answers again.
#[test]
fn a_merge_acceptance_lapses_with_the_administrator_who_gave_it() {
    let app = TestApp::new();
    let mut victim = app.login_as(Role::Submitter, "v@victim.example", Some("Victim Power"));
    let mut colleague = app.login_as(Role::Submitter, "v2@victim.example", Some("Victim Power"));
    let mut officer = app.login_as(Role::Officer, "o@example.gov", None);
    let mut shell = app.login_as(Role::Submitter, "me@shell.example", Some("Shell Co"));
    let v_org = app.organisation_id("Victim Power").unwrap();
    let s_org = app.organisation_id("Shell Co").unwrap();
    let v_id = app.user_id("v@victim.example");
    let col_id = app.user_id("v2@victim.example");
    assert_eq!(
        victim
            .post(&format!("/organisation/members/{col_id}/admin"), &[])
            .status,
        Status::SeeOther
    );
    let page = officer.post(
        &format!("/officer/organisations/{s_org}/merge"),
        &[
            ("target", &v_org),
            ("reason", "the same company, I am told"),
        ],
    );
    assert_eq!(page.status, Status::SeeOther, "{}", page.body);
    let pid = open_proposal(&app, &s_org);
    let page = victim.post(&format!("/organisation/merge-proposals/{pid}/accept"), &[]);
    assert_eq!(page.status, Status::SeeOther, "{}", page.body);
    // The other administrator removes the one who accepted.
    let page = colleague.post(
        &format!("/organisation/members/{v_id}/remove"),
        &[("confirm", "yes")],
    );
    assert_eq!(page.status, Status::SeeOther, "{}", page.body);

    // The shell accepts: nothing is merged, the victim's acceptance is forgotten, and it answers again.
    let page = shell.post(&format!("/organisation/merge-proposals/{pid}/accept"), &[]);
    assert_eq!(page.status, Status::SeeOther, "{}", page.body);
    assert_eq!(proposal_state(&app, &pid), "open");
    assert_eq!(app.audit_count("organisation.merge"), 0);
    assert_eq!(
        organisation_of(&app, "me@shell.example").as_deref(),
        Some(s_org.as_str())
    );
    let page = colleague.post(&format!("/organisation/merge-proposals/{pid}/refuse"), &[]);
    assert_eq!(page.status, Status::SeeOther, "{}", page.body);
    assert_eq!(proposal_state(&app, &pid), "refused");
}

/// The attack the consent closes: an officer registers a shell company with an address it controls and merges it
/// into a victim company, which would make its shell account an administrator of the victim, reading its drafts and
/// submissions. Now the officer only proposes; nothing moves until each company's administrator accepts, the
/// victim's refusal closes the proposal, and a third company's administrator cannot even see it.
#[test]
fn an_officer_cannot_merge_a_shell_company_into_a_victim_without_both_administrators_consent() {
    let app = TestApp::new();
    let mut victim = app.login_as(Role::Submitter, "v@victim.example", Some("Victim Power"));
    let mut colleague = app.login_as(Role::Submitter, "v2@victim.example", Some("Victim Power"));
    let mut third = app.login_as(Role::Submitter, "t@third.example", Some("Third Co"));
    let mut officer = app.login_as(Role::Officer, "o@example.gov", None);
    // The shell: registered by the officer with an address it controls.
    let mut shell = app.login_as(Role::Submitter, "me@shell.example", Some("Shell Co"));
    let v_sub = submit(&mut victim, "the victim's report");
    let s_sub = submit(&mut shell, "the shell's report");
    let v_org = app.organisation_id("Victim Power").unwrap();
    let s_org = app.organisation_id("Shell Co").unwrap();
    let propose = |officer: &mut Browser<'_>| {
        let page = officer.post(
            &format!("/officer/organisations/{s_org}/merge"),
            &[("target", &v_org), ("reason", "same company, I am sure")],
        );
        assert_eq!(page.status, Status::SeeOther, "{}", page.body);
        assert_eq!(
            organisation_of(&app, "me@shell.example").as_deref(),
            Some(s_org.as_str()),
            "the officer's form alone moved the shell's account into the victim"
        );
        open_proposal(&app, &s_org)
    };
    let nothing_moved = |shell: &mut Browser<'_>| {
        assert_eq!(
            organisation_of(&app, "me@shell.example").as_deref(),
            Some(s_org.as_str())
        );
        assert_eq!(
            shell.get(&format!("/submissions/{v_sub}")).status,
            Status::NotFound
        );
        assert_eq!(app.audit_count("organisation.merge"), 0);
    };

    let pid = propose(&mut officer);
    assert_eq!(app.audit_count("organisation.merge_propose"), 1);
    nothing_moved(&mut shell);

    // Both administrators see it on their organisation page, in plain words, with the answers.
    let page = victim.get("/organisation");
    assert!(page.body.contains("Shell Co"), "{}", page.body);
    assert!(page.body.contains(&format!("merge-proposals/{pid}/accept")));
    assert!(page.body.contains(&format!("merge-proposals/{pid}/refuse")));
    assert!(
        page.body.contains("will see your organisation"),
        "{}",
        page.body
    );
    let page = shell.get("/organisation");
    assert!(page.body.contains("Victim Power"), "{}", page.body);
    // Another company's administrator sees nothing of it, and reaching for it answers 404, recorded.
    let page = third.get("/organisation");
    assert!(!page.body.contains(&pid) && !page.body.contains("Shell Co"));
    let refused = app.audit_count("access.refused");
    for action in ["accept", "refuse"] {
        let page = third.post(
            &format!("/organisation/merge-proposals/{pid}/{action}"),
            &[],
        );
        assert_eq!(page.status, Status::NotFound, "{action}: {}", page.body);
    }
    assert_eq!(app.audit_count("access.refused"), refused + 2);
    assert_eq!(
        third
            .post("/organisation/merge-proposals/no-such-id/accept", &[])
            .status,
        Status::NotFound
    );
    assert_eq!(app.audit_count("access.refused"), refused + 2);
    // A member who does not administer the victim answers nothing for it.
    assert_eq!(
        colleague
            .post(&format!("/organisation/merge-proposals/{pid}/accept"), &[])
            .status,
        Status::Forbidden
    );

    // The shell accepts its side: still nothing moves.
    let page = shell.post(&format!("/organisation/merge-proposals/{pid}/accept"), &[]);
    assert_eq!(page.status, Status::SeeOther, "{}", page.body);
    assert_eq!(app.audit_count("organisation.merge_accept"), 1);
    nothing_moved(&mut shell);
    assert_eq!(
        shell
            .post(&format!("/organisation/merge-proposals/{pid}/accept"), &[])
            .status,
        Status::Conflict
    );
    // The officer's page shows which side accepted.
    let page = officer.get(&format!("/officer/organisations/{v_org}"));
    assert!(page.body.contains("Accepted by"), "{}", page.body);
    assert!(page
        .body
        .contains(&format!("merge-proposals/{pid}/withdraw")));

    // The victim refuses: the proposal is closed and nothing moved.
    let page = victim.post(&format!("/organisation/merge-proposals/{pid}/refuse"), &[]);
    assert_eq!(page.status, Status::SeeOther, "{}", page.body);
    assert_eq!(proposal_state(&app, &pid), "refused");
    assert_eq!(app.audit_count("organisation.merge_refuse"), 1);
    assert_eq!(
        victim
            .post(&format!("/organisation/merge-proposals/{pid}/accept"), &[])
            .status,
        Status::Conflict
    );
    nothing_moved(&mut shell);
    assert!(!victim.get("/organisation").body.contains(&pid));

    // An officer withdraws a proposal: closed, nothing moved.
    let pid = propose(&mut officer);
    let page = officer.post(
        &format!("/officer/organisations/merge-proposals/{pid}/withdraw"),
        &[],
    );
    assert_eq!(page.status, Status::SeeOther, "{}", page.body);
    assert_eq!(proposal_state(&app, &pid), "withdrawn");
    assert_eq!(app.audit_count("organisation.merge_withdraw"), 1);
    assert_eq!(
        shell
            .post(&format!("/organisation/merge-proposals/{pid}/accept"), &[])
            .status,
        Status::Conflict
    );
    nothing_moved(&mut shell);

    // Only when both companies accept does the merge run, moving exactly what it always moved.
    let pid = propose(&mut officer);
    let page = victim.post(&format!("/organisation/merge-proposals/{pid}/accept"), &[]);
    assert_eq!(page.status, Status::SeeOther, "{}", page.body);
    nothing_moved(&mut shell);
    let page = shell.post(&format!("/organisation/merge-proposals/{pid}/accept"), &[]);
    assert_eq!(page.status, Status::SeeOther, "{}", page.body);
    assert_eq!(proposal_state(&app, &pid), "merged");
    assert_eq!(app.audit_count("organisation.merge"), 1);
    assert_eq!(
        organisation_of(&app, "me@shell.example").as_deref(),
        Some(v_org.as_str())
    );
    assert_eq!(
        shell.get(&format!("/submissions/{v_sub}")).status,
        Status::Ok
    );
    assert_eq!(
        victim.get(&format!("/submissions/{s_sub}")).status,
        Status::Ok
    );
    let moved: String = app.with_conn(|c| {
        pcii_portal::db::schema::submissions::table
            .find(&s_sub)
            .select(pcii_portal::db::schema::submissions::organisation_id)
            .first(c)
            .unwrap()
    });
    assert_eq!(moved, v_org);
    let why: Option<String> = app.with_conn(|c| {
        audit_entries::table
            .filter(audit_entries::action.eq("organisation.merge"))
            .select(audit_entries::reason)
            .first(c)
            .unwrap()
    });
    let why = why.unwrap_or_default();
    for who in ["o@example.gov", "v@victim.example", "me@shell.example"] {
        assert!(why.contains(&app.user_id(who)), "{who}: {why}");
    }
    assert!(why.contains("1 members, 1 submissions"), "{why}");
    // Nothing left to answer.
    assert!(!victim.get("/organisation").body.contains(&pid));
}

#[test]
fn an_administrators_invitation_into_an_organisation_waits_for_its_admin_or_an_officer() {
    let app = TestApp::new();
    let mut a = app.login_as(Role::Submitter, "a@acme.example", Some("Acme"));
    let acme = app.organisation_id("Acme").unwrap();
    let root_id = app.create_user(Role::Administrator, "root@example.gov", None);
    let orphan =
        app.with_conn(|c| account::create_organisation(c, "Orphan Utility", app.now()).unwrap());

    let admin_invites = |email: &str, org: &str| -> String {
        let state = app.state();
        let mut conn = state.db.get().unwrap();
        let root = account::find(&mut conn, &root_id).unwrap();
        let invited = invitations::invite(
            &mut conn,
            &state.audit,
            &state.mailer,
            &state.settings,
            &Actor::cli(),
            &root,
            InvitationRequest {
                email: email.into(),
                display_name: "Invited Person".into(),
                role: Role::Submitter,
                membership: Membership::Existing(org.into()),
                agency: None,
            },
            state.clock.now(),
        )
        .unwrap()
        .unwrap_or_else(|e| panic!("invitation refused: {e:?}"));
        match invited {
            Invited::AwaitingApproval { id, .. } => id,
            Invited::Sent { .. } => panic!("the link went out without approval"),
        }
    };

    // Into Acme: no mail until Acme's administrator approves.
    let before = app.outbox().len();
    let id = admin_invites("new@acme.example", &acme);
    assert_eq!(app.outbox().len(), before, "no mail before approval");
    let mut officer = app.login_as(Role::Officer, "o@example.gov", None);
    // Acme has its own administrator: the officer neither lists nor decides it.
    assert_eq!(officer.get("/officer/organisations").status, Status::Ok);
    assert!(!officer
        .get("/officer/organisations")
        .body
        .contains("new@acme.example"));
    assert_eq!(
        officer
            .post(
                &format!("/officer/organisations/invitations/{id}/approve"),
                &[]
            )
            .status,
        Status::NotFound
    );
    assert_eq!(app.outbox().len(), before);
    assert!(a.get("/organisation").body.contains("new@acme.example"));
    let page = a.post(&format!("/organisation/invitations/{id}/approve"), &[]);
    assert_eq!(page.status, Status::SeeOther, "{}", page.body);
    assert_eq!(app.outbox().len(), before + 1);
    let token = newest_invitation_token(&app, "new@acme.example");
    assert_eq!(accept(&app, &token, "New Person"), Status::SeeOther);
    let org: Option<String> = app.with_conn(|c| {
        users::table
            .filter(users::email.eq("new@acme.example"))
            .select(users::organisation_id)
            .first(c)
            .unwrap()
    });
    assert_eq!(org.as_deref(), Some(acme.as_str()));

    // An approval lapses with its approver's authority: approved, then the approver no longer administers Acme
    // (stepped down, removed): the link is refused and the invitation withdrawn.
    let id = admin_invites("later@acme.example", &acme);
    let page = a.post(&format!("/organisation/invitations/{id}/approve"), &[]);
    assert_eq!(page.status, Status::SeeOther, "{}", page.body);
    let token = newest_invitation_token(&app, "later@acme.example");
    let set_admin = |yes: bool| {
        app.with_conn(|c| {
            diesel::update(users::table.filter(users::email.eq("a@acme.example")))
                .set(users::org_admin.eq(yes))
                .execute(c)
                .unwrap()
        })
    };
    set_admin(false);
    assert_eq!(accept(&app, &token, "Later Person"), Status::Gone);
    set_admin(true);
    assert_eq!(
        accept(&app, &token, "Later Person"),
        Status::Gone,
        "withdrawn"
    );

    // Into an organisation without an administrator: an officer approves it; Acme's admin gets 404.
    let before = app.outbox().len();
    let id = admin_invites("first@orphan.example", &orphan);
    assert_eq!(app.outbox().len(), before);
    assert_eq!(
        a.post(&format!("/organisation/invitations/{id}/approve"), &[])
            .status,
        Status::NotFound
    );
    assert!(officer
        .get("/officer/organisations")
        .body
        .contains("first@orphan.example"));
    let page = officer.post(
        &format!("/officer/organisations/invitations/{id}/approve"),
        &[],
    );
    assert_eq!(page.status, Status::SeeOther, "{}", page.body);
    assert_eq!(app.outbox().len(), before + 1);
    let token = newest_invitation_token(&app, "first@orphan.example");
    assert_eq!(accept(&app, &token, "First Person"), Status::SeeOther);
    assert_eq!(app.audit_count("invitation.approve"), 3);
}

#[test]
fn a_member_leaves_of_its_own_accord_while_the_organisation_keeps_an_administrator_and_a_member() {
    let app = TestApp::new();
    let mut admin = app.login_as(Role::Submitter, "a@acme.example", Some("Acme"));
    let sub = submit(&mut admin, "Acme's report");
    const LEAVE: &str = "/account/leave-organisation";

    // Its last member cannot leave: someone must answer for its submissions. The account page says so instead of
    // offering the button.
    let page = admin.get("/account");
    assert!(page.body.contains("Leave Acme") && page.body.contains("last member"));
    assert!(!page.body.contains(&format!("action=\"{LEAVE}\"")));
    let page = admin.post(LEAVE, &[("confirm", "yes")]);
    assert_eq!(page.status, Status::Conflict, "{}", page.body);
    assert!(page.body.contains("last member"), "{}", page.body);

    let token = invite(&app, &mut admin, "col@acme.example", "Col League");
    assert_eq!(accept(&app, &token, "Col League"), Status::SeeOther);
    let mut colleague = app.browser();
    assert_eq!(
        colleague.login("col@acme.example", PASSWORD),
        Status::SeeOther
    );
    let page = colleague.get("/account");
    assert!(
        page.body.contains(&format!("action=\"{LEAVE}\"")) && page.body.contains("Leave Acme"),
        "{}",
        page.body
    );

    // Its only administrator cannot leave while a member remains: the role is handed on first.
    let page = admin.get("/account");
    assert!(page.body.contains("only administrator"));
    assert!(!page.body.contains(&format!("action=\"{LEAVE}\"")));
    let page = admin.post(LEAVE, &[("confirm", "yes")]);
    assert_eq!(page.status, Status::Conflict, "{}", page.body);
    assert!(page.body.contains("only administrator"), "{}", page.body);
    assert_eq!(admin.get(&format!("/submissions/{sub}")).status, Status::Ok);

    // Without the box ticked nothing happens.
    let page = colleague.post(LEAVE, &[]);
    assert_eq!(page.status, Status::UnprocessableEntity);
    assert_eq!(
        colleague.get(&format!("/submissions/{sub}")).status,
        Status::Ok
    );
    assert_eq!(app.audit_count("organisation.member_leave"), 0);

    // The colleague leaves: signed out everywhere, the account closed, audited; the submissions stay.
    let mut other_session = app.browser();
    assert_eq!(
        other_session.login("col@acme.example", PASSWORD),
        Status::SeeOther
    );
    let page = colleague.post(LEAVE, &[("confirm", "yes")]);
    assert_eq!(page.status, Status::SeeOther, "{}", page.body);
    assert_eq!(location(&page), "/login");
    let page = colleague.get("/login");
    assert!(page.body.contains("You have left Acme."), "{}", page.body);
    for b in [&mut colleague, &mut other_session] {
        let page = b.get(&format!("/submissions/{sub}"));
        assert!(signed_out(&page), "status {}", page.status);
    }
    assert_ne!(
        app.browser().login("col@acme.example", PASSWORD),
        Status::SeeOther
    );
    let col_id = app.user_id("col@acme.example");
    let (org, disabled): (Option<String>, bool) = app.with_conn(|c| {
        users::table
            .find(&col_id)
            .select((users::organisation_id, users::disabled))
            .first(c)
            .unwrap()
    });
    assert_eq!((org, disabled), (None, true));
    let left: Vec<Option<String>> = app.with_conn(|c| {
        audit_entries::table
            .filter(audit_entries::action.eq("organisation.member_leave"))
            .select(audit_entries::object_id)
            .load(c)
            .unwrap()
    });
    assert_eq!(left, vec![Some(col_id)]);
    assert_eq!(admin.get(&format!("/submissions/{sub}")).status, Status::Ok);

    // Staff belong to no submitting organisation: nothing to leave, and the page offers nothing.
    let mut officer = app.login_as(Role::Officer, "o@pcii.example.gov", None);
    assert!(!officer.get("/account").body.contains(LEAVE));
    assert_eq!(
        officer.post(LEAVE, &[("confirm", "yes")]).status,
        Status::Conflict
    );
}

// ---- staff invitations and staff accounts recorded against an organisation ----

/// An administrator invites through the admin pages (its second factor fresh from signing in); the invitation's id.
fn admin_invites_on_pages(
    app: &TestApp,
    root: &mut Browser<'_>,
    fields: &[(&str, &str)],
    email: &str,
) -> String {
    let mut all = vec![("email", email), ("display_name", "Invited Person")];
    all.extend_from_slice(fields);
    let page = root.post("/admin/accounts", &all);
    assert_eq!(page.status, Status::SeeOther, "{}", page.body);
    invitation_id(app, email)
}

fn invitation_state(app: &TestApp, id: &str) -> String {
    app.with_conn(|c| inv_t::table.find(id).select(inv_t::state).first(c).unwrap())
}

#[test]
fn a_companys_admin_neither_sees_nor_withdraws_an_officers_invitation_naming_the_company() {
    let app = TestApp::new();
    let mut a = app.login_as(Role::Submitter, "a@acme.example", Some("Acme"));
    let acme = app.organisation_id("Acme").unwrap();
    invite(&app, &mut a, "col@acme.example", "Col League");
    let mut root = app.login_as(Role::Administrator, "root@example.gov", None);
    // An officer invited with Acme recorded as its conflict of interest: the link goes out at once (one administrator).
    let page = root.post(
        "/admin/accounts",
        &[
            ("email", "otto@example.gov"),
            ("display_name", "Otto Officer"),
            ("role", "officer"),
            ("agency", "PCII Program Office"),
            ("organisation_id", &acme),
        ],
    );
    assert_eq!(page.status, Status::SeeOther, "{}", page.body);
    let otto = invitation_id(&app, "otto@example.gov");
    assert_eq!(invitation_state(&app, &otto), "sent");

    // Acme's page lists its own colleague's invitation, not the officer's.
    let page = a.get("/organisation");
    assert!(page.body.contains("col@acme.example"), "{}", page.body);
    assert!(
        !page.body.contains("otto@example.gov") && !page.body.contains("Otto Officer"),
        "{}",
        page.body
    );
    // Withdrawing it answers as an unknown id does, and changes nothing.
    let unknown = a.post("/organisation/invitations/no-such-id/revoke", &[]);
    assert_eq!(unknown.status, Status::NotFound);
    let page = a.post(&format!("/organisation/invitations/{otto}/revoke"), &[]);
    assert_eq!(page.status, unknown.status, "{}", page.body);
    assert_eq!(invitation_state(&app, &otto), "sent");
    assert_eq!(app.audit_count("invitation.revoke"), 0);

    // The administrators still withdraw it.
    let page = root.post(&format!("/admin/invitations/{otto}/revoke"), &[]);
    assert_eq!(page.status, Status::SeeOther, "{}", page.body);
    assert_eq!(invitation_state(&app, &otto), "revoked");
}

/// The administrators' list of open invitations shows the live ones: one past its expiry stays `sent` until
/// replaced, and must not crowd the others out of a list kept to 200.
#[test]
fn an_expired_invitation_leaves_the_administrators_open_list() {
    let app = TestApp::new();
    let mut root = app.login_as(Role::Administrator, "root@example.gov", None);
    admin_invites_on_pages(
        &app,
        &mut root,
        &[("role", "officer"), ("agency", "PCII Program Office")],
        "otto@example.gov",
    );
    assert!(root
        .get("/admin/approvals")
        .body
        .contains("otto@example.gov"));
    app.advance(8 * pcii_portal::time::DAY);
    assert_eq!(root.login("root@example.gov", PASSWORD), Status::SeeOther);
    let page = root.get("/admin/approvals");
    assert_eq!(page.status, Status::Ok);
    assert!(!page.body.contains("otto@example.gov"), "{}", page.body);
}

#[test]
fn an_officer_recorded_against_an_organisation_cannot_decide_an_invitation_into_it() {
    let app = TestApp::new();
    let orphan =
        app.with_conn(|c| account::create_organisation(c, "Orphan Utility", app.now()).unwrap());
    // An officer who belongs to the organisation (its conflict of interest), and one who does not.
    let mut conflicted = app.login_as(
        Role::Officer,
        "conflicted@example.gov",
        Some("Orphan Utility"),
    );
    let conflicted_id = app.user_id("conflicted@example.gov");
    let recorded: Option<String> = app.with_conn(|c| {
        users::table
            .find(&conflicted_id)
            .select(users::organisation_id)
            .first(c)
            .unwrap()
    });
    assert_eq!(recorded.as_deref(), Some(orphan.as_str()));
    let mut other = app.login_as(Role::Officer, "other@example.gov", None);
    let mut root = app.login_as(Role::Administrator, "root@example.gov", None);
    let id = admin_invites_on_pages(
        &app,
        &mut root,
        &[
            ("role", "submitter"),
            ("organisation_choice", "existing"),
            ("organisation_id", &orphan),
        ],
        "first@orphan.example",
    );
    assert_eq!(invitation_state(&app, &id), "awaiting_approval");
    let before = app.outbox().len();

    for action in ["approve", "refuse"] {
        let page = conflicted.post(
            &format!("/officer/organisations/invitations/{id}/{action}"),
            &[],
        );
        assert_eq!(page.status, Status::Forbidden, "{action}: {}", page.body);
        assert!(page.body.contains("another officer"), "{}", page.body);
    }
    assert_eq!(app.audit_count("conflict_of_interest.refused"), 2);
    assert_eq!(invitation_state(&app, &id), "awaiting_approval");
    assert_eq!(app.outbox().len(), before, "no link went out");
    assert_eq!(app.audit_count("invitation.approve"), 0);
    // Its pages offer it no decision on this organisation's invitations.
    let page = conflicted.get(&format!("/officer/organisations/{orphan}"));
    assert!(page.body.contains("first@orphan.example"), "{}", page.body);
    assert!(!page.body.contains(&format!("invitations/{id}/approve")));
    let page = conflicted.get("/officer/organisations");
    assert!(page.body.contains("first@orphan.example"), "{}", page.body);
    assert!(!page.body.contains(&format!("invitations/{id}/approve")));

    // Another officer decides it.
    let page = other.post(
        &format!("/officer/organisations/invitations/{id}/approve"),
        &[],
    );
    assert_eq!(page.status, Status::SeeOther, "{}", page.body);
    assert_eq!(app.outbox().len(), before + 1);
    assert_eq!(invitation_state(&app, &id), "sent");
}

fn org_admin_flag(app: &TestApp, id: &str) -> bool {
    app.with_conn(|c| {
        users::table
            .find(id)
            .select(users::org_admin)
            .first(c)
            .unwrap()
    })
}

#[test]
fn an_admin_moved_to_a_staff_role_no_longer_counts_as_its_organisations_admin() {
    let app = TestApp::new();
    let mut a = app.login_as(Role::Submitter, "a@acme.example", Some("Acme"));
    let mut b = app.login_as(Role::Submitter, "b@acme.example", Some("Acme"));
    let acme = app.organisation_id("Acme").unwrap();
    let a_id = app.user_id("a@acme.example");
    let b_id = app.user_id("b@acme.example");
    let page = a.post(&format!("/organisation/members/{b_id}/admin"), &[]);
    assert_eq!(page.status, Status::SeeOther, "{}", page.body);
    assert_eq!(b.get("/organisation").status, Status::Ok);

    // An administrator makes B an officer (Acme stays recorded as its conflict of interest): the role goes.
    let mut root = app.login_as(Role::Administrator, "root@example.gov", None);
    let page = root.post(
        &format!("/admin/accounts/{b_id}/role"),
        &[("role", "officer")],
    );
    assert_eq!(page.status, Status::SeeOther, "{}", page.body);
    assert!(!org_admin_flag(&app, &b_id));

    // A is Acme's last administrator and cannot step down.
    let step_down = format!("/organisation/members/{a_id}/admin/revoke");
    let page = a.post(&step_down, &[]);
    assert_eq!(page.status, Status::Conflict, "{}", page.body);
    assert!(
        page.body.contains("at least one administrator"),
        "{}",
        page.body
    );
    // Nor with the flag a staff account may still carry from before (its role is what counts).
    app.with_conn(|c| {
        diesel::update(users::table.find(&b_id))
            .set(users::org_admin.eq(true))
            .execute(c)
            .unwrap()
    });
    let page = a.post(&step_down, &[]);
    assert_eq!(page.status, Status::Conflict, "{}", page.body);
    assert_eq!(a.get("/organisation").status, Status::Ok);
    assert_eq!(app.audit_count("organisation.admin_revoke"), 0);

    // A moves to a staff role too: Acme has no administrator, so an officer decides invitations into it.
    let page = root.post(
        &format!("/admin/accounts/{a_id}/role"),
        &[("role", "auditor")],
    );
    assert_eq!(page.status, Status::SeeOther, "{}", page.body);
    assert!(!org_admin_flag(&app, &a_id));
    let id = admin_invites_on_pages(
        &app,
        &mut root,
        &[
            ("role", "submitter"),
            ("organisation_choice", "existing"),
            ("organisation_id", &acme),
        ],
        "new@acme.example",
    );
    let mut officer = app.login_as(Role::Officer, "o@example.gov", None);
    let page = officer.get(&format!("/officer/organisations/{acme}"));
    assert!(page.body.contains("new@acme.example"), "{}", page.body);
    assert!(
        page.body.contains("None with a confirmed address"),
        "{}",
        page.body
    );
    assert!(officer
        .get("/officer/organisations")
        .body
        .contains("new@acme.example"));
    let page = officer.post(
        &format!("/officer/organisations/invitations/{id}/approve"),
        &[],
    );
    assert_eq!(page.status, Status::SeeOther, "{}", page.body);
    assert_eq!(invitation_state(&app, &id), "sent");
}

/// A request that began before its member was removed (an upload trickled for minutes) carries the account as it
/// was. Whatever it does afterwards is decided on the account as it is now: it reads nothing and writes
/// nothing. (Driven through the library, as the local client cannot hold a request open across another.)
#[test]
fn a_request_begun_before_its_member_was_removed_neither_reads_nor_writes_afterwards() {
    use pcii_portal::workflow::{access, messages};
    let app = TestApp::new();
    let mut admin = app.login_as(Role::Submitter, "a@acme.example", Some("Acme"));
    let sub = submit(&mut admin, "Acme's report");
    app.login_as(Role::Submitter, "m@acme.example", Some("Acme"));
    let member_id = app.user_id("m@acme.example");
    let as_begun = app.with_conn(|c| account::find(c, &member_id).unwrap());
    let state = app.state();
    let actor = common::actor_of(&as_begun);
    let rt = rocket::tokio::runtime::Runtime::new().unwrap();
    let admitted = rt
        .block_on(access::admit(state, &as_begun, &actor, &sub))
        .expect("a member reads its company's submission");
    let sealing = rt
        .block_on(messages::sealing_key(state, &admitted))
        .unwrap();

    let page = admin.post(
        &format!("/organisation/members/{member_id}/remove"),
        &[("confirm", "yes")],
    );
    assert_eq!(page.status, Status::SeeOther, "{}", page.body);

    let messages_before = app.audit_count("message.sent");
    let sent = rt.block_on(messages::send(
        state,
        &admitted,
        &as_begun,
        &actor,
        messages::NewMessageRequest {
            body: "Written after the removal.".into(),
            request_for_information: false,
            files: Vec::new(),
            sealing,
            max_draft_bytes: u64::MAX,
            unverified: pcii_portal::workflow::intake::UnverifiedCaps::of(&state.settings),
            max_per_side: state.settings.max_messages_per_side,
        },
    ));
    assert!(
        matches!(sent, Err(pcii_portal::error::AppError::Refused(_))),
        "{sent:?}"
    );
    assert_eq!(app.audit_count("message.sent"), messages_before);
    let now = app.now();
    let verdict = app.with_conn(|c| access::decide(c, &as_begun, &sub, now).unwrap());
    assert!(verdict.is_err(), "read nothing: {verdict:?}");
}

// ---- an invitation carries its inviter's authority ----

/// `(outcome, reason)` of every entry of `action`, oldest first.
fn entries_of(app: &TestApp, action: &str) -> Vec<(String, Option<String>)> {
    app.with_conn(|c| {
        audit_entries::table
            .filter(audit_entries::action.eq(action))
            .order(audit_entries::seq.asc())
            .select((audit_entries::outcome, audit_entries::reason))
            .load(c)
            .unwrap()
    })
}

#[test]
fn an_invitation_lapses_with_its_inviters_authority_so_a_removed_admin_cannot_invite_itself_back() {
    let app = TestApp::new();
    let mut m = app.login_as(Role::Submitter, "m@acme.example", Some("Acme"));
    let mut b = app.login_as(Role::Submitter, "b@acme.example", Some("Acme"));
    let sub = submit(&mut m, "Acme's report");
    let (m_id, b_id) = (app.user_id("m@acme.example"), app.user_id("b@acme.example"));
    let page = m.post(&format!("/organisation/members/{b_id}/admin"), &[]);
    assert_eq!(page.status, Status::SeeOther, "{}", page.body);

    // M, about to be removed, invites a colleague's address and its own.
    let colleague = invite(&app, &mut m, "friend@elsewhere.example", "Friend");
    let own = invite(&app, &mut m, "m@acme.example", "M Again");
    // B removes M: M is signed out and disabled.
    let page = b.post(
        &format!("/organisation/members/{m_id}/remove"),
        &[("confirm", "yes")],
    );
    assert_eq!(page.status, Status::SeeOther, "{}", page.body);

    // Neither link brings anyone in any more: the page and the form answer 410, as for a withdrawn link.
    let accepts_before = entries_of(&app, "invitation.accept").len();
    assert_eq!(accept(&app, &colleague, "Friend"), Status::Gone);
    let mut visitor = app.browser();
    for (token, name) in [(&colleague, "Friend"), (&own, "M Again")] {
        let uri = format!("/invitations/{token}");
        assert_eq!(
            visitor
                .post(&uri, &[("display_name", name), ("password", PASSWORD)])
                .status,
            Status::Gone
        );
    }
    let friend: i64 = app.with_conn(|c| {
        users::table
            .filter(users::email.eq("friend@elsewhere.example"))
            .count()
            .get_result(c)
            .unwrap()
    });
    assert_eq!(friend, 0, "no account made");
    let (org, disabled): (Option<String>, bool) = app.with_conn(|c| {
        users::table
            .find(&m_id)
            .select((users::organisation_id, users::disabled))
            .first(c)
            .unwrap()
    });
    assert_eq!((org, disabled), (None, true), "M stays out");
    let mut again = app.browser();
    assert_ne!(again.login("m@acme.example", PASSWORD), Status::SeeOther);
    // B still reads Acme's submission; M does not come back to it.
    assert_eq!(b.get(&format!("/submissions/{sub}")).status, Status::Ok);
    // Each attempt is recorded as refused, and the invitations are closed.
    let entries = entries_of(&app, "invitation.accept");
    assert_eq!(entries.len(), accepts_before + 2, "{entries:?}");
    assert!(
        entries
            .iter()
            .rev()
            .take(2)
            .all(|(outcome, reason)| outcome == "refused"
                && reason
                    .as_deref()
                    .unwrap_or("")
                    .contains("no longer holds the authority")),
        "{entries:?}"
    );
    for email in ["friend@elsewhere.example", "m@acme.example"] {
        assert_eq!(
            invitation_state(&app, &invitation_id(&app, email)),
            "revoked"
        );
    }

    // An invitation B makes (B still administers Acme) works as before.
    let token = invite(&app, &mut b, "new@acme.example", "New");
    assert_eq!(accept(&app, &token, "New"), Status::SeeOther);
}

#[test]
fn an_administrator_cannot_hand_a_companys_approval_to_an_officer_by_disabling_its_administrator() {
    let app = TestApp::new();
    let _alice = app.login_as(Role::Submitter, "alice@acme.example", Some("Acme"));
    let acme = app.organisation_id("Acme").unwrap();
    let alice = app.user_id("alice@acme.example");
    let mut root = app.login_as(Role::Administrator, "root@example.gov", None);
    let mut officer = app.login_as(Role::Officer, "o@example.gov", None);

    // The administrator disables Acme's only administrator (applied at once: a company's person), then invites
    // an address of its own into Acme.
    let page = root.post(
        &format!("/admin/accounts/{alice}/disable"),
        &[("reason", "suspected compromise"), ("confirm", "true")],
    );
    assert_eq!(page.status, Status::SeeOther, "{}", page.body);
    let sock = admin_invites_on_pages(
        &app,
        &mut root,
        &[("role", "submitter"), ("organisation_id", &acme)],
        "sock@elsewhere.example",
    );
    assert_eq!(invitation_state(&app, &sock), "awaiting_approval");

    // The decision stays the company's: no officer lists it, and approving it answers as an unknown id does.
    assert_eq!(officer.get("/officer/organisations").status, Status::Ok);
    assert!(!officer
        .get("/officer/organisations")
        .body
        .contains("sock@elsewhere.example"));
    let page = officer.get(&format!("/officer/organisations/{acme}"));
    assert!(page.body.contains("Yes, disabled"), "{}", page.body);
    let unknown = officer.post("/officer/organisations/invitations/no-such-id/approve", &[]);
    let page = officer.post(
        &format!("/officer/organisations/invitations/{sock}/approve"),
        &[],
    );
    assert_eq!(page.status, unknown.status, "{}", page.body);
    assert_eq!(page.status, Status::NotFound);
    assert_eq!(invitation_state(&app, &sock), "awaiting_approval");
    assert_eq!(app.audit_count("invitation.approve"), 0);
}

#[test]
fn a_closed_officers_invitation_naming_the_company_answers_its_admin_as_an_unknown_id() {
    let app = TestApp::new();
    let mut a = app.login_as(Role::Submitter, "a@acme.example", Some("Acme"));
    let acme = app.organisation_id("Acme").unwrap();
    let mut root = app.login_as(Role::Administrator, "root@example.gov", None);
    let otto = admin_invites_on_pages(
        &app,
        &mut root,
        &[
            ("role", "officer"),
            ("agency", "PCII Program Office"),
            ("organisation_id", &acme),
        ],
        "otto@example.gov",
    );
    assert_eq!(invitation_state(&app, &otto), "sent");
    let unknown = a.post("/organisation/invitations/no-such-id/approve", &[]);
    assert_eq!(unknown.status, Status::NotFound);
    for act in ["approve", "refuse"] {
        let refused = app.audit_count("access.refused");
        let page = a.post(&format!("/organisation/invitations/{otto}/{act}"), &[]);
        assert_eq!(page.status, unknown.status, "{act}: {}", page.body);
        assert_eq!(app.audit_count("access.refused"), refused + 1, "{act}");
    }
    assert_eq!(invitation_state(&app, &otto), "sent");
}

/// Two organisation administrators removing each other at once: each request passed its guard before either
/// committed, and the second commit must not leave the organisation without an administrator. The acting
/// administrator is read again in the commit; one removed meanwhile changes nothing.
#[test]
fn an_administrator_removed_meanwhile_removes_and_promotes_no_one() {
    use pcii_portal::auth::membership;
    let app = TestApp::new();
    app.login_as(Role::Submitter, "a@acme.example", Some("Acme"));
    let b = app.create_user(Role::Submitter, "b@acme.example", Some("Acme"));
    let c = app.create_user(Role::Submitter, "c@acme.example", Some("Acme"));
    let a = app.user_id("a@acme.example");
    let org = app.organisation_id("Acme").unwrap();
    let state = app.state();
    let actor =
        |id: &str| common::actor_of(&app.with_conn(|conn| account::find(conn, id).unwrap()));
    app.with_conn(|conn| membership::grant_admin(conn, &state.audit, &actor(&a), &org, &b))
        .expect("a makes b an administrator too");
    // a's request to remove b has passed its guard; b's removal of a commits first.
    let a_as_read = app.with_conn(|conn| account::find(conn, &a).unwrap());
    let b_now = app.with_conn(|conn| account::find(conn, &b).unwrap());
    app.with_conn(|conn| {
        membership::remove_member(conn, &state.audit, &actor(&b), &org, &b_now, &a)
    })
    .expect("b removes a");
    let removed = app.with_conn(|conn| {
        membership::remove_member(conn, &state.audit, &actor(&a), &org, &a_as_read, &b)
    });
    assert!(
        matches!(removed, Err(pcii_portal::error::AppError::Refused(_))),
        "{removed:?}"
    );
    let promoted =
        app.with_conn(|conn| membership::grant_admin(conn, &state.audit, &actor(&a), &org, &c));
    assert!(
        matches!(promoted, Err(pcii_portal::error::AppError::Refused(_))),
        "{promoted:?}"
    );
    let b_after = app.with_conn(|conn| account::find(conn, &b).unwrap());
    assert!(b_after.org_admin && !b_after.disabled);
    assert!(
        !app.with_conn(|conn| account::find(conn, &c).unwrap())
            .org_admin
    );
}

/// An organisation's open invitations are listed 200 at a time, the newest, with a note counting them all (they
/// used to be listed whole, expired ones included, however many its administrators had sent).
#[test]
fn the_organisation_page_lists_its_200_newest_open_invitations_and_counts_them_all() {
    use pcii_portal::models::invitation::{self, NewInvitation, SENT};
    let app = TestApp::new();
    let mut admin = app.login_as(Role::Submitter, "a@acme.example", Some("Acme"));
    let org = app.organisation_id("Acme").unwrap();
    let inviter = app.user_id("a@acme.example");
    let now = app.now();
    app.with_conn(|c| {
        for i in 0..203 {
            invitation::insert(
                c,
                &NewInvitation {
                    id: &format!("seeded-{i:03}"),
                    token_hash: None,
                    email: &format!("person{i:03}@acme.example"),
                    display_name: &format!("Person {i}"),
                    role: Role::Submitter,
                    organisation_id: Some(&org),
                    new_organisation: None,
                    org_admin: false,
                    agency: None,
                    invited_by: Some(&inviter),
                    approval: None,
                    state: SENT,
                    created_at: now - 10_000 + i as i64,
                    expires_at: now + 7 * 86_400,
                },
            )
            .unwrap();
        }
    });
    let page = admin.get("/organisation");
    assert_eq!(page.status, Status::Ok, "{}", page.body);
    assert!(
        page.body
            .contains("203 in all: the 200 newest are listed here."),
        "{}",
        page.body
    );
    assert!(page.body.contains("person202@acme.example"));
    assert!(!page.body.contains("person002@acme.example"));
}

/// The officers' list finds an organisation by its name in any case, accented letters included (SQLite's own
/// `lower()` folds ASCII only; the portal replaces it on every connection).
#[test]
fn an_organisation_is_found_by_its_name_in_any_case_accented_letters_included() {
    let app = TestApp::new();
    app.create_user(
        Role::Submitter,
        "ines@elec.example",
        Some("Électricité Öffentlich"),
    );
    app.create_user(Role::Submitter, "sam@acme.example", Some("Acme"));
    let mut officer = app.login_as(Role::Officer, "o@example.gov", None);
    // On PostgreSQL `lower()` is the database's own, by its LC_CTYPE: Unicode unless it was created under "C".
    let unicode = app.with_conn(|c| {
        diesel::select(diesel::dsl::sql::<diesel::sql_types::Bool>(
            "lower('ÉÖ') = 'éö'",
        ))
        .get_result::<bool>(c)
        .unwrap()
    });
    assert!(
        unicode || !app.database_url.is_empty(),
        "SQLite's lower() is replaced"
    );
    let typed: &[&str] = if unicode {
        &[
            "électricité",
            "ÉLECTRICITÉ",
            "öffentlich",
            "TÉ ÖF",
            "LECTRICIT",
        ]
    } else {
        eprintln!(
            "this PostgreSQL database lower-cases ASCII only (LC_CTYPE C): ASCII searches checked"
        );
        &["LECTRICIT"]
    };
    for typed in typed {
        let page = officer.get(&format!(
            "/officer/organisations?{}",
            common::encode(&[("q", typed)])
        ));
        assert_eq!(page.status, Status::Ok);
        assert!(page.body.contains("Électricité Öffentlich"), "{typed}");
        assert!(!page.body.contains(">Acme<"), "{typed}: filtered");
    }
    let none = officer.get("/officer/organisations?q=%C3%A9lectricit%C3%A9x");
    assert!(!none.body.contains("Électricité Öffentlich"));
}
