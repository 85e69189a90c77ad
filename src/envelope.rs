//! The wire envelope `{"event", "data", "meta"?, "id"?}` (design §3).
//!
//! Rust only splits the envelope: it checks the shape, finds the event name (to reject events
//! outside the contract before they cost a trip to JS) and keeps `data`, `meta` and `id` as raw
//! JSON slices. Those slices are copied verbatim into the batch that JS parses with one
//! `JSON.parse`, so no value is ever decoded and re-encoded in Rust.

use serde::Deserialize;
use serde_json::value::RawValue;
use std::borrow::Cow;

/// A parsed inbound envelope borrowing from the frame payload.
#[derive(Debug)]
pub struct Envelope<'a> {
    /// The event name as it appeared on the wire (a JSON string token, quotes included).
    pub event_json: &'a str,
    /// The unescaped event name.
    pub event: Cow<'a, str>,
    pub data: Option<&'a RawValue>,
    pub meta: Option<&'a RawValue>,
    pub id: Option<&'a RawValue>,
}

/// Why a message is not an envelope; both close 1007 `Invalid message payload`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EnvelopeError {
    NotJson,
    NotEnvelope(&'static str),
}

#[derive(Deserialize)]
struct Wire<'a> {
    #[serde(borrow)]
    event: Option<&'a RawValue>,
    #[serde(borrow)]
    data: Option<&'a RawValue>,
    #[serde(borrow)]
    meta: Option<&'a RawValue>,
    #[serde(borrow)]
    id: Option<&'a RawValue>,
}

pub fn parse(text: &str) -> Result<Envelope<'_>, EnvelopeError> {
    // serde would also accept `["name", …]` for a struct; an envelope must be an object.
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
    let event_raw = wire.event.ok_or(EnvelopeError::NotEnvelope("missing event"))?;
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
    if let Some(id) = wire.id {
        let first = id.get().as_bytes()[0];
        if !(first == b'"' || first == b'-' || first.is_ascii_digit()) {
            return Err(EnvelopeError::NotEnvelope("id is not a string or number"));
        }
    }
    Ok(Envelope { event_json, event, data: wire.data, meta: wire.meta, id: wire.id })
}

/// Serialises an outbound event frame payload. Used for messages Rust itself emits (the `error`
/// event of reply mode); application payloads are serialised once in JS.
pub fn event_payload(event: &str, data: &serde_json::Value) -> String {
    serde_json::json!({ "event": event, "data": data }).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_a_full_envelope_keeping_raw_slices() {
        let e = parse(r#"{"event":"chat:send","data":{"a":[1, 2]},"meta":{"traceparent":"x"},"id":7}"#).unwrap();
        assert_eq!(e.event, "chat:send");
        assert_eq!(e.event_json, r#""chat:send""#);
        assert_eq!(e.data.unwrap().get(), r#"{"a":[1, 2]}"#);
        assert_eq!(e.meta.unwrap().get(), r#"{"traceparent":"x"}"#);
        assert_eq!(e.id.unwrap().get(), "7");
    }

    #[test]
    fn data_is_optional_and_null_is_absent() {
        assert!(parse(r#"{"event":"ping"}"#).unwrap().data.is_none());
        assert!(parse(r#"{"event":"ping","data":null}"#).unwrap().data.is_none());
        assert!(parse(r#"{"event":"x","data":0,"extra":true}"#).is_ok(), "unknown fields are ignored");
    }

    #[test]
    fn escaped_event_names_are_unescaped_but_kept_raw() {
        let e = parse(r#"{"event":"a\u0062c","data":1}"#).unwrap();
        assert_eq!(e.event, "abc");
        assert_eq!(e.event_json, r#""a\u0062c""#);
    }

    #[test]
    fn rejects_what_is_not_an_envelope() {
        assert_eq!(parse("not json").unwrap_err(), EnvelopeError::NotEnvelope("not a JSON object"));
        assert_eq!(parse("{\"event\":").unwrap_err(), EnvelopeError::NotJson);
        assert!(matches!(parse(r#"["event","x"]"#), Err(EnvelopeError::NotEnvelope(_))));
        assert!(matches!(parse(r#"{"data":1}"#), Err(EnvelopeError::NotEnvelope(_))));
        assert!(matches!(parse(r#"{"event":5}"#), Err(EnvelopeError::NotEnvelope(_))));
        assert!(matches!(parse(r#"{"event":""}"#), Err(EnvelopeError::NotEnvelope(_))));
        assert!(matches!(parse(r#"{"event":"x","meta":3}"#), Err(EnvelopeError::NotEnvelope(_))));
        assert!(matches!(parse(r#"{"event":"x","id":{}}"#), Err(EnvelopeError::NotEnvelope(_))));
        assert!(parse(r#"{"event":"x","event":"y"}"#).is_err(), "duplicate keys are ambiguous");
    }
}
