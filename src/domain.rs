//! The vocabulary of the work, shared by every layer and depending on none: a submission's status, a
//! person's role, the disposition a submitter chooses. Each is stored as its `as_str()` text on both
//! backends; an unknown value read from the database is an error, never a silent default.

use diesel::backend::Backend;
use diesel::deserialize::{self, FromSql, FromSqlRow};
use diesel::expression::AsExpression;
use diesel::serialize::{self, Output, ToSql};
use diesel::sql_types::Text;
use serde::Serialize;

/// PCII training counts for this long after it was completed; then the authorized user must take it
/// again before reading PCII.
pub const TRAINING_VALID_DAYS: i64 = 365;

/// The Program Office notifies a defect within this many days of receipt (PCII.md, "The lifecycle").
pub const DEFECT_NOTICE_DAYS: i64 = 30;

/// Days the submitter has to cure a defect (6 CFR 29.6(d)); `cure_due_at` holds that deadline.
pub const CURE_DAYS: i64 = 30;
/// Days the organisation has to choose return or destruction of a submission not validated or withdrawn, and to take
/// a return package once it chose a return; after them the Program Office may destroy the content.
pub const DISPOSITION_DAYS: i64 = 30;

/// Stores an enum as its `as_str()` text and reads it back through `parse`.
macro_rules! stored_as_text {
    ($t:ty, $what:literal) => {
        impl<DB: Backend> ToSql<Text, DB> for $t
        where
            str: ToSql<Text, DB>,
        {
            fn to_sql<'b>(&'b self, out: &mut Output<'b, '_, DB>) -> serialize::Result {
                self.as_str().to_sql(out)
            }
        }

        impl<DB: Backend> FromSql<Text, DB> for $t
        where
            String: FromSql<Text, DB>,
        {
            fn from_sql(bytes: DB::RawValue<'_>) -> deserialize::Result<Self> {
                let s = String::from_sql(bytes)?;
                <$t>::parse(&s)
                    .ok_or_else(|| format!(concat!("unknown ", $what, " `{}`"), s).into())
            }
        }
    };
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, AsExpression, FromSqlRow, Serialize)]
#[serde(rename_all = "snake_case")]
#[diesel(sql_type = Text)]
pub enum Status {
    Draft,
    Received,
    Defective,
    Validated,
    NotValidated,
    Withdrawn,
    ProtectionRemoved,
    Returned,
    Destroyed,
}

impl Status {
    pub const ALL: [Status; 9] = [
        Status::Draft,
        Status::Received,
        Status::Defective,
        Status::Validated,
        Status::NotValidated,
        Status::Withdrawn,
        Status::ProtectionRemoved,
        Status::Returned,
        Status::Destroyed,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Status::Draft => "draft",
            Status::Received => "received",
            Status::Defective => "defective",
            Status::Validated => "validated",
            Status::NotValidated => "not_validated",
            Status::Withdrawn => "withdrawn",
            Status::ProtectionRemoved => "protection_removed",
            Status::Returned => "returned",
            Status::Destroyed => "destroyed",
        }
    }

    pub fn parse(s: &str) -> Option<Status> {
        Status::ALL.into_iter().find(|st| st.as_str() == s)
    }

    pub fn label(self) -> &'static str {
        match self {
            Status::Draft => "Draft",
            Status::Received => "Received — presumed protected",
            Status::Defective => "Defective — awaiting cure",
            Status::Validated => "Validated PCII",
            Status::NotValidated => "Not validated",
            Status::Withdrawn => "Withdrawn",
            Status::ProtectionRemoved => "Protection removed",
            Status::Returned => "Returned",
            Status::Destroyed => "Destroyed",
        }
    }
}

/// One role per account (PCII.md, "The people").
#[derive(Debug, Clone, Copy, PartialEq, Eq, AsExpression, FromSqlRow, Serialize)]
#[serde(rename_all = "snake_case")]
#[diesel(sql_type = Text)]
pub enum Role {
    Submitter,
    Officer,
    AuthorizedUser,
    Auditor,
    Administrator,
}

impl Role {
    pub const ALL: [Role; 5] = [
        Role::Submitter,
        Role::Officer,
        Role::AuthorizedUser,
        Role::Auditor,
        Role::Administrator,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Submitter => "submitter",
            Role::Officer => "officer",
            Role::AuthorizedUser => "authorized_user",
            Role::Auditor => "auditor",
            Role::Administrator => "administrator",
        }
    }

    pub fn label(self) -> &'static str {
        match self {
            Role::Submitter => "Submitter",
            Role::Officer => "PCII officer",
            Role::AuthorizedUser => "Authorized user",
            Role::Auditor => "Auditor",
            Role::Administrator => "Administrator",
        }
    }

    pub fn parse(s: &str) -> Option<Role> {
        let s = s.trim().to_ascii_lowercase().replace(['-', ' '], "_");
        Role::ALL
            .into_iter()
            .find(|r| r.as_str() == s || (s == "admin" && *r == Role::Administrator))
    }
}

/// What a submitter chose for content the Program Office will not protect: to take it back or to have it destroyed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, AsExpression, FromSqlRow)]
#[serde(rename_all = "snake_case")]
#[diesel(sql_type = Text)]
pub enum Disposition {
    Return,
    Destroy,
}

impl Disposition {
    pub fn parse(s: &str) -> Option<Disposition> {
        match s {
            "return" => Some(Disposition::Return),
            "destroy" => Some(Disposition::Destroy),
            _ => None,
        }
    }
    pub fn as_str(self) -> &'static str {
        match self {
            Disposition::Return => "return",
            Disposition::Destroy => "destroy",
        }
    }
}

stored_as_text!(Status, "status");
stored_as_text!(Role, "role");
stored_as_text!(Disposition, "disposition");
