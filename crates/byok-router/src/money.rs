//! Integer money: prices in micro-dollars per million tokens, costs in
//! picodollars. A token priced at $0.003 per million costs exactly 3,000
//! picodollars; nothing is ever rounded until it is displayed.

use std::fmt;
use std::ops::{Add, AddAssign};

use serde::{Deserialize, Serialize};

use crate::RouteError;

/// A price: micro-dollars (1e-6 USD) per 1,000,000 tokens. Also the cost of
/// one token in picodollars.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default, Serialize, Deserialize,
)]
#[serde(try_from = "String", into = "String")]
pub struct Rate(u64);

impl Rate {
    /// A rate from micro-dollars per million tokens.
    #[must_use]
    pub const fn from_micro_per_million(micro: u64) -> Self {
        Self(micro)
    }

    /// Micro-dollars per million tokens.
    #[must_use]
    pub const fn micro_per_million(self) -> u64 {
        self.0
    }

    /// Parses dollars per million tokens written as a decimal (`"0.075"`),
    /// exactly, with at most six decimals.
    ///
    /// # Errors
    /// [`RouteError::BadPrice`] for anything else.
    pub fn parse_usd(text: &str) -> Result<Self, RouteError> {
        let bad = || RouteError::BadPrice(text.to_owned());
        let (whole, fraction) = text.trim().split_once('.').unwrap_or((text.trim(), ""));
        let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
        if !digits(whole) || !(fraction.is_empty() || digits(fraction)) || fraction.len() > 6 {
            return Err(bad());
        }
        let whole: u64 = whole.parse().map_err(|_| bad())?;
        let padded = format!("{fraction:0<6}");
        let fraction: u64 = padded.parse().map_err(|_| bad())?;
        whole
            .checked_mul(1_000_000)
            .and_then(|w| w.checked_add(fraction))
            .map(Self)
            .ok_or_else(bad)
    }

    /// The cost of `tokens` tokens at this rate.
    #[must_use]
    pub fn cost(self, tokens: u64) -> Money {
        Money(tokens.saturating_mul(self.0))
    }
}

impl TryFrom<String> for Rate {
    type Error = RouteError;

    fn try_from(value: String) -> Result<Self, Self::Error> {
        Self::parse_usd(&value)
    }
}

impl From<Rate> for String {
    fn from(rate: Rate) -> Self {
        let (whole, fraction) = (rate.0 / 1_000_000, rate.0 % 1_000_000);
        let fraction = format!("{fraction:06}");
        let fraction = fraction.trim_end_matches('0');
        if fraction.is_empty() {
            format!("{whole}")
        } else {
            format!("{whole}.{fraction}")
        }
    }
}

impl fmt::Display for Rate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&String::from(*self))
    }
}

/// An amount of money in picodollars (1e-12 USD). `u64` holds up to about
/// 18 million dollars.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default, Serialize, Deserialize,
)]
pub struct Money(u64);

impl Money {
    /// Zero dollars.
    pub const ZERO: Self = Self(0);

    /// From picodollars.
    #[must_use]
    pub const fn from_picodollars(pico: u64) -> Self {
        Self(pico)
    }

    /// In picodollars.
    #[must_use]
    pub const fn picodollars(self) -> u64 {
        self.0
    }

    /// Parses dollars written as a decimal (`"5"`, `"0.50"`), exactly, with
    /// at most twelve decimals.
    ///
    /// # Errors
    /// [`RouteError::BadPrice`] for anything else.
    pub fn parse_usd(text: &str) -> Result<Self, RouteError> {
        let bad = || RouteError::BadPrice(text.to_owned());
        let (whole, fraction) = match text.trim().split_once('.') {
            Some((whole, "")) => (whole, "x"), // "1." is not a number
            Some(parts) => parts,
            None => (text.trim(), ""),
        };
        let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
        if !digits(whole) || !(fraction.is_empty() || digits(fraction)) || fraction.len() > 12 {
            return Err(bad());
        }
        let whole: u64 = whole.parse().map_err(|_| bad())?;
        let fraction: u64 = format!("{fraction:0<12}").parse().map_err(|_| bad())?;
        whole
            .checked_mul(1_000_000_000_000)
            .and_then(|w| w.checked_add(fraction))
            .map(Self)
            .ok_or_else(bad)
    }

    /// In micro-dollars, rounded half up (for storage and reports).
    #[must_use]
    pub const fn micro_usd_rounded(self) -> u64 {
        self.0.saturating_add(500_000) / 1_000_000
    }

    /// A plain decimal string in dollars with all twelve decimals trimmed of
    /// trailing zeros (`"0.000123"`), for headers and JSON.
    #[must_use]
    pub fn to_usd_string(self) -> String {
        let (whole, fraction) = (self.0 / 1_000_000_000_000, self.0 % 1_000_000_000_000);
        let fraction = format!("{fraction:012}");
        let fraction = fraction.trim_end_matches('0');
        if fraction.is_empty() {
            format!("{whole}")
        } else {
            format!("{whole}.{fraction}")
        }
    }
}

impl Add for Money {
    type Output = Self;

    fn add(self, other: Self) -> Self {
        Self(self.0.saturating_add(other.0))
    }
}

impl AddAssign for Money {
    fn add_assign(&mut self, other: Self) {
        *self = *self + other;
    }
}

impl std::iter::Sum for Money {
    fn sum<I: Iterator<Item = Self>>(iter: I) -> Self {
        iter.fold(Self::ZERO, Add::add)
    }
}

impl fmt::Display for Money {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "${}", self.to_usd_string())
    }
}

#[cfg(test)]
mod money_parse_tests {
    use super::Money;

    #[test]
    fn dollars_parse_exactly() {
        assert_eq!(
            Money::parse_usd("5").unwrap().picodollars(),
            5_000_000_000_000
        );
        assert_eq!(Money::parse_usd("0.50").unwrap().to_usd_string(), "0.5");
        assert_eq!(Money::parse_usd("0.000000000001").unwrap().picodollars(), 1);
        for bad in [
            "",
            "-1",
            "1.",
            ".5",
            "1e3",
            "0.0000000000001",
            "5 USD",
            "99999999999",
        ] {
            assert!(Money::parse_usd(bad).is_err(), "{bad}");
        }
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    #[test]
    fn rates_parse_exactly() {
        for (text, micro) in [
            ("0.15", 150_000),
            ("0.075", 75_000),
            ("0.003", 3_000),
            ("10", 10_000_000),
            ("0.003625", 3_625),
            ("0", 0),
        ] {
            assert_eq!(
                Rate::parse_usd(text).unwrap().micro_per_million(),
                micro,
                "{text}"
            );
        }
        for bad in ["", "-1", "1.2345678", "1e3", "0.1.2", "abc", " .5", "NaN"] {
            assert!(Rate::parse_usd(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn costs_are_exact_and_display_in_dollars() {
        // 1,234 tokens at $0.075 per million = $0.00009255
        let cost = Rate::parse_usd("0.075").unwrap().cost(1_234);
        assert_eq!(cost.picodollars(), 92_550_000);
        assert_eq!(cost.to_usd_string(), "0.00009255");
        assert_eq!(cost.micro_usd_rounded(), 93);
        assert_eq!(Money::ZERO.to_usd_string(), "0");
        assert_eq!(
            Rate::parse_usd("2.50")
                .unwrap()
                .cost(1_000_000)
                .to_usd_string(),
            "2.5"
        );
    }

    proptest! {
        #[test]
        fn rate_text_round_trips(micro in 0u64..100_000_000_000) {
            let rate = Rate::from_micro_per_million(micro);
            prop_assert_eq!(Rate::parse_usd(&rate.to_string()).unwrap(), rate);
        }
    }
}
