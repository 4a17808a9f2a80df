//! Duration strings for durable sleeps: `"500ms"`, `"30s"`, `"15m"`, `"1h"`, `"2d"`, `"1h30m"`.

use std::time::Duration;

/// A duration string that does not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "invalid duration {text:?}: use a number followed by a unit (ms, s, m, h, d), optionally several, as in \"30s\", \"1h30m\", \"2d\""
)]
pub struct InvalidDuration {
    /// The rejected text.
    pub text: String,
}

/// Parses a duration string: one or more `<integer><unit>` parts, units `ms`, `s`, `m`, `h`,
/// `d`, largest first, each unit at most once (`"1h30m"`, not `"30m1h"` or `"1h1h"`).
pub fn parse_duration(text: &str) -> Result<Duration, InvalidDuration> {
    let invalid = || InvalidDuration {
        text: text.to_owned(),
    };
    const UNITS: [(&str, u64); 5] = [
        ("d", 86_400_000),
        ("h", 3_600_000),
        ("m", 60_000),
        ("s", 1_000),
        ("ms", 1),
    ];
    let mut rest = text.trim();
    if rest.is_empty() {
        return Err(invalid());
    }
    let mut total_ms: u64 = 0;
    let mut smallest_used = usize::MAX;
    while !rest.is_empty() {
        let digits = rest
            .find(|c: char| !c.is_ascii_digit())
            .ok_or_else(invalid)?;
        if digits == 0 {
            return Err(invalid());
        }
        let number: u64 = rest[..digits].parse().map_err(|_| invalid())?;
        rest = &rest[digits..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit())
            .unwrap_or(rest.len());
        let unit = &rest[..unit_len];
        let index = UNITS
            .iter()
            .position(|(name, _)| *name == unit)
            .ok_or_else(invalid)?;
        // "m" before "ms" in UNITS order means index order is largest-first.
        if smallest_used != usize::MAX && index <= smallest_used {
            return Err(invalid());
        }
        smallest_used = index;
        let part = number.checked_mul(UNITS[index].1).ok_or_else(invalid)?;
        total_ms = total_ms.checked_add(part).ok_or_else(invalid)?;
        rest = &rest[unit_len..];
    }
    Ok(Duration::from_millis(total_ms))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn good_strings_parse() {
        let cases = [
            ("500ms", 500),
            ("30s", 30_000),
            ("15m", 900_000),
            ("1h", 3_600_000),
            ("2d", 172_800_000),
            ("1h30m", 5_400_000),
            ("1m30s250ms", 90_250),
            (" 5s ", 5_000),
            ("0s", 0),
        ];
        for (text, ms) in cases {
            assert_eq!(
                parse_duration(text),
                Ok(Duration::from_millis(ms)),
                "{text}"
            );
        }
    }

    #[test]
    fn bad_strings_name_the_string() {
        for text in [
            "",
            "1",
            "h",
            "1x",
            "1.5h",
            "-1s",
            "30m1h",
            "1h1h",
            "1 h",
            "99999999999999999999d",
            "1hh",
        ] {
            let err = parse_duration(text).unwrap_err();
            assert_eq!(err.text, text);
            assert!(err.to_string().contains(&format!("{text:?}")));
        }
    }
}
