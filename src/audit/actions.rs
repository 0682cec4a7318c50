//! The audit log's action names, each with the plain-English label an auditor filters by. The names are what
//! the chain records; the labels are for pages only.

/// Every action the portal records, grouped as the auditor's filter lists them.
pub const ACTIONS: &[(&str, &str)] = &[
    // Protected content
    ("content.viewed", "Content viewed"),
    ("content.downloaded", "File downloaded"),
    ("content.exported", "Submission exported (package)"),
    (
        "content.cut",
        "Download or package cut off: access ended while it was sent",
    ),
    (
        "content.failed",
        "Download or package failed: a stored file did not pass its integrity check, or could not be read",
    ),
    // Submissions
    ("submission.draft_created", "Draft created"),
    ("submission.draft_saved", "Draft saved"),
    ("submission.draft_deleted", "Draft deleted"),
    ("submission.received", "Submission received"),
    ("submission.corrected", "Submission corrected"),
    ("submission.file_replaced", "File replaced (cure)"),
    ("submission.cured", "Defects cured by the submitter"),
    ("submission.withdrawn", "Submission withdrawn"),
    (
        "submission.return_requested",
        "Return of the submission requested",
    ),
    ("submission.returned", "Submission returned"),
    ("submission.destroyed", "Submission destroyed"),
    // Decisions, grants, dissemination
    ("decision.defective", "Marked defective (defect notice)"),
    ("decision.validated", "Validated as PCII"),
    ("decision.not_validated", "Not validated"),
    ("decision.protection_removed", "PCII protection removed"),
    (
        "decision.destroyed_unclaimed",
        "Destroyed by the Program Office: no return-or-destroy answer in time",
    ),
    ("grant.created", "Need-to-know grant given"),
    ("grant.revoked", "Need-to-know grant revoked"),
    (
        "grants.listed",
        "Titles of an analyst's granted submissions listed",
    ),
    ("dissemination.recorded", "Dissemination recorded"),
    ("dissemination.exported", "Dissemination log exported"),
    (
        "dissemination.listed",
        "Dissemination log shown (releases' details and titles)",
    ),
    ("access_request.created", "Access requested by an analyst"),
    (
        "access_request.missed",
        "Access asked for a number that is not validated PCII",
    ),
    ("access_request.granted", "Access request granted"),
    ("access_request.refused", "Access request refused"),
    ("case.assigned", "Case assigned"),
    ("case.reassigned", "Case handed over"),
    ("case.released", "Case released"),
    ("case.note_added", "Case note added"),
    ("message.sent", "Message sent in a submission's thread"),
    // Sign-in and sessions
    ("auth.login", "Sign-in"),
    ("auth.logout", "Sign-out"),
    ("auth.session_expired", "Session expired"),
    ("session.end", "Session ended"),
    ("mfa.enrolled", "Second factor enrolled"),
    ("mfa.verified", "Second factor verified"),
    ("mfa.failed", "Second factor failed"),
    (
        "mfa.passkey_possible_clone",
        "Passkey removed: its counter went back (possible copy)",
    ),
    ("mfa.removed", "Second factor removed"),
    ("mfa.reset", "Second factors reset"),
    ("mfa.recovery_code_used", "Recovery code used"),
    (
        "mfa.recovery_codes_regenerated",
        "Recovery codes regenerated",
    ),
    // Accounts and organisations
    ("account.register", "Registration"),
    ("account.create", "Account created"),
    ("account.verify_email", "Email address verified"),
    ("account.verify_resend", "Verification email sent again"),
    (
        "account.purge_unconfirmed",
        "Unconfirmed registration removed",
    ),
    ("account.password", "Password changed"),
    ("account.reset_request", "Password reset requested"),
    ("account.password_reset", "Password reset"),
    ("account.role", "Role changed"),
    ("account.disable", "Account disabled"),
    ("account.enable", "Account enabled"),
    ("account.training", "Training recorded"),
    ("account.nda", "Non-disclosure agreement recorded"),
    (
        "account.notifications",
        "Email notification choices changed",
    ),
    ("account.privilege_request", "Privilege requested"),
    ("account.privilege_approve", "Privilege approved"),
    ("account.privilege_refuse", "Privilege refused"),
    ("invitation.create", "Invitation sent"),
    ("invitation.approve", "Invitation approved"),
    ("invitation.refuse", "Invitation refused"),
    ("invitation.revoke", "Invitation revoked"),
    ("invitation.accept", "Invitation accepted"),
    ("organisation.verify", "Organisation verified"),
    (
        "organisation.merge_propose",
        "Merge of organisations proposed",
    ),
    (
        "organisation.merge_accept",
        "Merge of organisations accepted by one company",
    ),
    (
        "organisation.merge_refuse",
        "Merge of organisations refused by a company",
    ),
    ("organisation.merge_withdraw", "Merge proposal withdrawn"),
    ("organisation.merge", "Organisations merged"),
    (
        "organisation.admin_grant",
        "Organisation administrator appointed",
    ),
    (
        "organisation.admin_revoke",
        "Organisation administrator removed",
    ),
    (
        "organisation.member_remove",
        "Member removed from an organisation",
    ),
    ("organisation.member_leave", "Member left an organisation"),
    (
        "organisation.second_factor_requirement",
        "Second-factor requirement changed",
    ),
    ("setup.link", "Set-up link issued"),
    ("setup.complete", "Set-up completed"),
    // Refusals
    ("access.refused", "Access refused"),
    (
        "conflict_of_interest.refused",
        "Officer refused: conflict of interest",
    ),
    ("csrf.refused", "Form refused (stale or forged)"),
    // Keys and storage
    ("key.generate", "Key generated"),
    ("key.rotate", "Master key rotated"),
    ("key.rotate_data_keys", "Data keys replaced"),
    ("key.retire", "Old master key retired"),
    ("key.convert", "Store converted to data keys"),
    ("key.unseal", "Portal unsealed"),
    ("key.protect", "Keys at rest protected"),
    ("blob.sweep", "Stored files swept"),
    ("backup.made", "Backup made"),
    ("notifications.sent", "Notification emails sent"),
    // The audit log itself
    ("audit.view", "Audit log read by an auditor"),
    ("audit.verify", "Audit log verified"),
    ("audit.checkpoint", "Checkpoint signed"),
    ("audit.export", "Audit log exported"),
    (
        "audit.export_cut",
        "Audit export cut off: the auditor's access ended while it was sent",
    ),
    ("audit.checkpoints_download", "Checkpoints downloaded"),
];

/// The auditors' own reading of the log: folded away unless asked for.
pub const READING: &str = "audit.view";

/// The label of `action`, if it is in the list.
pub fn known_label(action: &str) -> Option<&'static str> {
    ACTIONS
        .iter()
        .find(|(name, _)| *name == action)
        .map(|(_, label)| *label)
}

/// The label of `action`, or the name itself for one not in the list (an entry of an older version).
pub fn label(action: &str) -> &str {
    known_label(action).unwrap_or(action)
}

pub fn is_known(action: &str) -> bool {
    ACTIONS.iter().any(|(name, _)| *name == action)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every `"family.name"` literal in the sources, for a family the log uses, is an action of the list —
    /// so an action added without its label fails here. (Names that only look like actions are listed.)
    #[test]
    fn every_action_the_code_records_has_a_label() {
        const NOT_ACTIONS: [&str; 6] = [
            "audit.last_verified",
            "audit.verified_through",
            "key.age",
            "submission.view",
            "grant.create",
            "test.entry",
        ];
        let families: std::collections::BTreeSet<&str> = ACTIONS
            .iter()
            .map(|(n, _)| n.split('.').next().unwrap())
            .collect();
        let mut missing = Vec::new();
        let mut stack = vec![std::path::PathBuf::from(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/src"
        ))];
        while let Some(dir) = stack.pop() {
            for e in std::fs::read_dir(dir).unwrap() {
                let path = e.unwrap().path();
                if path.is_dir() {
                    stack.push(path);
                    continue;
                }
                if path.extension().is_none_or(|x| x != "rs") {
                    continue;
                }
                let text = std::fs::read_to_string(&path).unwrap();
                for lit in text.split('"').skip(1).step_by(2) {
                    let Some((family, name)) = lit.split_once('.') else {
                        continue;
                    };
                    let word = |s: &str| {
                        !s.is_empty() && s.chars().all(|c| c.is_ascii_lowercase() || c == '_')
                    };
                    if families.contains(family)
                        && word(name)
                        && !is_known(lit)
                        && !NOT_ACTIONS.contains(&lit)
                    {
                        missing.push(format!("{lit} ({})", path.display()));
                    }
                }
            }
        }
        assert!(missing.is_empty(), "actions without a label: {missing:?}");
        assert_eq!(label("content.viewed"), "Content viewed");
        assert_eq!(label("no.such_action"), "no.such_action");
    }

    #[test]
    fn names_are_unique() {
        let mut names: Vec<&str> = ACTIONS.iter().map(|(n, _)| *n).collect();
        names.sort_unstable();
        let n = names.len();
        names.dedup();
        assert_eq!(names.len(), n);
    }
}
