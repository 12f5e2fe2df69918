//! Sizes and durations as people write them, one parser for each, shared by the
//! settings (`PLUGIN_*` variables, config files) and the `rpcplugin` command line, so
//! that `4MiB` or `500ms` means the same wherever it is typed.

use std::time::Duration;

/// Parses a size in bytes: digits, then optionally a binary unit (`B`, `KiB` or `K`,
/// `MiB` or `M`, `GiB` or `G`), with or without a space between. `None` for anything
/// else, or a size that does not fit in 64 bits.
///
/// ```
/// use rpcplugin_config::units::parse_size;
///
/// assert_eq!(parse_size("4194304"), Some(4 << 20));
/// assert_eq!(parse_size("256 MiB"), Some(256 << 20));
/// assert_eq!(parse_size("1k"), None); // units are binary, and spelled as above
/// ```
pub fn parse_size(s: &str) -> Option<u64> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (number, unit) = s.split_at(split);
    let n: u64 = number.parse().ok()?;
    let factor: u64 = match unit.trim() {
        "" | "B" => 1,
        "KiB" | "K" => 1 << 10,
        "MiB" | "M" => 1 << 20,
        "GiB" | "G" => 1 << 30,
        _ => return None,
    };
    n.checked_mul(factor)
}

/// Parses a duration: a number of seconds (`10`, `2.5`), or a number with a unit
/// (`500ms`, `2s`, `1m`). `None` for anything else, a negative number, or a duration
/// too long to represent.
///
/// ```
/// use rpcplugin_config::units::parse_duration;
/// use std::time::Duration;
///
/// assert_eq!(parse_duration("2.5"), Some(Duration::from_millis(2500)));
/// assert_eq!(parse_duration("500ms"), Some(Duration::from_millis(500)));
/// assert_eq!(parse_duration("ten"), None);
/// ```
pub fn parse_duration(s: &str) -> Option<Duration> {
    let s = s.trim();
    let split = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(s.len());
    let (number, unit) = s.split_at(split);
    let n: f64 = number.parse().ok()?;
    let secs = match unit.trim() {
        "" | "s" => n,
        "ms" => n / 1000.0,
        "m" => n * 60.0,
        _ => return None,
    };
    Duration::try_from_secs_f64(secs).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        assert_eq!(parse_size("0"), Some(0));
        assert_eq!(parse_size("4194304"), Some(4 << 20));
        assert_eq!(parse_size("512B"), Some(512));
        assert_eq!(parse_size("1KiB"), Some(1024));
        assert_eq!(parse_size("64K"), Some(64 << 10));
        assert_eq!(parse_size("4MiB"), Some(4 << 20));
        assert_eq!(parse_size(" 256 MiB "), Some(256 << 20));
        assert_eq!(parse_size("1GiB"), Some(1 << 30));
        assert_eq!(parse_size("lots"), None);
        assert_eq!(parse_size("1k"), None);
        assert_eq!(parse_size("1.5MiB"), None);
        assert_eq!(parse_size("-1"), None);
        assert_eq!(parse_size(""), None);
        // 2^64 bytes overflows rather than wrapping.
        assert_eq!(parse_size("17179869184GiB"), None);
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("10"), Some(Duration::from_secs(10)));
        assert_eq!(parse_duration("0"), Some(Duration::ZERO));
        assert_eq!(parse_duration("500ms"), Some(Duration::from_millis(500)));
        assert_eq!(parse_duration("1.5s"), Some(Duration::from_millis(1500)));
        assert_eq!(parse_duration(" 2 m "), Some(Duration::from_secs(120)));
        assert_eq!(parse_duration("ten"), None);
        assert_eq!(parse_duration("-1"), None);
        assert_eq!(parse_duration("1h"), None);
        assert_eq!(parse_duration(""), None);
        assert_eq!(parse_duration("1e400"), None);
    }
}
