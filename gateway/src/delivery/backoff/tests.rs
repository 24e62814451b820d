//! Backoff tests: schedule clamping, jitter bounds, `Retry-After`, duration strings and the
//! config shape.

use super::*;
use rand::SeedableRng;
use rand::rngs::StdRng;

fn secs(s: u64) -> Duration {
    Duration::from_secs(s)
}

fn fixed(schedule: &[u64]) -> Backoff {
    Backoff {
        schedule: schedule.iter().copied().map(secs).collect(),
        jitter: 0.0,
        retry_after_cap: secs(60),
    }
}

#[test]
fn schedule_is_indexed_by_failures_and_clamped_to_the_last() {
    let b = fixed(&[1, 5, 30]);
    assert_eq!(b.delay(0), secs(1));
    assert_eq!(b.delay(1), secs(1));
    assert_eq!(b.delay(2), secs(5));
    assert_eq!(b.delay(3), secs(30));
    assert_eq!(b.delay(4), secs(30));
    assert_eq!(b.delay(u32::MAX), secs(30));
}

#[test]
fn default_schedule_is_documented_one() {
    let b = Backoff::default();
    let plain = Backoff { jitter: 0.0, ..b };
    let got: Vec<_> = (1..=8).map(|n| plain.delay(n)).collect();
    let want: Vec<_> = [1, 5, 30, 120, 600, 1800, 3600, 3600]
        .into_iter()
        .map(secs)
        .collect();
    assert_eq!(got, want);
}

#[test]
fn jitter_stays_within_bounds_and_spreads() {
    let b = Backoff {
        jitter: 0.2,
        ..fixed(&[10])
    };
    let mut rng = StdRng::seed_from_u64(7);
    let samples: Vec<Duration> = (0..500).map(|_| b.delay_with(1, &mut rng)).collect();
    assert!(samples.iter().all(|d| *d >= secs(8) && *d <= secs(12)));
    assert!(samples.iter().any(|d| *d < Duration::from_millis(9_000)));
    assert!(samples.iter().any(|d| *d > Duration::from_millis(11_000)));
}

#[test]
fn retry_after_is_honoured_up_to_the_cap() {
    let b = fixed(&[5]);
    assert_eq!(b.next_delay(1, None), secs(5));
    // Asked for longer than the schedule: wait as asked.
    assert_eq!(b.next_delay(1, Some(secs(20))), secs(20));
    // Asked for shorter: the schedule still applies.
    assert_eq!(b.next_delay(1, Some(secs(1))), secs(5));
    // Asked for longer than the cap: the cap.
    assert_eq!(b.next_delay(1, Some(secs(86_400))), secs(60));
}

#[test]
fn durations_parse() {
    let ok = [
        ("500ms", Duration::from_millis(500)),
        ("5s", secs(5)),
        ("1.5s", Duration::from_millis(1500)),
        ("2m", secs(120)),
        ("1h", secs(3600)),
        ("1d", secs(86_400)),
        ("1h30m", secs(5400)),
        (" 1m 30s ", secs(90)),
        ("0s", Duration::ZERO),
    ];
    for (text, want) in ok {
        assert_eq!(parse_duration(text), Ok(want), "{text}");
    }
    for bad in [
        "",
        "5",
        "s",
        "5x",
        "-5s",
        "1..5s",
        ".5s",
        "5s3",
        "99999999999999999999d",
    ] {
        assert!(parse_duration(bad).is_err(), "{bad:?} must not parse");
    }
}

#[test]
fn durations_format_back() {
    for text in ["1d", "2h", "2m", "90s", "1500ms", "0ms"] {
        let d = parse_duration(text).unwrap();
        assert_eq!(format_duration(d), text);
    }
}

#[test]
fn config_shape_reads_and_validates() {
    let b: Backoff = serde_json::from_str(
        r#"{"schedule": ["500ms", "5s", "2m"], "jitter": 0.1, "retry_after_cap": "10m"}"#,
    )
    .unwrap();
    assert_eq!(
        b.schedule,
        vec![Duration::from_millis(500), secs(5), secs(120)]
    );
    assert_eq!(b.jitter, 0.1);
    assert_eq!(b.retry_after_cap, secs(600));

    let defaults: Backoff = serde_json::from_str("{}").unwrap();
    assert_eq!(defaults, Backoff::default());

    for bad in [
        r#"{"schedule": []}"#,
        r#"{"jitter": 1.5}"#,
        r#"{"schedule": ["5"]}"#,
        r#"{"retries": 3}"#,
    ] {
        assert!(serde_json::from_str::<Backoff>(bad).is_err(), "{bad}");
    }
}

#[test]
fn serde_helpers_roundtrip() {
    #[derive(serde::Serialize, serde::Deserialize, PartialEq, Debug)]
    struct T {
        #[serde(with = "serde_duration")]
        a: Duration,
        #[serde(with = "serde_duration::vec")]
        b: Vec<Duration>,
        #[serde(default, with = "serde_duration::option")]
        c: Option<Duration>,
    }
    let t: T = serde_json::from_str(r#"{"a":"2m","b":["1s","250ms"]}"#).unwrap();
    assert_eq!(t.c, None);
    let again: T = serde_json::from_str(&serde_json::to_string(&t).unwrap()).unwrap();
    assert_eq!(again, t);
    let t: T = serde_json::from_str(r#"{"a":"1s","b":[],"c":"3s"}"#).unwrap();
    assert_eq!(t.c, Some(secs(3)));
}
