//! Signing tests: the published Standard Webhooks vectors, their negative cases, the replay
//! window and a sign → verify round trip.

use super::*;
use proptest::prelude::*;
use serde::Deserialize;

#[derive(Deserialize)]
struct Vectors {
    vectors: Vec<Vector>,
    negative: Negative,
}

#[derive(Deserialize)]
struct Vector {
    secret: String,
    msg_id: String,
    timestamp: i64,
    payload: String,
    expected_signature: String,
}

#[derive(Deserialize)]
struct Negative {
    for_vector: usize,
    must_not_verify: Vec<String>,
    timestamp_tolerance_s: u64,
}

fn load() -> Vectors {
    serde_json::from_str(odoo_gateway_fixtures::STANDARD_WEBHOOKS_VECTORS)
        .expect("parse standard-webhooks vectors")
}

fn secret(v: &Vector) -> SigningSecret {
    v.secret.parse().expect("vector secret parses")
}

fn check(v: &Vector, signature: &str, now: i64, tolerance: Duration) -> Result<(), VerifyError> {
    let ts = v.timestamp.to_string();
    let secrets = [secret(v)];
    verify(
        &secrets,
        &v.msg_id,
        &ts,
        signature,
        v.payload.as_bytes(),
        now,
        tolerance,
    )
}

#[test]
fn published_vectors_sign_and_verify() {
    let all = load();
    assert!(!all.vectors.is_empty());
    for v in &all.vectors {
        let got = sign(&[secret(v)], &v.msg_id, v.timestamp, v.payload.as_bytes());
        assert_eq!(got, v.expected_signature, "vector {}", v.msg_id);
        check(v, &v.expected_signature, v.timestamp, DEFAULT_TOLERANCE).unwrap();
    }
}

#[test]
fn negative_signatures_are_refused() {
    let all = load();
    let v = &all.vectors[all.negative.for_vector];
    for bad in &all.negative.must_not_verify {
        let err = check(v, bad, v.timestamp, DEFAULT_TOLERANCE).unwrap_err();
        assert_eq!(err, VerifyError::Mismatch, "{bad:?} must not verify");
    }
    // A correct signature for another payload does not verify this one.
    let other = &all.vectors[1 - all.negative.for_vector];
    assert_eq!(
        check(v, &other.expected_signature, v.timestamp, DEFAULT_TOLERANCE),
        Err(VerifyError::Mismatch)
    );
}

#[test]
fn timestamp_outside_tolerance_is_refused() {
    let all = load();
    let v = &all.vectors[all.negative.for_vector];
    let tol_s = all.negative.timestamp_tolerance_s;
    assert_eq!(Duration::from_secs(tol_s), DEFAULT_TOLERANCE);
    let tol = i64::try_from(tol_s).unwrap();
    let sig = &v.expected_signature;
    assert!(check(v, sig, v.timestamp + tol, DEFAULT_TOLERANCE).is_ok());
    assert!(check(v, sig, v.timestamp - tol, DEFAULT_TOLERANCE).is_ok());
    assert_eq!(
        check(v, sig, v.timestamp + tol + 1, DEFAULT_TOLERANCE),
        Err(VerifyError::TooOld { age_secs: tol + 1 })
    );
    assert_eq!(
        check(v, sig, v.timestamp - tol - 1, DEFAULT_TOLERANCE),
        Err(VerifyError::InFuture {
            ahead_secs: tol + 1
        })
    );
}

#[test]
fn malformed_headers_have_their_own_errors() {
    let all = load();
    let v = &all.vectors[0];
    let secrets = [secret(v)];
    let body = v.payload.as_bytes();
    let sig = &v.expected_signature;
    let now = v.timestamp;
    let tol = DEFAULT_TOLERANCE;
    assert_eq!(
        verify(&secrets, &v.msg_id, "soon", sig, body, now, tol),
        Err(VerifyError::InvalidTimestamp)
    );
    let ts = v.timestamp.to_string();
    assert_eq!(
        verify(&secrets, &v.msg_id, &ts, "v2,abc", body, now, tol),
        Err(VerifyError::NoSignature)
    );
    assert_eq!(
        verify(&[], &v.msg_id, &ts, sig, body, now, tol),
        Err(VerifyError::NoSecrets)
    );
    assert_eq!(VerifyError::Mismatch.code(), "signature_mismatch");
}

#[test]
fn rotation_signs_with_every_secret_and_either_verifies() {
    let old = SigningSecret::generate();
    let new = SigningSecret::generate();
    let header = sign(&[old.clone(), new.clone()], "msg_1", 1_700_000_000, b"{}");
    let parts: Vec<&str> = header.split(' ').collect();
    assert_eq!(parts.len(), 2);
    assert!(parts.iter().all(|p| p.starts_with("v1,")));
    for s in [old, new] {
        let r = verify(
            &[s],
            "msg_1",
            "1700000000",
            &header,
            b"{}",
            1_700_000_000,
            DEFAULT_TOLERANCE,
        );
        assert!(r.is_ok());
    }
    let stranger = SigningSecret::generate();
    let r = verify(
        &[stranger],
        "msg_1",
        "1700000000",
        &header,
        b"{}",
        1_700_000_000,
        DEFAULT_TOLERANCE,
    );
    assert_eq!(r, Err(VerifyError::Mismatch));
}

#[test]
fn secret_parsing_and_redaction() {
    let s: SigningSecret = "whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD".parse().unwrap();
    assert_eq!(s.expose_whsec(), "whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD");
    assert!(!format!("{s:?}").contains("C2FV"));
    assert!(!format!("{s}").contains("C2FV"));
    assert_eq!(
        "C2FVsBQIhrscChlQIMV+b5sSYspob7oD".parse::<SigningSecret>(),
        Err(SecretParseError::MissingPrefix)
    );
    assert_eq!(
        "whsec_!!!".parse::<SigningSecret>(),
        Err(SecretParseError::InvalidBase64)
    );
    assert_eq!(
        "whsec_c2hvcnQ=".parse::<SigningSecret>(),
        Err(SecretParseError::TooShort(5))
    );
    let from_json: Vec<SigningSecret> =
        serde_json::from_str(r#"["whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD"]"#).unwrap();
    assert_eq!(from_json, vec![s]);
    assert!(serde_json::from_str::<SigningSecret>(r#""nope""#).is_err());
}

#[test]
fn headers_carry_id_timestamp_and_signature() {
    let s = SigningSecret::generate();
    let mut h = http::HeaderMap::new();
    h.extend(webhook_headers(std::slice::from_ref(&s), "msg_9", 42, b"body").unwrap());
    assert_eq!(h[HEADER_ID], "msg_9");
    assert_eq!(h[HEADER_TIMESTAMP], "42");
    let sig = h[HEADER_SIGNATURE].to_str().unwrap();
    assert_eq!(sig, sign(std::slice::from_ref(&s), "msg_9", 42, b"body"));
    assert!(verify(&[s], "msg_9", "42", sig, b"body", 42, DEFAULT_TOLERANCE).is_ok());
    assert_eq!(
        webhook_headers(&[], "bad\nid", 42, b""),
        Err(SignError::InvalidMsgId)
    );
}

proptest! {
    #[test]
    fn sign_then_verify_roundtrips(
        key in proptest::collection::vec(any::<u8>(), 16..64),
        msg_id in "[a-zA-Z0-9_]{1,40}",
        ts in 0i64..4_000_000_000,
        body in proptest::collection::vec(any::<u8>(), 0..512),
        flip in any::<usize>(),
    ) {
        let secret = SigningSecret::from_bytes(&key).unwrap();
        let secrets = [secret];
        let sig = sign(&secrets, &msg_id, ts, &body);
        let ts_s = ts.to_string();
        prop_assert!(verify(&secrets, &msg_id, &ts_s, &sig, &body, ts, DEFAULT_TOLERANCE).is_ok());
        // Any change to the body breaks the signature.
        let mut tampered = body.clone();
        if tampered.is_empty() {
            tampered.push(0);
        } else {
            let i = flip % tampered.len();
            tampered[i] ^= 0x01;
        }
        prop_assert_eq!(
            verify(&secrets, &msg_id, &ts_s, &sig, &tampered, ts, DEFAULT_TOLERANCE),
            Err(VerifyError::Mismatch)
        );
    }
}
