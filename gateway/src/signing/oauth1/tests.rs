//! RFC 5849 vectors (errata 2550 applies) and the encoding rules.

use super::*;

fn vectors() -> serde_json::Value {
    serde_json::from_str(odoo_gateway_fixtures::OAUTH1_VECTORS).expect("the vectors are JSON")
}

fn pairs(value: &serde_json::Value) -> Vec<(String, String)> {
    value
        .as_array()
        .expect("a list of pairs")
        .iter()
        .map(|p| {
            (
                p[0].as_str().expect("name").to_owned(),
                p[1].as_str().expect("value").to_owned(),
            )
        })
        .collect()
}

/// Splits the vector's `request` text into method, URL and form body.
fn request(text: &str) -> (&str, &str, Option<&str>) {
    let (request, body) = match text.split_once(", body (application/x-www-form-urlencoded): ") {
        Some((r, b)) => (r, Some(b)),
        None => (text, None),
    };
    let (method, url) = request.split_once(' ').expect("METHOD URL");
    (method, url, body)
}

#[test]
fn rfc5849_vectors_base_strings_and_signatures() {
    let v = vectors();
    for vector in v["vectors"].as_array().expect("vectors") {
        let name = vector["name"].as_str().unwrap_or("?");
        let (method, url, body) = request(vector["request"].as_str().expect("request"));
        let expected = pairs(&vector["params_decoded"]);

        // Collect the parameters as the gateway does: query, form body, protocol parameters.
        let mut collected = query_params(url).unwrap();
        collected.extend(body.map(|b| parse_form(b).unwrap()).unwrap_or_default());
        collected.extend(
            expected
                .iter()
                .filter(|(n, _)| n.starts_with("oauth_"))
                .cloned(),
        );
        let mut sorted_collected = collected.clone();
        sorted_collected.sort();
        let mut sorted_expected = expected.clone();
        sorted_expected.sort();
        assert_eq!(sorted_collected, sorted_expected, "{name}: parameters");

        let base_uri = base_string_uri(url).expect("URL");
        let base = signature_base_string(method, &base_uri, &collected);
        assert_eq!(
            base,
            vector["base_string"].as_str().expect("base string"),
            "{name}: base string"
        );

        let (cs, ts) = (
            vector["client_secret"].as_str().expect("cs"),
            vector["token_secret"].as_str().expect("ts"),
        );
        let signature = sign(&base, cs, ts, SignatureMethod::HmacSha1);
        assert_eq!(
            signature,
            vector["signature"].as_str().expect("signature"),
            "{name}: signature"
        );

        // The public one-call signer agrees.
        let others: Vec<_> = collected[query_params(url).unwrap().len()..].to_vec();
        assert_eq!(
            sign_request(method, url, &others, cs, ts, SignatureMethod::HmacSha1).expect("sign"),
            signature
        );
    }
}

#[test]
fn rfc5849_plaintext_vector() {
    let p = &vectors()["plaintext"];
    let signature = sign(
        "ignored",
        p["client_secret"].as_str().unwrap(),
        p["token_secret"].as_str().unwrap(),
        SignatureMethod::Plaintext,
    );
    assert_eq!(signature, p["signature"].as_str().unwrap());
}

#[test]
fn realm_and_signature_in_the_header_are_read_then_left_out() {
    let header = r#"OAuth realm="Photos", oauth_consumer_key="dpf43f3p2l4k3l03", oauth_signature_method="HMAC-SHA1", oauth_timestamp="137131200", oauth_nonce="wIjqoS", oauth_callback="http%3A%2F%2Fprinter.example.com%2Fready", oauth_signature="74KNZJeDHnMBp0EMJ9ZHt%2FXKycU%3D""#;
    let params = parse_authorization(header).expect("header");
    assert_eq!(params[0], ("realm".to_owned(), "Photos".to_owned()));
    assert!(params.contains(&(
        "oauth_callback".to_owned(),
        "http://printer.example.com/ready".to_owned()
    )));
    let signature = params
        .iter()
        .find(|(n, _)| n == "oauth_signature")
        .map(|(_, v)| v.clone())
        .unwrap();
    let signed: Vec<_> = params
        .into_iter()
        .filter(|(n, _)| n != "realm" && n != "oauth_signature")
        .collect();
    let expected = sign_request(
        "POST",
        "https://photos.example.net/initiate",
        &signed,
        "kd94hf93k423kf44",
        "",
        SignatureMethod::HmacSha1,
    )
    .unwrap();
    assert!(signature_matches(&expected, &signature));
    assert!(!signature_matches(
        &expected,
        "74KNZJeDHnMBp0EMJ9ZHt/XKycV="
    ));
}

#[test]
fn built_headers_round_trip_for_both_hmac_methods() {
    let credentials = OAuth1Credentials {
        consumer_key: "key with space".to_owned(),
        consumer_secret: "cs&=".to_owned(),
        token: Some("tok".to_owned()),
        token_secret: "ts~".to_owned(),
    };
    for method in [SignatureMethod::HmacSha1, SignatureMethod::HmacSha256] {
        let url = "HTTP://Example.COM:80/v1/whoami?x=1%202&y";
        let header = authorization_header(
            "get",
            url,
            &[],
            &credentials,
            method,
            1_700_000_000,
            "n0nce",
        )
        .unwrap();
        let params = parse_authorization(&header).unwrap();
        assert!(params.contains(&("oauth_consumer_key".to_owned(), "key with space".to_owned())));
        let signature = params
            .iter()
            .find(|(n, _)| n == "oauth_signature")
            .map(|(_, v)| v.clone())
            .unwrap();
        let mut signed: Vec<_> = params
            .into_iter()
            .filter(|(n, _)| n != "oauth_signature")
            .collect();
        signed.extend(query_params(url).unwrap());
        let base = signature_base_string("GET", &base_string_uri(url).unwrap(), &signed);
        assert!(base.starts_with("GET&http%3A%2F%2Fexample.com%2Fv1%2Fwhoami&oauth_consumer_key%3Dkey%2520with%2520space"), "{base}");
        assert_eq!(sign(&base, "cs&=", "ts~", method), signature);
    }
    let sha1 = authorization_header(
        "GET",
        "http://a.example/",
        &[],
        &credentials,
        SignatureMethod::HmacSha1,
        1,
        "n",
    )
    .unwrap();
    let sha256 = authorization_header(
        "GET",
        "http://a.example/",
        &[],
        &credentials,
        SignatureMethod::HmacSha256,
        1,
        "n",
    )
    .unwrap();
    assert_ne!(sha1, sha256);
}

#[test]
fn percent_encoding_follows_section_3_6() {
    assert_eq!(percent_encode("AZaz09-._~"), "AZaz09-._~");
    assert_eq!(percent_encode("a b+c*/%é"), "a%20b%2Bc%2A%2F%25%C3%A9");
    assert_eq!(percent_decode("a%20b+c%2x%", true).unwrap(), "a b c%2x%");
    assert_eq!(percent_decode("a+b", false).unwrap(), "a+b");
    assert_eq!(
        parse_form("a=1&&b&c=%3D=x").unwrap(),
        vec![
            ("a".to_owned(), "1".to_owned()),
            ("b".to_owned(), String::new()),
            ("c".to_owned(), "==x".to_owned()),
        ]
    );
}

#[test]
fn base_string_uri_normalises_scheme_host_and_port() {
    assert_eq!(
        base_string_uri("HTTP://EXAMPLE.COM:80/r%20v/X?id=123").unwrap(),
        "http://example.com/r%20v/X"
    );
    assert_eq!(
        base_string_uri("https://www.example.net:8080/?q=1").unwrap(),
        "https://www.example.net:8080/"
    );
    assert_eq!(
        base_string_uri("https://example.net:443").unwrap(),
        "https://example.net/"
    );
    assert!(base_string_uri("/relative").is_err());
    assert!(base_string_uri("ftp://example.net/").is_err());
}

#[test]
fn malformed_headers_are_refused() {
    assert!(parse_authorization("Bearer abc").is_err());
    assert!(parse_authorization("OAuth oauth_nonce=abc").is_err());
    assert!(parse_authorization("OAuth oauth_nonce=\"abc").is_err());
    assert!(parse_authorization("OAuth a=\"1\" b=\"2\"").is_err());
    assert_eq!(
        parse_authorization("oauth a=\"1\",b=\"%41\"")
            .unwrap()
            .len(),
        2
    );
}

#[test]
fn credentials_debug_hides_secrets() {
    let c = OAuth1Credentials {
        consumer_key: "ck".into(),
        consumer_secret: "s3cr3t".into(),
        token: None,
        token_secret: "t0k3n".into(),
    };
    let shown = format!("{c:?}");
    assert!(!shown.contains("s3cr3t") && !shown.contains("t0k3n") && shown.contains("ck"));
}

proptest::proptest! {
    #[test]
    fn header_parsing_never_panics(text in ".{0,200}") {
        let _ = parse_authorization(&format!("OAuth {text}"));
        let _ = parse_form(&text);
    }

    #[test]
    fn encoding_round_trips(value in "\\PC{0,40}") {
        proptest::prop_assert_eq!(percent_decode(&percent_encode(&value), false).unwrap(), value.clone());
        proptest::prop_assert_eq!(percent_decode(&percent_encode(&value), true).unwrap(), value);
    }

    #[test]
    fn built_headers_parse_back(pairs in proptest::collection::vec(("[a-z_]{1,12}", "\\PC{0,20}"), 0..6)) {
        let header = format!(
            "OAuth {}",
            pairs.iter().map(|(n, v)| format!("{}=\"{}\"", percent_encode(n), percent_encode(v))).collect::<Vec<_>>().join(", ")
        );
        proptest::prop_assert_eq!(parse_authorization(&header).unwrap(), pairs);
    }
}

#[test]
fn bytes_that_are_not_utf8_are_refused_not_made_alike() {
    // Decoded lossily, both would become U+FFFD and sign the same.
    assert!(matches!(
        percent_decode("%FF", false),
        Err(OAuth1Error::NotUtf8(_))
    ));
    assert!(matches!(
        percent_decode("%FE", true),
        Err(OAuth1Error::NotUtf8(_))
    ));
    assert!(parse_form("a=%FF").is_err());
    assert!(parse_authorization("OAuth oauth_nonce=\"%FE\"").is_err());
    assert_eq!(percent_decode("%C3%A9", false).unwrap(), "é");
}
