//! The Standard Webhooks scheme cross-checked against the reference implementation (the
//! `standardwebhooks` crate): what it signs, this crate verifies, under the same `whsec_`
//! key, with the signature among others in the header (rotation); what it would refuse
//! (another body, another id, another key), this crate refuses too.

use cairn_triggers::{Headers, Scheme, VerifyError};

const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
const BODY: &[u8] = br#"{"type":"invoice.paid","data":{"id":"in_1"}}"#;
const NOW: i64 = 1_780_000_000;

/// The headers the reference implementation's signature of `body` as `id` at `NOW` makes,
/// after an unrelated signature (a provider rotating its keys sends both).
fn signed_by_the_reference(id: &str, body: &[u8]) -> Headers {
    let reference = standardwebhooks::Webhook::new(SECRET).expect("a whsec_ key");
    let signature = reference.sign(id, NOW, body).expect("signed");
    [
        ("webhook-id", id.to_owned()),
        ("webhook-timestamp", NOW.to_string()),
        (
            "webhook-signature",
            format!("v1,c29tZW9uZSBlbHNlJ3M= {signature}"),
        ),
    ]
    .into_iter()
    .map(|(name, value)| (name.to_owned(), value))
    .collect()
}

#[test]
fn what_the_reference_signs_verifies() {
    let headers = signed_by_the_reference("msg_2Zx", BODY);
    let verified = Scheme::StandardWebhooks.verify(&headers, BODY, &[SECRET], NOW * 1_000);
    assert_eq!(verified, Ok(()));
    assert_eq!(
        Scheme::StandardWebhooks.delivery_id(&headers, BODY, &serde_json::json!({})),
        "msg_2Zx"
    );
}

#[test]
fn what_the_reference_would_refuse_is_refused() {
    let headers = signed_by_the_reference("msg_2Zx", BODY);
    let other_body = br#"{"type":"invoice.paid","data":{"id":"in_2"}}"#;
    let mut other_id = headers.clone();
    other_id.insert("webhook-id".into(), "msg_other".into());
    let other_key = "whsec_dGhlIG90aGVyIGtleSBvZiB0aGlzIHRlc3Q=";
    for (headers, body, secret) in [
        (&headers, &other_body[..], SECRET),
        (&other_id, BODY, SECRET),
        (&headers, BODY, other_key),
    ] {
        let verified = Scheme::StandardWebhooks.verify(headers, body, &[secret], NOW * 1_000);
        assert!(
            matches!(verified, Err(VerifyError::InvalidSignature { .. })),
            "{verified:?}"
        );
    }
}
