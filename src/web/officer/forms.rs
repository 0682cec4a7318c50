//! The forms of an officer's submission page, as typed. A form posted with a mistake comes back on the page
//! with each message next to its field and in a summary at the top that links to it, and with everything
//! typed still in it. Messages are keyed by the id of the field's element on the page, since the page holds
//! several forms whose fields share names (every form has a `reason`).

use rocket::form::FromForm;
use serde::Serialize;

use crate::workflow::content::FieldErrors;
use crate::workflow::decisions::Decision;

/// The Program Office's destruction of what an organisation left unanswered: only its confirmation box.
#[derive(FromForm, Debug, Clone, Default)]
pub struct DestroyUnclaimedForm {
    #[field(default = String::new())]
    pub confirm: String,
}

/// The decision form and the protection removal form: both post the same fields to the same address.
#[derive(FromForm, Serialize, Clone, Default)]
pub struct DecisionForm {
    #[field(default = String::new())]
    pub decision: String,
    /// The list of defects, for a defect notice.
    #[field(default = String::new())]
    pub defects: String,
    #[field(default = String::new())]
    pub reason: String,
    /// "1" from the confirmation page's button: only then is a final decision applied.
    #[field(default = String::new())]
    pub confirm: String,
    /// "1" from the confirmation page's other button: the form comes back as typed, to be changed.
    #[field(default = String::new())]
    pub change: String,
    /// The state of the submission the page the decision came from showed (`decisions::seen_token`), carried
    /// through the confirmation page: a decision on a submission that changed since (a cure sent or saved, another
    /// officer's decision) is refused.
    #[field(default = String::new())]
    pub seen: String,
}
debug_without_words!(DecisionForm);

impl DecisionForm {
    pub fn removal() -> DecisionForm {
        DecisionForm {
            decision: Decision::RemoveProtection.as_str().into(),
            ..<DecisionForm as Default>::default()
        }
    }

    /// Posted from the protection removal form (validated PCII), not the decision form.
    pub fn is_removal(&self) -> bool {
        self.decision == Decision::RemoveProtection.as_str()
    }

    /// The element id of the reason field of the form it came from.
    pub fn reason_id(&self) -> &'static str {
        if self.is_removal() {
            "rp_reason"
        } else {
            "reason"
        }
    }

    /// What the submitter is sent and the history keeps: the list of defects, then the reason, each where typed.
    pub fn words(&self) -> String {
        [self.defects.trim(), self.reason.trim()]
            .into_iter()
            .filter(|w| !w.is_empty())
            .collect::<Vec<_>>()
            .join("\n\n")
    }

    /// What is wrong with the words typed for `decision`, under the field where the officer fixes it. A defect
    /// notice needs the defects (a reason alone is taken as them, as the form's earlier single field was); a
    /// decision against the submitter needs its reason, whatever defects were listed beside it.
    pub fn word_errors(&self, decision: Decision) -> FieldErrors {
        let mut errors = FieldErrors::new();
        let (field, given) = match decision {
            Decision::Defective => ("defects", !self.words().is_empty()),
            _ => (self.reason_id(), !self.reason.trim().is_empty()),
        };
        if decision.needs_reason() && !given {
            errors.insert(field.into(), decision.missing_reason().into());
        }
        // Validating while listing defects is a slip of the radio button, not a decision.
        if decision == Decision::Validate && !self.defects.trim().is_empty() {
            errors.insert(
                "defects".into(),
                "A validated submission has no defects to cure: clear this list, or choose \"Defective\"."
                    .into(),
            );
        }
        if errors.is_empty() {
            if let Err(e) = crate::workflow::decisions::decision_reason(decision, &self.words()) {
                let field = if self.reason.trim().is_empty() {
                    "defects"
                } else {
                    self.reason_id()
                };
                errors.insert(field.into(), e.public_message().unwrap_or_default());
            }
        }
        errors
    }
}

#[derive(FromForm, Serialize, Clone, Default)]
pub struct GrantForm {
    #[field(default = String::new())]
    pub user_id: String,
    #[field(default = String::new())]
    pub reason: String,
    #[field(default = String::new())]
    pub expires: String,
}
debug_without_words!(GrantForm);

#[derive(FromForm, Serialize, Clone, Default)]
pub struct RevokeForm {
    #[field(default = String::new())]
    pub reason: String,
}
debug_without_words!(RevokeForm);

#[derive(FromForm, Serialize, Clone, Default)]
pub struct DisseminationForm {
    #[field(default = String::new())]
    pub recipient: String,
    #[field(default = String::new())]
    pub recipient_kind: String,
    #[field(default = String::new())]
    pub arrangement: String,
    #[field(default = String::new())]
    pub what: String,
    #[field(default = String::new())]
    pub released_on: String,
    #[field(default = String::new())]
    pub sanitized: String,
    #[field(default = String::new())]
    pub removed: String,
    #[field(default = String::new())]
    pub purpose: String,
    #[field(default = String::new())]
    pub consent: String,
}
debug_without_words!(DisseminationForm);

/// The element ids of each form's fields in the order the page shows them (the summary lists in that order).
pub const DECISION_IDS: [&str; 3] = ["decision", "defects", "reason"];
pub const REMOVAL_IDS: [&str; 1] = ["rp_reason"];
pub const GRANT_IDS: [&str; 3] = ["user_id", "g_reason", "expires"];
pub const DISSEMINATION_IDS: [&str; 9] = [
    "recipient",
    "recipient_kind",
    "arrangement",
    "what",
    "released_on",
    "sanitized",
    "removed",
    "purpose",
    "consent",
];

/// The grant form's reason field is `g_reason` on the page.
pub fn grant_ids(mut errors: FieldErrors) -> FieldErrors {
    if let Some(m) = errors.remove("reason") {
        errors.insert("g_reason".into(), m);
    }
    errors
}

/// The revoke form of one grant: its reason field's element id.
pub fn revoke_id(grant: &str) -> String {
    format!("rv_{grant}")
}

/// A form of the submission's page posted with mistakes, or sent back from a confirmation to be changed: the
/// page shows it as typed.
pub enum Again {
    Decision(DecisionForm),
    Grant(GrantForm),
    Revoke { grant: String, form: RevokeForm },
    Dissemination(DisseminationForm),
}

impl Again {
    /// The order of its fields' messages in the summary.
    pub fn order(&self) -> Vec<String> {
        let ids: &[&str] = match self {
            Again::Decision(f) if f.is_removal() => &REMOVAL_IDS,
            Again::Decision(_) => &DECISION_IDS,
            Again::Grant(_) => &GRANT_IDS,
            Again::Dissemination(_) => &DISSEMINATION_IDS,
            Again::Revoke { grant, .. } => return vec![revoke_id(grant)],
        };
        ids.iter().map(|s| s.to_string()).collect()
    }
}

/// One form as the page shows it: its values (as typed, or its defaults) and its messages by element id.
#[derive(Serialize)]
pub struct FormView<T: Serialize> {
    pub values: T,
    pub errors: FieldErrors,
}

impl<T: Serialize> FormView<T> {
    pub fn new(values: T) -> FormView<T> {
        FormView {
            values,
            errors: FieldErrors::new(),
        }
    }
}

/// The revoke form that comes back: which grant's, and the reason typed.
#[derive(Serialize, Default)]
pub struct RevokeView {
    pub grant: String,
    pub reason: String,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::web::forms::summary;

    fn form(decision: &str, defects: &str, reason: &str) -> DecisionForm {
        DecisionForm {
            decision: decision.into(),
            defects: defects.into(),
            reason: reason.into(),
            ..<DecisionForm as Default>::default()
        }
    }

    #[test]
    fn each_missing_word_is_reported_under_the_field_that_needs_it() {
        let e =
            form("not_validated", "Certification missing", "").word_errors(Decision::NotValidate);
        assert_eq!(e.keys().collect::<Vec<_>>(), ["reason"]);
        let e = form("defective", "", "").word_errors(Decision::Defective);
        assert_eq!(e.keys().collect::<Vec<_>>(), ["defects"]);
        // A reason alone is taken as the list of defects.
        assert!(form("defective", "", "File 2 unreadable")
            .word_errors(Decision::Defective)
            .is_empty());
        let e = form("remove_protection", "", " ").word_errors(Decision::RemoveProtection);
        assert_eq!(e.keys().collect::<Vec<_>>(), ["rp_reason"]);
        let e = form("validate", "", " ").word_errors(Decision::Validate);
        assert_eq!(e.keys().collect::<Vec<_>>(), ["reason"]);
        assert!(form("validate", "", "Statement and certification checked")
            .word_errors(Decision::Validate)
            .is_empty());
        let e =
            form("validate", "Certification missing", "Checked").word_errors(Decision::Validate);
        assert_eq!(e.keys().collect::<Vec<_>>(), ["defects"]);
        let long = "x".repeat(4001);
        let e = form("not_validated", "", &long).word_errors(Decision::NotValidate);
        assert!(e["reason"].contains("too long"), "{e:?}");
    }

    #[test]
    fn the_words_sent_are_the_defects_then_the_reason() {
        assert_eq!(form("defective", " A \n", " B ").words(), "A\n\nB");
        assert_eq!(form("defective", "", "B").words(), "B");
    }

    #[test]
    fn the_summary_follows_the_fields_order() {
        let mut e = FieldErrors::new();
        e.insert("user_id".into(), "1".into());
        e.insert("expires".into(), "3".into());
        e.insert("g_reason".into(), "2".into());
        let order: Vec<String> = GRANT_IDS.iter().map(|s| s.to_string()).collect();
        let lines: Vec<String> = summary(&e, &order).into_iter().map(|l| l.message).collect();
        assert_eq!(lines, ["1", "2", "3"]);
    }
}
