//! The officer's home: the queue of received and defective submissions with their 30-day clocks, titles and
//! handlers, filtered (sector, status, organisation, who handles it), sorted and paginated, with rows to select
//! for a bulk assignment.

use std::collections::BTreeMap;

use rocket::http::{RawStr, Status};
use serde::Serialize;

use crate::error::AppResult;
use crate::models::organisation::{self as orgs, NameMatches, NAME_MATCHES_MAX};
use crate::models::queue::{self, Assignee, OfficerChoice, QueueFilter, QueueSort, QueueStatus};
use crate::models::sectors;
use crate::web::forms::trimmed;
use crate::web::guards::{Ctx, OfficerUser};
use crate::web::pages::Page;
use crate::web::views::PageLinks;

pub fn routes() -> Vec<rocket::Route> {
    rocket::routes![officer_home]
}

/// The longest organisation text the filter takes (a name is at most 200 characters).
const ORGANISATION_MAX_CHARS: usize = 200;

/// The reason given when a typed name matches more organisations than a filter takes.
pub(crate) fn too_many_organisations() -> String {
    format!(
        "More than {NAME_MATCHES_MAX} organisation names contain this text: type more of the name."
    )
}

/// How many submissions left unanswered past their deadline the home lists (the page says how many there are).
const UNANSWERED_SHOWN: i64 = 20;

/// The column headers' links: each sorts by its clock.
#[derive(Serialize)]
struct SortLinks {
    receipt: String,
    notice: String,
    cure: String,
}

/// The officer's filters as typed: refill the form and build every link of the page.
#[derive(Debug, Clone, Default, Serialize)]
struct QueueForm {
    sector: String,
    status: String,
    /// Any part of an organisation's name (or, from older links, an organisation's id).
    organisation: String,
    /// "me", "none" or an officer's account id.
    assignee: String,
    sort: String,
}

impl QueueForm {
    /// The query string for this filter with another sort and page (defaults left out).
    fn link(&self, sort: QueueSort, page: i64) -> String {
        let page = page.to_string();
        let pairs = [
            ("sector", self.sector.as_str()),
            ("status", self.status.as_str()),
            ("organisation", self.organisation.as_str()),
            ("assignee", self.assignee.as_str()),
            (
                "sort",
                if sort == QueueSort::default() {
                    ""
                } else {
                    sort.as_str()
                },
            ),
            ("page", if page == "0" { "" } else { page.as_str() }),
        ];
        let query = pairs
            .iter()
            .filter(|(_, v)| !v.is_empty())
            // Rocket's encode set covers `&`, `=`, `+`, `%`, `#`, `?` and spaces.
            .map(|(k, v)| format!("{k}={}", RawStr::new(v).percent_encode()))
            .collect::<Vec<_>>()
            .join("&");
        if query.is_empty() {
            "/officer".to_string()
        } else {
            format!("/officer?{query}")
        }
    }

    /// Checks every value against what exists; each unknown one is reported next to its field. `organisations`
    /// is what the database found for the organisation typed (`None` when nothing was typed or it was too long).
    fn to_filter(
        &self,
        page: &str,
        organisations: Option<NameMatches>,
        officers: &[OfficerChoice],
        me: &str,
    ) -> Result<QueueFilter, BTreeMap<&'static str, String>> {
        let mut errors = BTreeMap::new();
        let mut filter = QueueFilter::default();
        if !self.sector.is_empty() {
            match sectors::find(&self.sector) {
                Some(s) => filter.sector = Some(s.to_string()),
                None => {
                    errors.insert("sector", "Choose one of the listed sectors.".to_string());
                }
            }
        }
        if !self.status.is_empty() {
            match QueueStatus::parse(&self.status) {
                Some(s) => filter.status = Some(s),
                None => {
                    errors.insert(
                        "status",
                        "Choose received, defective or overdue. Or \"Cured — re-review\": received again after a cure."
                            .to_string(),
                    );
                }
            }
        }
        if self.organisation.chars().count() > ORGANISATION_MAX_CHARS {
            errors.insert(
                "organisation",
                format!(
                    "Enter at most {ORGANISATION_MAX_CHARS} characters of the organisation's name."
                ),
            );
        } else {
            match organisations {
                None | Some(NameMatches::Every) => {}
                Some(NameMatches::Ids(ids)) if ids.is_empty() => {
                    errors.insert(
                        "organisation",
                        "No organisation name contains this text.".to_string(),
                    );
                }
                Some(NameMatches::Ids(ids)) => filter.organisation_ids = Some(ids),
                Some(NameMatches::TooMany) => {
                    errors.insert("organisation", too_many_organisations());
                }
            }
        }
        match self.assignee.as_str() {
            "" => {}
            "me" => filter.assignee = Some(Assignee::Officer(me.to_string())),
            "none" => filter.assignee = Some(Assignee::Unassigned),
            id if officers.iter().any(|o| o.id == id) => {
                filter.assignee = Some(Assignee::Officer(id.to_string()))
            }
            _ => {
                errors.insert("assignee", "Choose one of the listed officers.".to_string());
            }
        }
        if !self.sort.is_empty() {
            match QueueSort::parse(&self.sort) {
                Some(s) => filter.sort = s,
                None => {
                    errors.insert("sort", "Choose one of the listed orders.".to_string());
                }
            }
        }
        if !page.is_empty() {
            match page.parse::<i64>() {
                Ok(p) if (0..=crate::web::forms::MAX_PAGE).contains(&p) => filter.page = p,
                _ => {
                    errors.insert(
                        "page",
                        format!(
                            "The page must be a whole number from 0 to {}.",
                            crate::web::forms::MAX_PAGE
                        ),
                    );
                }
            }
        }
        if errors.is_empty() {
            Ok(filter)
        } else {
            Err(errors)
        }
    }
}

#[derive(Serialize)]
struct Choice {
    value: &'static str,
    label: &'static str,
}

/// A thread waiting for the Office's answer, as the officers' home lists it.
#[derive(serde::Serialize)]
struct AwaitingLine {
    #[serde(flatten)]
    a: crate::models::message::AwaitingOffice,
    status_label: &'static str,
}

/// The queue: received and defective submissions with their 30-day clocks, titles and handlers; filters by
/// sector, status (received, defective, overdue, cured — re-review), organisation and who handles it (me,
/// nobody, an officer); sortable; paged. Unknown filter values answer 422 with the form and the reason, never a
/// guess. Titles are opened for the rows of the page shown only. Below it, the threads waiting for the Office's
/// answer and the submissions whose organisation let its deadline to choose pass.
#[allow(clippy::too_many_arguments)]
#[rocket::get("/officer?<sector>&<status>&<organisation>&<assignee>&<sort>&<page>")]
async fn officer_home(
    ctx: Ctx<'_>,
    officer: OfficerUser<'_>,
    sector: Option<&str>,
    status: Option<&str>,
    organisation: Option<&str>,
    assignee: Option<&str>,
    sort: Option<&str>,
    page: Option<&str>,
) -> AppResult<Page> {
    let form = QueueForm {
        sector: trimmed(sector),
        status: trimmed(status),
        organisation: trimmed(organisation),
        assignee: trimmed(assignee),
        sort: trimmed(sort),
    };
    let page = trimmed(page);
    let now = ctx.state.clock.now();
    let form_ = form.clone();
    let me = officer.user.id.clone();
    let (officers, checked, unanswered) = ctx
        .state
        .db
        .run(move |c| {
            // The organisations named by the filter, found by the database a bounded number at a time: the page
            // never loads every organisation, however many registrations made one.
            let typed = &form_.organisation;
            let organisations =
                if typed.is_empty() || typed.chars().count() > ORGANISATION_MAX_CHARS {
                    None
                } else {
                    Some(orgs::matching(c, typed)?)
                };
            let officers = queue::officers(c)?;
            let checked = match form_.to_filter(&page, organisations, &officers, &me) {
                Ok(filter) => Ok((queue::queue(c, &filter, now)?, filter.sort)),
                Err(errors) => Err(errors),
            };
            let unanswered = queue::unanswered(c, now, UNANSWERED_SHOWN)?;
            Ok((officers, checked, unanswered))
        })
        .await?;
    let (awaiting, awaiting_total) = crate::workflow::messages::awaiting_office(ctx.state).await?;
    let awaiting: Vec<AwaitingLine> = awaiting
        .into_iter()
        .map(|a| AwaitingLine {
            status_label: a.status.label(),
            a,
        })
        .collect();
    let statuses: Vec<Choice> = QueueStatus::ALL
        .iter()
        .map(|s| Choice {
            value: s.as_str(),
            label: s.label(),
        })
        .collect();
    let sorts: Vec<Choice> = QueueSort::ALL
        .iter()
        .map(|s| Choice {
            value: s.as_str(),
            label: s.label(),
        })
        .collect();
    let page = Page::new("dashboard/officer.html.tera")
        .with("form", &form)
        .with("sectors", sectors::SECTORS)
        .with("statuses", statuses)
        .with("officers", &officers)
        .with("sorts", sorts)
        .with("clear_link", "/officer")
        .with("unanswered", &unanswered.0)
        .with("unanswered_total", unanswered.1)
        .with("awaiting", &awaiting)
        .with("awaiting_total", awaiting_total)
        // An officer destroys nothing of its own organisation's: its rows say another officer does.
        .with("own_organisation_id", &officer.user.organisation_id);
    let (mut queue, sort) = match checked {
        Ok(found) => found,
        Err(errors) => {
            return Ok(page
                .with("errors", errors)
                .status(Status::UnprocessableEntity))
        }
    };
    let unread_messages = crate::workflow::messages::unread_for_user(
        ctx.state,
        &officer.user,
        queue.rows.iter().map(|r| r.id.clone()).collect(),
    )
    .await?;
    let page = page.with("unread_messages", unread_messages);
    let ids: Vec<String> = queue
        .rows
        .iter()
        .filter(|r| r.title_sealed.is_some())
        .map(|r| r.id.clone())
        .collect();
    let texts = crate::workflow::sealed_text::Texts::load(ctx.state, ids).await?;
    for r in &mut queue.rows {
        r.title = crate::workflow::cases::title_of(
            &texts,
            crate::domain::Status::Received,
            r.title_sealed.as_deref(),
        );
    }
    drop(texts);
    // A column header sorts by its clock; the receipt columns toggle between oldest and newest.
    let by_receipt = if sort == QueueSort::Oldest {
        QueueSort::Newest
    } else {
        QueueSort::Oldest
    };
    let last = (queue.pages - 1).max(0);
    Ok(page
        .with("sort", sort.as_str())
        .with(
            "sort_links",
            SortLinks {
                receipt: form.link(by_receipt, 0),
                notice: form.link(QueueSort::Notice, 0),
                cure: form.link(QueueSort::Cure, 0),
            },
        )
        .with(
            "page_links",
            PageLinks {
                first: (queue.page > 0).then(|| form.link(sort, 0)),
                prev: (queue.page > 0).then(|| form.link(sort, queue.page - 1)),
                next: (queue.page < last).then(|| form.link(sort, queue.page + 1)),
                last: (queue.page < last).then(|| form.link(sort, last)),
            },
        )
        .with(
            "marking",
            crate::workflow::content::list_marking(
                queue
                    .rows
                    .iter()
                    .filter(|r| r.title.is_some())
                    .filter_map(|r| crate::domain::Status::parse(&r.status)),
            ),
        )
        .with("queue", queue))
}
