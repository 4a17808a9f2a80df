//! Each scheme against signatures computed here: valid, tampered, wrong secret, rotation,
//! stale and future timestamps, missing headers; and the delivery ids.

use serde_json::json;

use super::*;

const NOW_MS: i64 = 1_780_000_000_000;
const NOW: i64 = NOW_MS / 1000;
const BODY: &[u8] = br#"{"id":"evt_1","type":"invoice.paid"}"#;

fn headers(pairs: &[(&str, String)]) -> Headers {
    pairs
        .iter()
        .map(|(name, value)| ((*name).to_owned(), value.clone()))
        .collect()
}

fn stripe(secret: &str, t: i64, body: &[u8]) -> Headers {
    let sig = to_hex(&hmac_sha256(
        secret.as_bytes(),
        &[t.to_string().as_bytes(), b".", body],
    ));
    headers(&[("stripe-signature", format!("t={t},v1={sig}"))])
}

#[test]
fn stripe_signatures_are_checked_with_every_secret_and_the_clock() {
    let ok = stripe("whsec_new", NOW, BODY);
    assert_eq!(
        Scheme::Stripe.verify(&ok, BODY, &["whsec_old", "whsec_new"], NOW_MS),
        Ok(())
    );
    let tampered = br#"{"id":"evt_1","type":"invoice.void"}"#;
    assert!(matches!(
        Scheme::Stripe.verify(&ok, tampered, &["whsec_new"], NOW_MS),
        Err(VerifyError::InvalidSignature { .. })
    ));
    assert!(matches!(
        Scheme::Stripe.verify(&ok, BODY, &["whsec_other"], NOW_MS),
        Err(VerifyError::InvalidSignature { .. })
    ));
    for t in [NOW - 301, NOW + 301] {
        assert_eq!(
            Scheme::Stripe.verify(&stripe("s", t, BODY), BODY, &["s"], NOW_MS),
            Err(VerifyError::TimestampOutOfTolerance {
                timestamp: t,
                now: NOW
            })
        );
    }
    for t in [NOW - 300, NOW + 300] {
        assert_eq!(
            Scheme::Stripe.verify(&stripe("s", t, BODY), BODY, &["s"], NOW_MS),
            Ok(())
        );
    }
    assert!(matches!(
        Scheme::Stripe.verify(&Headers::new(), BODY, &["s"], NOW_MS),
        Err(VerifyError::MissingSignature { header }) if header == "stripe-signature"
    ));
}

#[test]
fn github_and_generic_hmac_sign_the_body() {
    let sig = to_hex(&hmac_sha256(b"gh", &[BODY]));
    let signed = headers(&[("x-hub-signature-256", format!("sha256={sig}"))]);
    assert_eq!(
        Scheme::GitHub.verify(&signed, BODY, &["gh"], NOW_MS),
        Ok(())
    );
    assert!(
        Scheme::GitHub
            .verify(&signed, b"{}", &["gh"], NOW_MS)
            .is_err()
    );
    let generic = Scheme::Hmac {
        header: "x-signature".into(),
        prefix: String::new(),
        id_header: Some("x-delivery".into()),
    };
    let signed = headers(&[("x-signature", sig), ("x-delivery", "d-7".into())]);
    assert_eq!(generic.verify(&signed, BODY, &["gh"], NOW_MS), Ok(()));
    assert_eq!(generic.delivery_id(&signed, BODY, &json!({})), "d-7");
}

#[test]
fn standard_webhooks_sign_id_timestamp_and_body_with_a_base64_key() {
    let key = b"0123456789abcdef0123456789abcdef";
    let secret = format!("whsec_{}", BASE64.encode(key));
    let signed = |ts: i64| {
        let sig = hmac_sha256(key, &[b"msg_1.", ts.to_string().as_bytes(), b".", BODY]);
        headers(&[
            ("webhook-id", "msg_1".into()),
            ("webhook-timestamp", ts.to_string()),
            (
                "webhook-signature",
                format!("v1,bm90IGl0 v1,{}", BASE64.encode(sig)),
            ),
        ])
    };
    let scheme = Scheme::StandardWebhooks;
    assert_eq!(
        scheme.verify(&signed(NOW), BODY, &[&secret], NOW_MS),
        Ok(())
    );
    assert!(matches!(
        scheme.verify(&signed(NOW - 3_600), BODY, &[&secret], NOW_MS),
        Err(VerifyError::TimestampOutOfTolerance { .. })
    ));
    assert!(matches!(
        scheme.verify(&signed(NOW), BODY, &["whsec_!!"], NOW_MS),
        Err(VerifyError::BadSecret(_))
    ));
    assert_eq!(scheme.delivery_id(&signed(NOW), BODY, &json!({})), "msg_1");
}

#[test]
fn slack_signs_version_timestamp_and_body() {
    let sig = to_hex(&hmac_sha256(
        b"sl",
        &[b"v0:", NOW.to_string().as_bytes(), b":", BODY],
    ));
    let signed = headers(&[
        ("x-slack-request-timestamp", NOW.to_string()),
        ("x-slack-signature", format!("v0={sig}")),
    ]);
    assert_eq!(Scheme::Slack.verify(&signed, BODY, &["sl"], NOW_MS), Ok(()));
    assert!(
        Scheme::Slack
            .verify(&signed, BODY, &["other"], NOW_MS)
            .is_err()
    );
}

#[test]
fn delivery_ids_come_from_the_provider_else_the_body_hash() {
    let event = json!({"id": "evt_1"});
    assert_eq!(
        Scheme::Stripe.delivery_id(&Headers::new(), BODY, &event),
        "evt_1"
    );
    let unnamed = Scheme::GitHub.delivery_id(&Headers::new(), BODY, &event);
    assert_eq!(unnamed, body_id(BODY));
    assert_eq!(unnamed.len(), "sha256:".len() + 64);
    let long = json!({"id": "x".repeat(MAX_DELIVERY_ID_LEN + 1)});
    assert_eq!(
        Scheme::Stripe.delivery_id(&Headers::new(), BODY, &long),
        body_id(BODY)
    );
}
