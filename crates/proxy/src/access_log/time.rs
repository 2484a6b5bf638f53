//! `%START_TIME%` formats: Envoy's default (`2016-04-15T20:17:00.310Z`, UTC) or a
//! strftime-style format with Envoy's `%E<n>S` / `%<n>f` sub-second specifiers, compiled
//! once into the pieces it prints.

use std::time::{SystemTime, UNIX_EPOCH};

use super::decimal::{self, push_padded};

/// A compiled time format.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TimeFormat(Vec<Piece>);

#[derive(Debug, Clone, PartialEq, Eq)]
enum Piece {
    Literal(String),
    Year,
    Month,
    Day,
    Hour,
    Minute,
    Second,
    /// Seconds with this many fractional digits (`%E3S`).
    SecondWithFraction(u32),
    /// This many fractional digits of the second alone (`%3f`, `%f` for 9).
    Fraction(u32),
    /// The zone offset, always UTC here (`%z`).
    Offset,
    /// Seconds since the epoch (`%s`).
    Epoch,
}

impl Default for TimeFormat {
    /// Envoy's default: `%Y-%m-%dT%H:%M:%E3SZ`.
    fn default() -> TimeFormat {
        TimeFormat::parse("%Y-%m-%dT%H:%M:%E3SZ").expect("the default time format parses")
    }
}

impl TimeFormat {
    /// Compiles a strftime-style format; names the specifier it does not know.
    pub fn parse(format: &str) -> Result<TimeFormat, String> {
        let mut pieces = Vec::new();
        let mut literal = String::new();
        let mut chars = format.chars().peekable();
        while let Some(c) = chars.next() {
            if c != '%' {
                literal.push(c);
                continue;
            }
            let mut spec = String::new();
            while let Some(&d) = chars.peek() {
                spec.push(d);
                chars.next();
                if !d.is_ascii_digit() && d != 'E' {
                    break;
                }
            }
            let piece = match spec.as_str() {
                "%" => {
                    literal.push('%');
                    continue;
                }
                "Y" => Piece::Year,
                "m" => Piece::Month,
                "d" => Piece::Day,
                "H" => Piece::Hour,
                "M" => Piece::Minute,
                "S" => Piece::Second,
                "z" => Piece::Offset,
                "s" => Piece::Epoch,
                "f" => Piece::Fraction(9),
                _ => match digits(&spec) {
                    Some(("E", n, "S")) => Piece::SecondWithFraction(n),
                    Some(("", n, "f")) => Piece::Fraction(n),
                    _ => return Err(format!("time specifier %{spec} is not supported")),
                },
            };
            if !literal.is_empty() {
                pieces.push(Piece::Literal(std::mem::take(&mut literal)));
            }
            pieces.push(piece);
        }
        if !literal.is_empty() {
            pieces.push(Piece::Literal(literal));
        }
        Ok(TimeFormat(pieces))
    }

    /// Writes `time` (as UTC) in this format.
    pub fn write(&self, time: SystemTime, out: &mut String) {
        let since = time.duration_since(UNIX_EPOCH).unwrap_or_default();
        let secs = since.as_secs();
        let nanos = since.subsec_nanos();
        let (year, month, day) = civil(secs / 86_400);
        let of_day = secs % 86_400;
        let (hour, minute, second) = (of_day / 3600, of_day / 60 % 60, of_day % 60);
        for piece in &self.0 {
            match piece {
                Piece::Literal(text) => out.push_str(text),
                Piece::Year => push_padded(out, year.unsigned_abs(), 4),
                Piece::Month => push_padded(out, month.into(), 2),
                Piece::Day => push_padded(out, day.into(), 2),
                Piece::Hour => push_padded(out, hour, 2),
                Piece::Minute => push_padded(out, minute, 2),
                Piece::Second => push_padded(out, second, 2),
                Piece::SecondWithFraction(n) => {
                    push_padded(out, second, 2);
                    fraction(nanos, *n, true, out);
                }
                Piece::Fraction(n) => fraction(nanos, *n, false, out),
                Piece::Offset => out.push_str("+0000"),
                Piece::Epoch => decimal::push(out, secs),
            }
        }
    }
}

/// Splits `E3S` into `("E", 3, "S")`.
fn digits(spec: &str) -> Option<(&str, u32, &str)> {
    let start = spec.find(|c: char| c.is_ascii_digit())?;
    let end = spec[start..]
        .find(|c: char| !c.is_ascii_digit())
        .map_or(spec.len(), |e| start + e);
    let n = spec[start..end]
        .parse()
        .ok()
        .filter(|n| (1..=9).contains(n))?;
    Some((&spec[..start], n, &spec[end..]))
}

fn fraction(nanos: u32, digits: u32, dot: bool, out: &mut String) {
    let value = nanos / 10u32.pow(9 - digits);
    if dot {
        out.push('.');
    }
    push_padded(out, value.into(), digits as usize);
}

/// The civil date of a day counted from 1970-01-01 (Howard Hinnant's algorithm).
fn civil(days: u64) -> (i64, u32, u32) {
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn at(secs: u64, millis: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(secs) + Duration::from_millis(millis)
    }

    fn show(format: &TimeFormat, time: SystemTime) -> String {
        let mut out = String::new();
        format.write(time, &mut out);
        out
    }

    #[test]
    fn the_default_is_envoys_iso_8601_with_milliseconds() {
        // Envoy's documented example: 2016-04-15T20:17:00.310Z.
        assert_eq!(
            show(&TimeFormat::default(), at(1_460_751_420, 310)),
            "2016-04-15T20:17:00.310Z"
        );
        assert_eq!(
            show(&TimeFormat::default(), at(951_782_400, 5)),
            "2000-02-29T00:00:00.005Z"
        );
    }

    #[test]
    fn custom_formats_print_their_specifiers() {
        let format = TimeFormat::parse("%s %Y/%m/%d %H%%%M %E6S %3f %z").unwrap();
        assert_eq!(
            show(&format, at(1_460_751_420, 310)),
            "1460751420 2016/04/15 20%17 00.310000 310 +0000"
        );
        assert!(TimeFormat::parse("%Q").unwrap_err().contains("%Q"));
    }
}
