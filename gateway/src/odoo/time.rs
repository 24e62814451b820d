//! Odoo's datetime text (`YYYY-MM-DD HH:MM:SS`, UTC) to seconds and back, for the polling
//! source's overlap window. Pure arithmetic on the proleptic Gregorian calendar; no clock.

/// Whether `t` has Odoo's datetime shape.
pub fn is_odoo_datetime(t: &str) -> bool {
    let b = t.as_bytes();
    b.len() == 19
        && b.iter().enumerate().all(|(i, c)| match i {
            4 | 7 => *c == b'-',
            10 => *c == b' ',
            13 | 16 => *c == b':',
            _ => c.is_ascii_digit(),
        })
}

/// Seconds since the Unix epoch of an Odoo datetime; `None` when it is not one.
pub fn to_seconds(t: &str) -> Option<i64> {
    if !is_odoo_datetime(t) {
        return None;
    }
    let n = |r: std::ops::Range<usize>| t[r].parse::<i64>().ok();
    let (y, m, d) = (n(0..4)?, n(5..7)?, n(8..10)?);
    let (hh, mm, ss) = (n(11..13)?, n(14..16)?, n(17..19)?);
    if !(1..=12).contains(&m) || !(1..=31).contains(&d) || hh > 23 || mm > 59 || ss > 60 {
        return None;
    }
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * ((m + 9) % 12) + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    Some(days * 86_400 + hh * 3600 + mm * 60 + ss)
}

/// The Odoo datetime of `seconds` since the Unix epoch.
pub fn from_seconds(seconds: i64) -> String {
    let (days, secs) = (seconds.div_euclid(86_400), seconds.rem_euclid(86_400));
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02}",
        secs / 3600,
        secs % 3600 / 60,
        secs % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn datetimes_round_trip_across_months_and_leap_days() {
        for t in [
            "1970-01-01 00:00:00",
            "2024-05-14 09:12:40",
            "2024-02-29 23:59:59",
            "2000-12-31 12:00:00",
        ] {
            assert_eq!(from_seconds(to_seconds(t).expect(t)), t);
        }
        assert_eq!(to_seconds("1970-01-01 00:00:00"), Some(0));
        let march = to_seconds("2024-03-01 00:00:00").unwrap();
        assert_eq!(from_seconds(march - 1), "2024-02-29 23:59:59");
        assert_eq!(from_seconds(march - 60), "2024-02-29 23:59:00");
        assert_eq!(to_seconds("2024-13-01 00:00:00"), None);
        assert_eq!(to_seconds("2024-05-14T09:12:40"), None);
    }
}
