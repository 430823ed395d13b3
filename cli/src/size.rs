//! Human-readable byte sizes: `4K`, `1MiB`, `64M`, `512` in, `1.0 MiB` out.

use std::fmt;
use std::str::FromStr;

/// A byte count given on the command line.
///
/// Units are binary (`K` = `KiB` = 1024, `M` = `MiB`, `G` = `GiB`, `T` =
/// `TiB`), as I/O sizes are page multiples; `KB`, `MB`, `GB`, `TB` are the
/// decimal ones, as in `dd`. Case does not matter, a trailing `B` alone means
/// bytes, and only whole numbers are accepted.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Size(pub u64);

/// Why a size did not parse.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SizeError {
    /// Nothing given.
    Empty,
    /// No number before the unit.
    NoNumber(String),
    /// An unknown unit suffix.
    UnknownUnit(String),
    /// More than 2^64 - 1 bytes.
    Overflow(String),
}

impl fmt::Display for SizeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Empty => f.write_str("empty size"),
            Self::NoNumber(s) => write!(
                f,
                "invalid size '{s}': expected a whole number with an optional unit (K, M, G, T, KiB, MB, ...)"
            ),
            Self::UnknownUnit(s) => write!(
                f,
                "invalid size '{s}': unknown unit (use B, K/KiB, M/MiB, G/GiB, T/TiB, or KB/MB/GB/TB)"
            ),
            Self::Overflow(s) => write!(f, "invalid size '{s}': too large"),
        }
    }
}

impl std::error::Error for SizeError {}

impl FromStr for Size {
    type Err = SizeError;

    fn from_str(input: &str) -> Result<Self, Self::Err> {
        let text = input.trim();
        if text.is_empty() {
            return Err(SizeError::Empty);
        }
        let digits = text.bytes().take_while(u8::is_ascii_digit).count();
        let (number, unit) = text.split_at(digits);
        if number.is_empty() {
            return Err(SizeError::NoNumber(input.to_owned()));
        }
        let multiplier: u64 = match unit.trim_start().to_ascii_lowercase().as_str() {
            "" | "b" => 1,
            "k" | "kib" => 1 << 10,
            "m" | "mib" => 1 << 20,
            "g" | "gib" => 1 << 30,
            "t" | "tib" => 1 << 40,
            "kb" => 1_000,
            "mb" => 1_000_000,
            "gb" => 1_000_000_000,
            "tb" => 1_000_000_000_000,
            _ if unit.starts_with('.') => return Err(SizeError::NoNumber(input.to_owned())),
            _ => return Err(SizeError::UnknownUnit(input.to_owned())),
        };
        let number: u64 = number
            .parse()
            .map_err(|_| SizeError::Overflow(input.to_owned()))?;
        number
            .checked_mul(multiplier)
            .map(Size)
            .ok_or_else(|| SizeError::Overflow(input.to_owned()))
    }
}

/// The largest request size: the server's default maximum I/O size (a
/// larger request is cut to what the server negotiates anyway).
pub const MAX_IO_SIZE: u64 = 8 << 20;

/// Smallest `--max-send-size`: the protocol minimum (`MIN_SEND_SIZE`,
/// room for the largest request without data).
pub const MIN_SEND_SIZE: u64 = rdio_core::wire::MIN_SEND_SIZE as u64;
/// Largest `--max-send-size`: the largest message of the cma and loopback
/// transports. A server posts a receive of this size per credit, so 64
/// credits at the maximum are 1 GiB of receive buffers per connection.
pub const MAX_SEND_SIZE: u64 = 16 << 20;

/// The queue depths every command accepts: the server's default credit
/// maximum, the most requests it lets a client keep in flight.
pub const QUEUE_DEPTHS: std::ops::RangeInclusive<i64> = 1..=64;

/// A clap parser of sizes within `min..=max`, whose error names the range.
pub fn ranged(min: u64, max: u64) -> impl Fn(&str) -> Result<Size, String> + Clone {
    move |text: &str| {
        let size: Size = text.parse().map_err(|e: SizeError| e.to_string())?;
        if (min..=max).contains(&size.0) {
            Ok(size)
        } else {
            Err(format!(
                "{text} is out of range: expected {} to {}",
                Bound(min),
                Bound(max)
            ))
        }
    }
}

/// A range bound as the user would write it: `1`, `8MiB`.
struct Bound(u64);

impl fmt::Display for Bound {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        const UNITS: [(u64, &str); 3] = [(1 << 30, "GiB"), (1 << 20, "MiB"), (1 << 10, "KiB")];
        for (unit, name) in UNITS {
            if self.0 >= unit && self.0 % unit == 0 {
                return write!(f, "{}{name}", self.0 / unit);
            }
        }
        write!(f, "{}", self.0)
    }
}

impl fmt::Display for Size {
    /// Bytes below 1 KiB, otherwise one decimal in the largest binary unit
    /// that keeps the number at least 1: `512 B`, `1.0 KiB`, `1.5 MiB`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        const UNITS: [&str; 6] = ["KiB", "MiB", "GiB", "TiB", "PiB", "EiB"];
        if self.0 < 1024 {
            return write!(f, "{} B", self.0);
        }
        let mut value = self.0 as f64 / 1024.0;
        let mut unit = 0;
        while value >= 1024.0 && unit + 1 < UNITS.len() {
            value /= 1024.0;
            unit += 1;
        }
        // Rounding 1023.96 KiB to one decimal would print "1024.0 KiB".
        if format!("{value:.1}") == "1024.0" && unit + 1 < UNITS.len() {
            value /= 1024.0;
            unit += 1;
        }
        write!(f, "{value:.1} {}", UNITS[unit])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &str) -> Result<u64, SizeError> {
        s.parse::<Size>().map(|size| size.0)
    }

    #[test]
    fn parses_plain_and_binary_units() {
        assert_eq!(parse("0"), Ok(0));
        assert_eq!(parse("512"), Ok(512));
        assert_eq!(parse("512B"), Ok(512));
        assert_eq!(parse("4K"), Ok(4096));
        assert_eq!(parse("4k"), Ok(4096));
        assert_eq!(parse("4KiB"), Ok(4096));
        assert_eq!(parse("1MiB"), Ok(1 << 20));
        assert_eq!(parse("1mib"), Ok(1 << 20));
        assert_eq!(parse("64M"), Ok(64 << 20));
        assert_eq!(parse("2G"), Ok(2 << 30));
        assert_eq!(parse("1T"), Ok(1 << 40));
        assert_eq!(parse(" 8 K "), Ok(8192));
    }

    #[test]
    fn parses_decimal_units() {
        assert_eq!(parse("1KB"), Ok(1000));
        assert_eq!(parse("3MB"), Ok(3_000_000));
        assert_eq!(parse("1GB"), Ok(1_000_000_000));
        assert_eq!(parse("2TB"), Ok(2_000_000_000_000));
    }

    #[test]
    fn rejects_bad_sizes() {
        assert_eq!(parse(""), Err(SizeError::Empty));
        assert_eq!(parse("   "), Err(SizeError::Empty));
        assert_eq!(parse("K"), Err(SizeError::NoNumber("K".into())));
        assert_eq!(parse("-1"), Err(SizeError::NoNumber("-1".into())));
        assert_eq!(parse("1.5M"), Err(SizeError::NoNumber("1.5M".into())));
        assert_eq!(parse("4Q"), Err(SizeError::UnknownUnit("4Q".into())));
        assert_eq!(parse("4KiBs"), Err(SizeError::UnknownUnit("4KiBs".into())));
        assert_eq!(
            parse("99999999999999999999"),
            Err(SizeError::Overflow("99999999999999999999".into()))
        );
        assert_eq!(
            parse("17179869184G"),
            Err(SizeError::Overflow("17179869184G".into()))
        );
        let message = parse("4Q").unwrap_err().to_string();
        assert!(
            message.contains("'4Q'") && message.contains("unknown unit"),
            "{message}"
        );
    }

    #[test]
    fn ranged_sizes_name_the_range() {
        let io = ranged(1, MAX_IO_SIZE);
        assert_eq!(io("1M"), Ok(Size(1 << 20)));
        assert_eq!(io("8MiB"), Ok(Size(8 << 20)));
        assert_eq!(
            io("1T").unwrap_err(),
            "1T is out of range: expected 1 to 8MiB"
        );
        assert_eq!(
            io("0").unwrap_err(),
            "0 is out of range: expected 1 to 8MiB"
        );
        assert!(io("4Q").unwrap_err().contains("unknown unit"));
    }

    #[test]
    fn formats_human_readable() {
        let show = |n: u64| Size(n).to_string();
        assert_eq!(show(0), "0 B");
        assert_eq!(show(1023), "1023 B");
        assert_eq!(show(1024), "1.0 KiB");
        assert_eq!(show(1536), "1.5 KiB");
        assert_eq!(show(1 << 20), "1.0 MiB");
        assert_eq!(show((1 << 20) + 1), "1.0 MiB");
        assert_eq!(show(64 << 20), "64.0 MiB");
        assert_eq!(show((1 << 20) - 1), "1.0 MiB");
        assert_eq!(show(3 << 30), "3.0 GiB");
        assert_eq!(show(u64::MAX), "16.0 EiB");
    }

    #[test]
    fn round_trips_through_display() {
        for n in [1u64 << 10, 1 << 20, 5 << 30] {
            let shown = Size(n).to_string().replace(".0 ", "").replace(' ', "");
            assert_eq!(parse(&shown), Ok(n), "{shown}");
        }
    }
}
