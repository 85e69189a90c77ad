//! The wire frames (README "Wire protocol"): events `{"event", "data", "meta"?}`, requests (an event plus
//! `"id"`) and replies `{"id", "data"}` / `{"id", "error": {"code", "message"}}`.
//!
//! Rust only splits a frame: it checks the shape, finds the event name (to reject events outside
//! the contract before they cost a trip to JS) and keeps `data`, `meta`, `id` and `error` as raw
//! JSON slices. Those slices are copied verbatim into the batch that JS parses with one
//! `JSON.parse`, so no value is ever decoded and re-encoded in Rust.

use serde::Deserialize;
use serde_json::value::RawValue;
use std::borrow::Cow;

/// An inbound frame: an event (a request when it carries an `id`) or a reply to a server request.
#[derive(Debug)]
pub enum Frame<'a> {
    Event(Envelope<'a>),
    Reply(Reply<'a>),
}

/// A parsed inbound envelope borrowing from the frame payload.
#[derive(Debug)]
pub struct Envelope<'a> {
    /// The event name as it appeared on the wire (a JSON string token, quotes included).
    pub event_json: &'a str,
    /// The unescaped event name.
    pub event: Cow<'a, str>,
    pub data: Option<&'a RawValue>,
    pub meta: Option<&'a RawValue>,
    /// Present on requests: the id exactly as the client wrote it (a JSON string or number).
    pub id: Option<&'a RawValue>,
}

/// A reply `{"id", "data"}` or `{"id", "error"}` (no `event`) to a request the server sent.
#[derive(Debug)]
pub struct Reply<'a> {
    /// The id as the client wrote it (a JSON string or number).
    pub id: &'a RawValue,
    /// `None` when absent or `null`.
    pub data: Option<&'a RawValue>,
    /// A JSON object when the client reports a failure.
    pub error: Option<&'a RawValue>,
}

/// Why a message is not a frame; both close 1007 `Invalid message payload`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EnvelopeError {
    NotJson,
    NotEnvelope(&'static str),
}

#[derive(Deserialize)]
struct Wire<'a> {
    #[serde(borrow)]
    event: Option<&'a RawValue>,
    /// Outer `None`: no `data` key; `Some(None)`: `"data": null` (a reply needs the key).
    #[serde(borrow, default, deserialize_with = "present")]
    data: Option<Option<&'a RawValue>>,
    #[serde(borrow)]
    meta: Option<&'a RawValue>,
    #[serde(borrow)]
    id: Option<&'a RawValue>,
    #[serde(borrow)]
    error: Option<&'a RawValue>,
}

/// Marks a field as present even when its value is `null` (serde alone maps both to `None`).
fn present<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Option<&'de RawValue>>, D::Error> {
    Option::<&'de RawValue>::deserialize(d).map(Some)
}

/// Splits one inbound frame. A frame with `event` is an event (a request if it also has `id`;
/// `error` is then ignored like any unknown field); a frame without `event` must be a reply: an
/// `id` plus `data` or an `error` object, never both.
pub fn parse(text: &str) -> Result<Frame<'_>, EnvelopeError> {
    // serde would also accept `["name", …]` for a struct; a frame must be an object.
    if !text.trim_start().starts_with('{') {
        return Err(EnvelopeError::NotEnvelope("not a JSON object"));
    }
    let wire: Wire<'_> = serde_json::from_str(text).map_err(|e| {
        if e.is_data() {
            EnvelopeError::NotEnvelope("unexpected field type")
        } else {
            EnvelopeError::NotJson
        }
    })?;
    if let Some(id) = wire.id {
        if !is_id(id) {
            return Err(EnvelopeError::NotEnvelope("id is not a string or number"));
        }
    }
    let Some(event_raw) = wire.event else {
        return reply(wire);
    };
    let event_json = event_raw.get();
    if !event_json.starts_with('"') {
        return Err(EnvelopeError::NotEnvelope("event is not a string"));
    }
    let event: Cow<'_, str> = serde_json::from_str(event_json)
        .map_err(|_| EnvelopeError::NotEnvelope("event is not a string"))?;
    if event.is_empty() {
        return Err(EnvelopeError::NotEnvelope("empty event name"));
    }
    if let Some(meta) = wire.meta {
        if !meta.get().starts_with('{') {
            return Err(EnvelopeError::NotEnvelope("meta is not an object"));
        }
    }
    Ok(Frame::Event(Envelope { event_json, event, data: wire.data.flatten(), meta: wire.meta, id: wire.id }))
}

fn reply(wire: Wire<'_>) -> Result<Frame<'_>, EnvelopeError> {
    let id = wire.id.ok_or(EnvelopeError::NotEnvelope("missing event"))?;
    let data = wire.data.flatten();
    match wire.error {
        Some(error) => {
            if !error.get().starts_with('{') {
                return Err(EnvelopeError::NotEnvelope("reply error is not an object"));
            }
            if data.is_some() {
                return Err(EnvelopeError::NotEnvelope("reply has both data and error"));
            }
        }
        // `{"id":1}` says nothing: a success reply carries `data` (`null` allowed).
        None if wire.data.is_none() => return Err(EnvelopeError::NotEnvelope("reply has neither data nor error")),
        None => {}
    }
    Ok(Frame::Reply(Reply { id, data, error: wire.error }))
}

/// Ids are JSON strings or numbers (`null` never reaches here: serde maps it to `None`).
fn is_id(id: &RawValue) -> bool {
    let first = id.get().as_bytes()[0];
    first == b'"' || first == b'-' || first.is_ascii_digit()
}

/// Serialises an error reply `{"id":…,"error":{"code":…,"message":…}}` for a request Rust answers
/// itself (an unknown request). `id_json` is the request's id exactly as the client wrote it.
pub fn error_reply(id_json: &str, code: &str, message: &str) -> String {
    let error = serde_json::json!({ "code": code, "message": message });
    format!(r#"{{"id":{id_json},"error":{error}}}"#)
}

/// Serialises an outbound event frame payload. Used for messages Rust itself emits (the `error`
/// event of reply mode); application payloads are serialised once in JS.
pub fn event_payload(event: &str, data: &serde_json::Value) -> String {
    serde_json::json!({ "event": event, "data": data }).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(text: &str) -> Envelope<'_> {
        match parse(text) {
            Ok(Frame::Event(e)) => e,
            other => panic!("expected an event for {text}, got {other:?}"),
        }
    }

    fn reply(text: &str) -> Reply<'_> {
        match parse(text) {
            Ok(Frame::Reply(r)) => r,
            other => panic!("expected a reply for {text}, got {other:?}"),
        }
    }

    /// The table shared with the Node suite (`__test__/envelope-cases.test.mjs`), so both sides
    /// of the boundary agree on what each frame is.
    #[test]
    fn the_shared_table_of_envelope_cases() {
        let table: serde_json::Value = serde_json::from_str(include_str!("../test/fixtures/envelope-cases.json")).unwrap();
        let value = |raw: Option<&RawValue>| raw.map_or(serde_json::Value::Null, |r| serde_json::from_str(r.get()).unwrap());
        let cases = table["cases"].as_array().unwrap();
        assert!(cases.len() >= 30);
        for case in cases {
            let wire = case["wire"].as_str().unwrap();
            match (case["kind"].as_str().unwrap(), parse(wire)) {
                ("event", Ok(Frame::Event(e))) if e.id.is_none() => {
                    assert_eq!(e.event, case["event"].as_str().unwrap(), "{wire}");
                    assert_eq!(value(e.data), case["data"], "{wire}");
                }
                ("request", Ok(Frame::Event(e))) if e.id.is_some() => {
                    assert_eq!(e.event, case["event"].as_str().unwrap(), "{wire}");
                    assert_eq!(value(e.data), case["data"], "{wire}");
                    assert_eq!(e.id.unwrap().get(), case["rawId"].as_str().unwrap(), "{wire}: the id is kept verbatim");
                }
                ("reply", Ok(Frame::Reply(r))) => {
                    assert_eq!(serde_json::from_str::<serde_json::Value>(r.id.get()).unwrap(), case["id"], "{wire}");
                    assert_eq!(value(r.data), case["data"], "{wire}");
                    assert_eq!(value(r.error), case["error"], "{wire}");
                }
                ("invalid", Err(_)) => {}
                (kind, other) => panic!("{wire}: expected {kind}, got {other:?}"),
            }
        }
    }

    #[test]
    fn splits_a_full_envelope_keeping_raw_slices() {
        let e = event(r#"{"event":"chat:send","data":{"a":[1, 2]},"meta":{"traceparent":"x"},"id":7}"#);
        assert_eq!(e.event, "chat:send");
        assert_eq!(e.event_json, r#""chat:send""#);
        assert_eq!(e.data.unwrap().get(), r#"{"a":[1, 2]}"#);
        assert_eq!(e.meta.unwrap().get(), r#"{"traceparent":"x"}"#);
        assert_eq!(e.id.unwrap().get(), "7");
    }

    #[test]
    fn data_is_optional_and_null_is_absent() {
        assert!(event(r#"{"event":"ping"}"#).data.is_none());
        assert!(event(r#"{"event":"ping","data":null}"#).data.is_none());
        assert!(event(r#"{"event":"ping","id":null}"#).id.is_none(), "a null id is no id");
        assert!(parse(r#"{"event":"x","data":0,"extra":true}"#).is_ok(), "unknown fields are ignored");
    }

    #[test]
    fn escaped_event_names_are_unescaped_but_kept_raw() {
        let e = event(r#"{"event":"a\u0062c","data":1}"#);
        assert_eq!(e.event, "abc");
        assert_eq!(e.event_json, r#""a\u0062c""#);
    }

    #[test]
    fn request_ids_are_kept_verbatim() {
        assert_eq!(event(r#"{"event":"q","id":"r\u0031"}"#).id.unwrap().get(), r#""r\u0031""#);
        assert_eq!(event(r#"{"event":"q","id":1.50}"#).id.unwrap().get(), "1.50");
        assert_eq!(event(r#"{"event":"q","id":-12345678901234567890}"#).id.unwrap().get(), "-12345678901234567890");
        assert_eq!(event(r#"{"event":"q", "id" :  "a b" }"#).id.unwrap().get(), r#""a b""#);
        assert!(event(r#"{"event":"q","id":3,"error":5}"#).id.is_some(), "error is ignored on events");
    }

    #[test]
    fn replies_have_an_id_and_data_or_an_error() {
        let r = reply(r#"{"id":3,"data":{"ok":[true]}}"#);
        assert_eq!((r.id.get(), r.data.unwrap().get()), ("3", r#"{"ok":[true]}"#));
        assert!(r.error.is_none());
        let r = reply(r#"{"id":"a","error":{"code":"nope","message":"no"}}"#);
        assert_eq!(r.id.get(), r#""a""#);
        assert_eq!(r.error.unwrap().get(), r#"{"code":"nope","message":"no"}"#);
        assert!(r.data.is_none());
        assert!(reply(r#"{"id":1,"data":null}"#).data.is_none(), "a reply may carry null");
        assert!(reply(r#"{"id":1,"data":null,"error":{}}"#).error.is_some(), "null data beside an error is absent");
        assert!(reply(r#"{"id":1,"data":2,"meta":{},"x":0}"#).data.is_some(), "unknown fields are ignored");
    }

    #[test]
    fn rejects_malformed_replies() {
        assert_eq!(parse(r#"{"data":1}"#).unwrap_err(), EnvelopeError::NotEnvelope("missing event"));
        assert_eq!(parse(r#"{"id":null,"data":1}"#).unwrap_err(), EnvelopeError::NotEnvelope("missing event"));
        assert_eq!(parse("{}").unwrap_err(), EnvelopeError::NotEnvelope("missing event"));
        assert_eq!(parse(r#"{"id":1}"#).unwrap_err(), EnvelopeError::NotEnvelope("reply has neither data nor error"));
        assert_eq!(parse(r#"{"id":1,"error":null}"#).unwrap_err(), EnvelopeError::NotEnvelope("reply has neither data nor error"));
        assert_eq!(
            parse(r#"{"id":1,"data":1,"error":{"code":"x"}}"#).unwrap_err(),
            EnvelopeError::NotEnvelope("reply has both data and error")
        );
        assert_eq!(
            parse(r#"{"id":1,"error":"x"}"#).unwrap_err(),
            EnvelopeError::NotEnvelope("reply error is not an object")
        );
        assert!(matches!(parse(r#"{"id":true,"data":1}"#), Err(EnvelopeError::NotEnvelope(_))));
        assert!(matches!(parse(r#"{"id":[1],"data":1}"#), Err(EnvelopeError::NotEnvelope(_))));
        assert!(matches!(parse(r#"{"id":1,"id":2}"#), Err(EnvelopeError::NotEnvelope(_))));
    }

    #[test]
    fn rejects_what_is_not_an_envelope() {
        assert_eq!(parse("not json").unwrap_err(), EnvelopeError::NotEnvelope("not a JSON object"));
        assert_eq!(parse("{\"event\":").unwrap_err(), EnvelopeError::NotJson);
        assert!(matches!(parse(r#"["event","x"]"#), Err(EnvelopeError::NotEnvelope(_))));
        assert!(matches!(parse(r#"{"event":5}"#), Err(EnvelopeError::NotEnvelope(_))));
        assert!(matches!(parse(r#"{"event":""}"#), Err(EnvelopeError::NotEnvelope(_))));
        assert!(matches!(parse(r#"{"event":"x","meta":3}"#), Err(EnvelopeError::NotEnvelope(_))));
        assert!(matches!(parse(r#"{"event":"x","id":{}}"#), Err(EnvelopeError::NotEnvelope(_))));
        assert!(matches!(parse(r#"{"event":"x","id":false}"#), Err(EnvelopeError::NotEnvelope(_))));
        assert!(parse(r#"{"event":"x","event":"y"}"#).is_err(), "duplicate keys are ambiguous");
    }

    #[test]
    fn error_replies_echo_the_id_verbatim_and_escape_the_message() {
        let text = error_reply("1.50", "unknown_request", r#"Unknown request "a\b""#);
        assert_eq!(text, r#"{"id":1.50,"error":{"code":"unknown_request","message":"Unknown request \"a\\b\""}}"#);
        let v: serde_json::Value = serde_json::from_str(&error_reply(r#""x\u0031""#, "c", "m")).unwrap();
        assert_eq!(v, serde_json::json!({ "id": "x1", "error": { "code": "c", "message": "m" } }));
    }
}
