//! Common UCUM units and their canonical forms, so that a quantity search
//! written in one unit finds values stored in another of the same kind
//! (`value-quantity=5.4|http://unitsofmeasure.org|mg` finds `0.0054 g`).
//!
//! Each unit maps to a base unit of its kind by a power of ten (applied to the
//! decimal text, so precision and the implicit range carry over exactly) or by
//! a factor (applied to the value and the range ends). Units outside the table
//! (and affine ones such as `Cel`) are compared as written only.

/// The UCUM code system.
pub const SYSTEM: &str = "http://unitsofmeasure.org";

#[derive(Clone, Copy, Debug, PartialEq)]
enum Scale {
    /// Times ten to this power.
    Pow10(i32),
    /// Times this factor.
    Factor(f64),
}

use Scale::{Factor, Pow10};

/// (unit, base unit, scale to the base unit).
const UNITS: &[(&str, &str, Scale)] = &[
    // mass
    ("kg", "g", Pow10(3)),
    ("g", "g", Pow10(0)),
    ("mg", "g", Pow10(-3)),
    ("ug", "g", Pow10(-6)),
    ("ng", "g", Pow10(-9)),
    ("pg", "g", Pow10(-12)),
    ("[lb_av]", "g", Factor(453.592_37)),
    ("[oz_av]", "g", Factor(28.349_523_125)),
    // length
    ("km", "m", Pow10(3)),
    ("m", "m", Pow10(0)),
    ("cm", "m", Pow10(-2)),
    ("mm", "m", Pow10(-3)),
    ("um", "m", Pow10(-6)),
    ("nm", "m", Pow10(-9)),
    ("[in_i]", "m", Factor(0.0254)),
    ("[ft_i]", "m", Factor(0.3048)),
    // volume
    ("L", "L", Pow10(0)),
    ("l", "L", Pow10(0)),
    ("dL", "L", Pow10(-1)),
    ("mL", "L", Pow10(-3)),
    ("uL", "L", Pow10(-6)),
    ("fL", "L", Pow10(-15)),
    // time
    ("s", "s", Pow10(0)),
    ("ms", "s", Pow10(-3)),
    ("min", "s", Factor(60.0)),
    ("h", "s", Factor(3_600.0)),
    ("d", "s", Factor(86_400.0)),
    ("wk", "s", Factor(604_800.0)),
    ("mo", "s", Factor(2_629_800.0)),
    ("a", "s", Factor(31_557_600.0)),
    // amount of substance
    ("mol", "mol", Pow10(0)),
    ("mmol", "mol", Pow10(-3)),
    ("umol", "mol", Pow10(-6)),
    ("nmol", "mol", Pow10(-9)),
    ("pmol", "mol", Pow10(-12)),
    // mass concentration
    ("g/L", "g/L", Pow10(0)),
    ("g/dL", "g/L", Pow10(1)),
    ("mg/mL", "g/L", Pow10(0)),
    ("mg/dL", "g/L", Pow10(-2)),
    ("mg/L", "g/L", Pow10(-3)),
    ("ug/mL", "g/L", Pow10(-3)),
    ("ug/dL", "g/L", Pow10(-5)),
    ("ug/L", "g/L", Pow10(-6)),
    ("ng/mL", "g/L", Pow10(-6)),
    ("ng/L", "g/L", Pow10(-9)),
    ("pg/mL", "g/L", Pow10(-9)),
    // substance concentration
    ("mol/L", "mol/L", Pow10(0)),
    ("mmol/L", "mol/L", Pow10(-3)),
    ("umol/L", "mol/L", Pow10(-6)),
    ("nmol/L", "mol/L", Pow10(-9)),
    ("pmol/L", "mol/L", Pow10(-12)),
    // pressure
    ("Pa", "Pa", Pow10(0)),
    ("kPa", "Pa", Pow10(3)),
    ("mbar", "Pa", Pow10(2)),
    ("bar", "Pa", Pow10(5)),
    ("mm[Hg]", "Pa", Factor(133.322_387_415)),
    // counts per volume
    ("/L", "/L", Pow10(0)),
    ("/mL", "/L", Pow10(3)),
    ("/uL", "/L", Pow10(6)),
    ("10*3/uL", "/L", Pow10(9)),
    ("10*6/uL", "/L", Pow10(12)),
    ("10*9/L", "/L", Pow10(9)),
    ("10*12/L", "/L", Pow10(12)),
    // rates
    ("/s", "/s", Pow10(0)),
    ("/min", "/s", Factor(1.0 / 60.0)),
    ("/h", "/s", Factor(1.0 / 3_600.0)),
];

/// A quantity in its kind's base unit: the value and its implicit range.
#[derive(Clone, Debug, PartialEq)]
pub struct Canonical {
    pub value: f64,
    pub low: f64,
    pub high: f64,
    pub code: &'static str,
}

fn unit(code: &str) -> Option<(&'static str, Scale)> {
    UNITS
        .iter()
        .find(|(u, _, _)| *u == code)
        .map(|(_, base, scale)| (*base, *scale))
}

/// The decimal text times ten to `power`, written with an exponent (the
/// mantissa, and so the precision, unchanged).
fn shift(text: &str, power: i32) -> Option<String> {
    let (mantissa, exponent) = match text.split_once(['e', 'E']) {
        Some((m, e)) => (m, e.parse::<i32>().ok()?),
        None => (text, 0),
    };
    Some(format!("{mantissa}e{}", exponent.checked_add(power)?))
}

/// The canonical form of the decimal `text` in UCUM unit `code`, when the unit
/// is one of the table's.
pub fn canonical(text: &str, code: &str) -> Option<Canonical> {
    let (base, scale) = unit(code)?;
    let (value, low, high) = match scale {
        Pow10(p) => super::normalize::decimal_range(&shift(text, p)?)?,
        Factor(f) => {
            let (v, l, h) = super::normalize::decimal_range(text)?;
            (v * f, l * f, h * f)
        }
    };
    Some(Canonical {
        value,
        low,
        high,
        code: base,
    })
}

/// Whether a quantity in `code` is already in its base unit (its canonical
/// form would repeat it).
pub fn is_base(code: &str) -> bool {
    matches!(unit(code), Some((base, Pow10(0))) if base == code)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn powers_of_ten_keep_the_precision_of_the_text() {
        let mg = canonical("5.4", "mg").unwrap();
        let (v, l, h) = super::super::normalize::decimal_range("0.0054").unwrap();
        assert_eq!((mg.value, mg.low, mg.high, mg.code), (v, l, h, "g"));
        let kg = canonical("72.5", "kg").unwrap();
        assert_eq!(kg.value, 72_500.0);
        assert!((kg.high - kg.low - 100.0).abs() < 1e-9);
        assert_eq!(canonical("1.5e2", "mg/dL").unwrap().value, 1.5);
    }

    #[test]
    fn factors_scale_the_range_and_unknown_units_have_no_canonical_form() {
        let hr = canonical("72", "/min").unwrap();
        assert!((hr.value - 1.2).abs() < 1e-12 && hr.code == "/s");
        assert!(hr.low < hr.value && hr.value < hr.high);
        assert!(canonical("37", "Cel").is_none());
        assert!(canonical("3", "{score}").is_none());
        assert!(canonical("x", "mg").is_none());
        assert!(is_base("g") && is_base("mol/L") && !is_base("mg") && !is_base("l"));
    }

    #[test]
    fn every_unit_is_listed_once_and_maps_to_a_base_listed_as_itself() {
        for (u, base, _) in UNITS {
            assert_eq!(UNITS.iter().filter(|(x, _, _)| x == u).count(), 1, "{u}");
            assert!(is_base(base), "{u} → {base}");
        }
    }
}
