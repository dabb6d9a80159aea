//! What a notification says, per channel: the signed webhook body, a Slack- or
//! Mattermost-compatible message (with buttons on a new request when interactive
//! approval is set up), a Teams Adaptive Card, and an email. Pure functions of the
//! event and the request: no I/O here.

use crate::domain::duration;
use crate::store::requests::RequestView;
use crate::time::rfc3339;
use serde_json::{json, Value};

/// Everything a message is made from.
pub struct Facts<'a> {
    pub event: &'a str,
    pub view: &'a RequestView,
    /// The request's web page.
    pub url: &'a str,
    /// The requester's Slack id, to mention them on a decision ("the requester is told").
    pub requester_slack: Option<&'a str>,
}

impl Facts<'_> {
    /// One line that says what happened, in plain text.
    pub fn headline(&self) -> String {
        let r = &self.view.request;
        let whose = format!("{}'s access to {} ({})", r.user, r.connection, duration::format(r.duration));
        let by = r.ended_by.as_deref().unwrap_or("jitgate");
        let why = r.end_reason.as_deref().map(|w| format!(": {w}")).unwrap_or_default();
        match self.event {
            "request.created" => format!("{} asks for {} on {}", r.user, duration::format(r.duration), r.connection),
            "request.approved" => {
                let who = self.approvers();
                let who = if who.is_empty() { "automatically".to_string() } else { format!("by {}", who.join(", ")) };
                format!("{whose} was approved {who}; it expires at {}", self.expires())
            }
            "request.rejected" => format!("{whose} was rejected by {by}{why}"),
            "request.cancelled" => format!("{whose} was cancelled{why}"),
            "request.revoked" => format!("{whose} was revoked by {by}{why}"),
            "request.executed" => match r.end_reason.as_deref() {
                Some("expired") => format!("{whose} has expired"),
                _ => format!("{whose} was ended by {by}"),
            },
            "request.expiring" => format!("{whose} expires in 10 minutes, at {}", self.expires()),
            other => format!("{whose}: {other}"),
        }
    }

    fn approvers(&self) -> Vec<String> {
        let mut who: Vec<String> = self.view.tally.counted.values().flatten().cloned().collect();
        who.dedup();
        who
    }

    fn expires(&self) -> String {
        self.view.request.expires_at.map(rfc3339).unwrap_or_default()
    }

    /// What the approval groups still need: `dba ×1 (bob), security ×1`.
    pub fn groups(&self) -> String {
        let t = &self.view.tally;
        if t.counted.is_empty() {
            return "none (approved on creation)".into();
        }
        t.counted
            .iter()
            .map(|(g, who)| {
                let done = if who.is_empty() { String::new() } else { format!(" ({})", who.join(", ")) };
                format!("{g} {}/{}{done}", who.len(), t.required)
            })
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// (title, value) pairs every channel shows.
    pub fn fields(&self) -> Vec<(&'static str, String)> {
        let r = &self.view.request;
        let mut out = vec![
            ("Requester", r.user.clone()),
            ("Connection", r.connection.clone()),
            ("Duration", duration::format(r.duration)),
            ("Reason", r.reason.clone().unwrap_or_else(|| "(none given)".into())),
            ("Approvals", self.groups()),
            ("Status", r.status.to_string()),
        ];
        if r.expires_at.is_some() {
            out.push(("Expires", self.expires()));
        }
        out
    }
}

/// The body of `[[notify.webhook]]`: `{id, event, sent_at, request}` (signed by the caller).
pub fn webhook(event_id: &str, facts: &Facts<'_>, request_json: Value, now: i64) -> Value {
    json!({"id": event_id, "event": facts.event, "sent_at": rfc3339(now), "request": request_json})
}

/// Slack's mrkdwn: `&`, `<` and `>` escaped, so user text cannot ping `<!channel>` or
/// forge a link.
fn slack_escape(text: &str) -> String {
    text.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;")
}

/// A message for a Slack incoming webhook (Block Kit). With `buttons`, a new request
/// carries Approve and Reject (action ids `approve`/`reject`, value: the request id).
pub fn slack(facts: &Facts<'_>, buttons: bool) -> Value {
    let mut headline = slack_escape(&facts.headline());
    if let Some(u) = facts.requester_slack.filter(|_| facts.event != "request.created") {
        headline = format!("<@{u}> {headline}");
    }
    let fields: Vec<Value> = facts
        .fields()
        .into_iter()
        .map(|(t, v)| json!({"type": "mrkdwn", "text": format!("*{t}*\n{}", slack_escape(&v))}))
        .collect();
    let mut elements = Vec::new();
    if buttons && facts.event == "request.created" {
        let id = &facts.view.request.id;
        elements.push(json!({"type": "button", "action_id": "approve", "style": "primary", "value": id, "text": {"type": "plain_text", "text": "Approve"}}));
        elements.push(json!({"type": "button", "action_id": "reject", "style": "danger", "value": id, "text": {"type": "plain_text", "text": "Reject"}}));
    }
    elements.push(json!({"type": "button", "action_id": "open", "url": facts.url, "text": {"type": "plain_text", "text": "Open in jitgate"}}));
    json!({
        "text": format!("{headline} <{}|{}>", facts.url, facts.view.request.id),
        "blocks": [
            {"type": "section", "text": {"type": "mrkdwn", "text": format!("{headline} (<{}|{}>)", facts.url, facts.view.request.id)}},
            {"type": "section", "fields": fields},
            {"type": "actions", "block_id": "jitgate", "elements": elements},
        ],
    })
}

/// Mattermost's markdown: a zero-width space after `@` so user text cannot ping
/// `@channel` or a person.
fn mattermost_escape(text: &str) -> String {
    text.replace('@', "@\u{200b}")
}

/// A message for a Mattermost incoming webhook (Slack-compatible attachments). With
/// `actions` (the integration URL and the action secret), a new request carries
/// Approve and Reject buttons whose context holds the request id, the action and an
/// HMAC over both (see `sign::mattermost_context_mac`).
pub fn mattermost(facts: &Facts<'_>, actions: Option<(&str, &str)>) -> Value {
    let headline = mattermost_escape(&facts.headline());
    let fields: Vec<Value> = facts
        .fields()
        .into_iter()
        .map(|(t, v)| json!({"short": t != "Reason" && t != "Approvals", "title": t, "value": mattermost_escape(&v)}))
        .collect();
    let mut attachment = json!({
        "fallback": headline,
        "title": facts.view.request.id,
        "title_link": facts.url,
        "text": headline,
        "fields": fields,
    });
    if let (Some((url, secret)), "request.created") = (actions, facts.event) {
        let id = &facts.view.request.id;
        let button = |action: &str, name: &str, style: &str| {
            let mac = super::sign::mattermost_context_mac(secret, id, action);
            json!({"id": action, "name": name, "style": style, "integration": {"url": url, "context": {"request_id": id, "action": action, "mac": mac}}})
        };
        attachment["actions"] = json!([button("approve", "Approve", "success"), button("reject", "Reject", "danger")]);
    }
    json!({"text": format!("{headline} ([{}]({}))", facts.view.request.id, facts.url), "attachments": [attachment]})
}

/// A Teams incoming-webhook message: one Adaptive Card with the facts and a link.
pub fn teams(facts: &Facts<'_>) -> Value {
    let facts_json: Vec<Value> = facts.fields().into_iter().map(|(t, v)| json!({"title": t, "value": v})).collect();
    json!({
        "type": "message",
        "attachments": [{
            "contentType": "application/vnd.microsoft.card.adaptive",
            "contentUrl": null,
            "content": {
                "$schema": "http://adaptivecards.io/schemas/adaptive-card.json",
                "type": "AdaptiveCard",
                "version": "1.4",
                "body": [
                    {"type": "TextBlock", "text": facts.headline(), "weight": "Bolder", "wrap": true},
                    {"type": "FactSet", "facts": facts_json},
                ],
                "actions": [{"type": "Action.OpenUrl", "title": "Open in jitgate", "url": facts.url}],
            },
        }],
    })
}

/// (subject, plain-text body) of an email.
pub fn email(facts: &Facts<'_>) -> (String, String) {
    let mut body = format!("{}\n\n", facts.headline());
    for (t, v) in facts.fields() {
        body.push_str(&format!("{t}: {v}\n"));
    }
    let next = if facts.event == "request.created" { "Review it at" } else { "See it at" };
    body.push_str(&format!("\n{next} {}\n", facts.url));
    (format!("[jitgate] {}", facts.headline()), body)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::approval::Tally;
    use crate::domain::request::Request;
    use crate::domain::Status;

    fn view() -> RequestView {
        RequestView {
            seq: 1,
            request: Request {
                id: "req_1".into(),
                user: "alice".into(),
                connection: "prod-db".into(),
                status: Status::Pending,
                duration: 7200,
                reason: Some("fix <!channel> @here".into()),
                created_at: 0,
                pending_until: 1,
                approved_at: None,
                expires_at: None,
                ended_at: None,
                ended_by: None,
                end_reason: None,
            },
            reviews: vec![],
            tally: Tally { counted: [("dba".to_string(), vec![])].into(), required: 1, satisfied: false },
        }
    }

    #[test]
    fn a_new_request_says_who_what_how_long_why_and_which_groups() {
        let v = view();
        let f = Facts { event: "request.created", view: &v, url: "https://j/#/requests/req_1", requester_slack: None };
        assert_eq!(f.headline(), "alice asks for 2h on prod-db");
        let (subject, body) = email(&f);
        assert!(subject.contains("alice asks for 2h on prod-db"));
        assert!(
            body.contains("Reason: fix") && body.contains("dba 0/1") && body.contains("https://j/#/requests/req_1")
        );
    }

    #[test]
    fn chat_text_cannot_ping_everyone() {
        let v = view();
        let f = Facts { event: "request.created", view: &v, url: "u", requester_slack: None };
        let s = slack(&f, true).to_string();
        assert!(!s.contains("<!channel>") && s.contains("&lt;!channel&gt;"));
        assert!(s.contains("\"action_id\":\"approve\"") && s.contains("\"value\":\"req_1\""));
        let m = mattermost(&f, Some(("https://j/api/v1/integrations/mattermost/actions", "k"))).to_string();
        assert!(!m.contains("@here") && m.contains("\"mac\""));
        assert!(!slack(&f, false).to_string().contains("\"action_id\":\"approve\""));
    }
}
