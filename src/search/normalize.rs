//! Normalisation of search values.

use unicode_normalization::UnicodeNormalization;
use unicode_normalization::char::is_combining_mark;

/// String search form (R4 3.1.1.5.3): case-insensitive and accent-insensitive,
/// with whitespace runs collapsed. `Ñáéíóú` → `naeiou`.
pub fn string(s: &str) -> String {
    let folded: String = s
        .nfkd()
        .filter(|c| !is_combining_mark(*c))
        .flat_map(char::to_lowercase)
        .collect();
    folded.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// The implicit range of a decimal from its significant digits (R4 3.1.1.4.1):
/// `100` → [99.5, 100.5], `1.50` → [1.495, 1.505]. Returns `(value, low, high)`.
pub fn decimal_range(text: &str) -> Option<(f64, f64, f64)> {
    let value: f64 = text.parse().ok()?;
    let mantissa = text.split(['e', 'E']).next().unwrap_or(text);
    let exponent: i32 = text
        .split(['e', 'E'])
        .nth(1)
        .map_or(Some(0), |e| e.parse().ok())?;
    let decimals = mantissa.split_once('.').map_or(0, |(_, f)| f.len() as i32);
    let half = 0.5 * 10f64.powi(exponent - decimals);
    Some((value, value - half, value + half))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strings_fold_case_and_accents() {
        assert_eq!(string("Zyxwvutsrq-Ñáéíóú"), "zyxwvutsrq-naeiou");
        assert_eq!(string("  Müller   Straße "), "muller straße");
        assert_eq!(string("ÅNGSTRÖM"), "angstrom");
    }

    #[test]
    fn decimal_ranges_follow_precision() {
        let close = |a: f64, b: f64| (a - b).abs() < 1e-12;
        let (v, lo, hi) = decimal_range("100").unwrap();
        assert!(close(v, 100.0) && close(lo, 99.5) && close(hi, 100.5));
        let (_, lo, hi) = decimal_range("1.50").unwrap();
        assert!(close(lo, 1.495) && close(hi, 1.505));
        let (_, lo, hi) = decimal_range("1.5e2").unwrap();
        assert!(close(lo, 145.0) && close(hi, 155.0));
        assert!(decimal_range("x").is_none());
    }
}
