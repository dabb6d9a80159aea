//! Approve from chat: the endpoints Slack's and Mattermost's buttons call. Both routes
//! are `Public` in the route table because neither caller can hold a jitgate token;
//! each authenticates here instead, before anything is read or changed:
//! - Slack signs every call (`X-Slack-Signature`, HMAC-SHA256 with the app's signing
//!   secret over `v0:{timestamp}:{raw body}`): checked constant-time, within 5 minutes,
//!   and each signature is accepted once (remembered in SQLite for the window).
//! - Mattermost does not sign its calls. Each button carries in its context the
//!   request id, the action and an HMAC over both with the action secret, and the
//!   call must come from an allowed source address (the Mattermost server). The user
//!   id in the call is Mattermost's word: whoever can post from an allowed address
//!   and has seen a button can act as any mapped Mattermost user (see README).
//!
//! The chat user is mapped to a jitgate user (`slack_user_id`, `mattermost_user_id`,
//! set by an admin) and the decision is exactly `store::requests::review`: the same
//! eligibility, self-review and state rules as the API.

use crate::domain::request::Decision;
use crate::error::{Error, Result};
use crate::notify::sign::{self, SlackRefusal};
use crate::server::app::{App, Call};
use crate::server::http::Reply;
use crate::server::views;
use crate::store::requests::RequestView;
use crate::store::users::{self, ChatId, User};
use crate::store::{chat, requests};
use crate::{audit, notify};
use serde_json::{json, Value};
use std::time::Duration;

/// How long a best-effort reply to Slack's `response_url` may take.
const RESPONSE_TIMEOUT: Duration = Duration::from_secs(5);

pub fn slack(app: &App, call: &Call) -> Result<Reply> {
    let live = app.live.get();
    let secrets = live.notify.slack_signing_secrets();
    if secrets.is_empty() {
        return Err(Error::not_found(
            "integration",
            "slack (no [[notify.slack]] or [notify.slack_dm] has a signing_secret)",
        ));
    }
    let req = &call.req;
    let signature = req.header("x-slack-signature");
    sign::verify_slack(&secrets, req.header("x-slack-request-timestamp"), signature, &req.body, call.now / 1000)
        .map_err(|r| {
            Error::Unauthenticated(
                match r {
                    SlackRefusal::Missing => "missing Slack signature or timestamp",
                    SlackRefusal::Stale => "the Slack timestamp is outside the 5-minute window",
                    SlackRefusal::BadSignature => "bad Slack signature",
                }
                .into(),
            )
        })?;
    // Hex is case-blind: remember one spelling, so a re-cased replay is a replay.
    let signature = signature.unwrap_or_default().to_ascii_lowercase();
    let signature = signature.as_str();
    app.store.write(|tx| chat::remember_signature(tx, signature, call.now, sign::SLACK_WINDOW_SECS * 1000))?;
    let payload = slack_payload(&req.body)?;
    // Slack reports clicks on link buttons too: acknowledged, nothing to do.
    if payload["actions"][0]["action_id"] == "open" {
        return Ok(Reply::ok(&json!({"ok": true})));
    }
    let response_url = payload["response_url"].as_str().map(str::to_string);
    let outcome = slack_apply(app, call, &payload);
    if let Some(url) = response_url.filter(|u| u.starts_with("https://") || u.starts_with("http://")) {
        let message = match &outcome {
            Ok(view) => json!({"replace_original": true, "text": decided_text(app, view)}),
            Err(e) => {
                json!({"replace_original": false, "response_type": "ephemeral", "text": format!("jitgate refused: {}", e.user_message())})
            }
        };
        respond_later(url, message);
    }
    let view = outcome?;
    Ok(Reply::ok(&json!({"ok": true, "request": views::request(&view, app.request_url(&view.request.id))})))
}

/// The `payload` field of Slack's form-encoded body, as JSON.
fn slack_payload(body: &[u8]) -> Result<Value> {
    let bad = || Error::bad("bad_payload", "expected a form body with a JSON payload field");
    let text = std::str::from_utf8(body).map_err(|_| bad())?;
    let raw = text.split('&').find_map(|pair| pair.strip_prefix("payload=")).ok_or_else(bad)?;
    let decoded = form_decode(raw).ok_or_else(bad)?;
    serde_json::from_str(&decoded).map_err(|_| bad())
}

/// `application/x-www-form-urlencoded` value decoding (`+` is a space).
fn form_decode(text: &str) -> Option<String> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' => {
                out.push(u8::from_str_radix(text.get(i + 1..i + 3)?, 16).ok()?);
                i += 3;
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8(out).ok()
}

fn slack_apply(app: &App, call: &Call, payload: &Value) -> Result<RequestView> {
    let action = &payload["actions"][0];
    let decision = decision(action["action_id"].as_str().unwrap_or(""))?;
    let id = action["value"].as_str().ok_or_else(|| Error::bad("bad_payload", "the action names no request"))?;
    let chat_user = payload["user"]["id"].as_str().unwrap_or("");
    apply(app, call, ChatId::Slack, chat_user, id, decision)
}

fn decision(action: &str) -> Result<Decision> {
    match action {
        "approve" => Ok(Decision::Approve),
        "reject" => Ok(Decision::Reject),
        other => Err(Error::bad("bad_action", format!("unknown action {other:?}: approve or reject"))),
    }
}

/// Maps the chat user and applies the review, exactly as the API would.
fn apply(app: &App, call: &Call, via: ChatId, chat_user: &str, id: &str, decision: Decision) -> Result<RequestView> {
    crate::domain::check_name("request", id)?;
    let user: User = app
        .store
        .read(|c| users::by_chat_id(c, via, chat_user))?
        .filter(|u| !u.disabled)
        .ok_or_else(|| Error::Forbidden(format!("this {via:?} user is not mapped to a jitgate user")))?;
    let view = app.store.write(|tx| {
        if !requests::visible_to(tx, &user, id)? {
            return Err(Error::not_found("request", id));
        }
        let view = requests::review(tx, &user, id, decision, None, call.now)?;
        let detail =
            json!({"via": format!("{via:?}").to_lowercase(), "chat_user": chat_user, "decision": decision.as_str()});
        audit::append(tx, call.now, &user.username, "chat.action", id, detail)?;
        Ok(view)
    })?;
    app.hub.notify();
    Ok(view)
}

/// What the chat message says once decided, and by whom.
fn decided_text(app: &App, view: &RequestView) -> String {
    let r = &view.request;
    let last = view.reviews.last().map(|rv| format!("{} by {}", rv.decision.as_str(), rv.reviewer)).unwrap_or_default();
    format!(
        "{}'s request for {} on {}: {last}; now {} ({})",
        r.user,
        crate::domain::duration::format(r.duration),
        r.connection,
        r.status,
        app.request_url(&r.id)
    )
}

/// Posts to Slack's `response_url` on a thread of its own, bounded in time: the
/// button's answer must not wait for it, and its failure changes nothing.
fn respond_later(url: String, message: Value) {
    let spawned = std::thread::Builder::new().name("chat-reply".into()).spawn(move || {
        let agent = notify::send::agent(RESPONSE_TIMEOUT);
        if let Err(f) = notify::send::post_json(&agent, &url, &[], message.to_string().as_bytes()) {
            crate::warn!("chat: the reply to the action's response_url failed: {}", f.error);
        }
    });
    if let Err(e) = spawned {
        crate::warn!("chat: cannot start the reply: {e}");
    }
}

pub fn mattermost(app: &App, call: &Call) -> Result<Reply> {
    mattermost_inner(app, call).or_else(|e| {
        // Mattermost shows `ephemeral_text` to the clicker alone.
        let mut reply = Reply::error(&e);
        reply.body = serde_json::to_vec(&json!({
            "error": {"code": e.code(), "message": e.user_message()},
            "ephemeral_text": format!("jitgate refused: {}", e.user_message()),
        }))
        .unwrap_or_default();
        Ok(reply)
    })
}

fn mattermost_inner(app: &App, call: &Call) -> Result<Reply> {
    let live = app.live.get();
    let Some(cfg) = &live.notify.mattermost else {
        return Err(Error::not_found("integration", "mattermost (no [notify.mattermost])"));
    };
    if !live.notify.mattermost_source_allowed(&call.req.peer) {
        return Err(Error::Forbidden("this address may not post Mattermost actions".into()));
    }
    let body: Value = serde_json::from_slice(&call.req.body)
        .map_err(|_| Error::bad("invalid_json", "expected Mattermost's JSON action body"))?;
    let context = &body["context"];
    let (id, action, mac) = (
        context["request_id"].as_str().unwrap_or(""),
        context["action"].as_str().unwrap_or(""),
        context["mac"].as_str().unwrap_or(""),
    );
    if !sign::verify_mattermost_context(&cfg.action_secret, id, action, mac) {
        return Err(Error::Unauthenticated("bad action context signature".into()));
    }
    let decision = decision(action)?;
    let view = apply(app, call, ChatId::Mattermost, body["user_id"].as_str().unwrap_or(""), id, decision)?;
    let text = decided_text(app, &view);
    Ok(Reply::ok(&json!({
        "update": {"message": text, "props": {"attachments": []}},
        "ephemeral_text": format!("Done: {}", view.request.status),
    })))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slack_form_bodies_decode() {
        let v = slack_payload(b"payload=%7B%22a%22%3A+%22b+c%22%7D&x=1").unwrap();
        assert_eq!(v["a"], "b c");
        assert!(slack_payload(b"x=1").is_err());
        assert!(slack_payload(b"payload=%7").is_err());
    }
}
