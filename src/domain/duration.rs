//! Durations as people write them: whole units `s m h d`, combinable in descending
//! order (`90s`, `30m`, `2h`, `1h30m`, `1d`). Parsing is strict on purpose: a typo in
//! an access window must be an error, never a guess.

use crate::error::{Error, Result};

/// The longest duration jitgate accepts anywhere (a year): keeps arithmetic on
/// millisecond timestamps far from overflow.
pub const MAX_SECONDS: u64 = 366 * 86_400;

const UNITS: [(char, u64); 4] = [('d', 86_400), ('h', 3_600), ('m', 60), ('s', 1)];

/// Parses `1h30m` into seconds. Zero, unknown units, repeated or out-of-order units,
/// signs, spaces and fractions are refused.
pub fn parse(text: &str) -> Result<u64> {
    let bad = |why: &str| {
        Error::bad(
            "bad_duration",
            format!("bad duration {text:?}: {why}; use whole units s, m, h, d as in 90s, 30m, 2h, 1h30m, 1d"),
        )
    };
    if text.is_empty() || text.len() > 32 {
        return Err(bad("empty or too long"));
    }
    let mut total: u64 = 0;
    let mut number: Option<u64> = None;
    let mut last_unit_rank: Option<usize> = None;
    for c in text.chars() {
        if let Some(digit) = c.to_digit(10) {
            let n = number.unwrap_or(0);
            number = Some(
                n.checked_mul(10)
                    .and_then(|n| n.checked_add(u64::from(digit)))
                    .ok_or_else(|| bad("number too large"))?,
            );
            continue;
        }
        let rank = UNITS.iter().position(|(u, _)| *u == c).ok_or_else(|| bad("unknown unit"))?;
        if last_unit_rank.is_some_and(|last| rank <= last) {
            return Err(bad("units must be given once each, largest first"));
        }
        let n = number.take().ok_or_else(|| bad("a unit needs a number before it"))?;
        total = n.checked_mul(UNITS[rank].1).and_then(|s| total.checked_add(s)).ok_or_else(|| bad("too large"))?;
        last_unit_rank = Some(rank);
    }
    if number.is_some() {
        return Err(bad("a number needs a unit after it"));
    }
    if total == 0 {
        return Err(bad("it must be longer than zero"));
    }
    if total > MAX_SECONDS {
        return Err(bad("it must be at most 366d"));
    }
    Ok(total)
}

/// Formats seconds in the canonical form that `parse` reads back: `5400` → `1h30m`.
pub fn format(seconds: u64) -> String {
    if seconds == 0 {
        return "0s".to_string();
    }
    let mut rest = seconds;
    let mut out = String::new();
    for (unit, size) in UNITS {
        if rest >= size {
            out.push_str(&format!("{}{unit}", rest / size));
            rest %= size;
        }
    }
    out
}

/// Human words for a terminal or a page: `5400` → `1 hour 30 minutes`.
pub fn humanize(seconds: u64) -> String {
    let parts: Vec<String> = [(86_400, "day"), (3_600, "hour"), (60, "minute"), (1, "second")]
        .iter()
        .scan(seconds, |rest, (size, word)| {
            let n = *rest / size;
            *rest %= size;
            Some((n, *word))
        })
        .filter(|(n, _)| *n > 0)
        .map(|(n, word)| format!("{n} {word}{}", if n == 1 { "" } else { "s" }))
        .take(2)
        .collect();
    if parts.is_empty() {
        "0 seconds".to_string()
    } else {
        parts.join(" ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_documented_forms() {
        assert_eq!(parse("90s").unwrap(), 90);
        assert_eq!(parse("30m").unwrap(), 1_800);
        assert_eq!(parse("2h").unwrap(), 7_200);
        assert_eq!(parse("1h30m").unwrap(), 5_400);
        assert_eq!(parse("1d").unwrap(), 86_400);
        assert_eq!(parse("1d2h3m4s").unwrap(), 93_784);
    }

    #[test]
    fn refuses_what_is_not_a_duration() {
        for bad in [
            "",
            "0s",
            "0h0m",
            "h",
            "2",
            "2x",
            "1.5h",
            "-1h",
            "1h 30m",
            "30m1h",
            "1h1h",
            "1H",
            "99999999999999999999s",
            "367d",
            "２h",
        ] {
            assert!(parse(bad).is_err(), "{bad:?} should be refused");
        }
    }

    #[test]
    fn format_reads_back() {
        for s in [1, 59, 60, 90, 3_600, 5_400, 86_400, 93_784, MAX_SECONDS] {
            assert_eq!(parse(&format(s)).unwrap(), s);
        }
        assert_eq!(format(5_400), "1h30m");
        assert_eq!(format(28_800), "8h");
    }

    #[test]
    fn humanize_says_it_in_words() {
        assert_eq!(humanize(7_200), "2 hours");
        assert_eq!(humanize(5_400), "1 hour 30 minutes");
        assert_eq!(humanize(61), "1 minute 1 second");
        assert_eq!(humanize(90_061), "1 day 1 hour");
    }
}
