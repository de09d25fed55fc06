//! The rules a parameter (or a named type) may carry, as written and as
//! checked. [`check`] is the only way from one to the other: the host runs
//! it on every manifest at load, the macros on every declaration at compile
//! time, so both refuse the same things with the same words.

use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;
use core::fmt;

use crate::types::Ty;
use crate::validate_keyword;

/// `min` and `max` of a length (`chars`) or a count (`items`), inclusive.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Deserialize, serde::Serialize), serde(deny_unknown_fields))]
pub struct Bounds {
    /// At least this many.
    #[cfg_attr(feature = "serde", serde(default, skip_serializing_if = "Option::is_none"))]
    pub min: Option<u64>,
    /// At most this many.
    #[cfg_attr(feature = "serde", serde(default, skip_serializing_if = "Option::is_none"))]
    pub max: Option<u64>,
}

/// A value as a manifest or an attribute wrote it (a `one_of` value, a
/// `range` bound).
#[derive(Debug, Clone, PartialEq)]
pub enum Literal {
    /// A string.
    Text(String),
    /// A number without a fraction that fits an i64.
    Int(i64),
    /// Any other number.
    Float(f64),
    /// `true` or `false`.
    Bool(bool),
    /// Anything else, as written (it fits no rule).
    Other(String),
}

impl Literal {
    /// The number it is, if it is one.
    pub fn as_f64(&self) -> Option<f64> {
        match *self {
            Literal::Int(n) => Some(n as f64),
            Literal::Float(x) => Some(x),
            _ => None,
        }
    }
}

#[cfg(feature = "validate")]
impl Literal {
    /// A value as a JSON manifest (or an attribute, read as JSON) has it.
    pub fn from_json(v: &serde_json::Value) -> Literal {
        use alloc::string::ToString;
        use serde_json::Value;
        match v {
            Value::String(s) => Literal::Text(s.clone()),
            Value::Number(n) => n.as_i64().map_or_else(|| Literal::Float(n.as_f64().unwrap_or(f64::NAN)), Literal::Int),
            Value::Bool(b) => Literal::Bool(*b),
            other => Literal::Other(other.to_string()),
        }
    }
}

impl fmt::Display for Literal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Literal::Text(s) => write!(f, "{s:?}"),
            Literal::Int(n) => write!(f, "{n}"),
            Literal::Float(x) => write!(f, "{x:?}"),
            Literal::Bool(b) => write!(f, "{b}"),
            Literal::Other(s) => f.write_str(s),
        }
    }
}

/// Rules as written, before [`check`].
#[derive(Debug, Default, Clone, PartialEq)]
pub struct RawRules {
    /// `chars(min, max)`: a text's length in characters.
    pub chars: Option<Bounds>,
    /// `range(min, max)`: a number's bounds.
    pub range: Option<(Option<Literal>, Option<Literal>)>,
    /// `one_of(...)`: the values allowed.
    pub one_of: Option<Vec<Literal>>,
    /// `items(min, max)`: how many values a list has.
    pub items: Option<Bounds>,
}

/// Which rule an error is about (the macros point at it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rule {
    /// `chars`
    Chars,
    /// `range`
    Range,
    /// `one_of`
    OneOf,
    /// `items`
    Items,
}

/// Why rules were refused.
#[derive(Debug, Clone, PartialEq)]
pub struct RuleError {
    /// The rule at fault.
    pub rule: Rule,
    /// What is wrong with it, in a line.
    pub message: String,
}

impl fmt::Display for RuleError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

/// Rules in checked form, as the validator applies them.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Rules {
    /// A text's length in characters.
    pub chars: Option<Bounds>,
    /// An integer's bounds.
    pub int_range: Option<(Option<i64>, Option<i64>)>,
    /// A float's bounds.
    pub float_range: Option<(Option<f64>, Option<f64>)>,
    /// The texts (or keywords) allowed.
    pub one_of_text: Vec<String>,
    /// The integers allowed.
    pub one_of_int: Vec<i64>,
    /// How many values a list has.
    pub items: Option<Bounds>,
}

impl Rules {
    /// These rules refined by a parameter's own: each rule it gives
    /// replaces the named type's.
    pub fn refined_by(mut self, own: Rules) -> Rules {
        self.chars = own.chars.or(self.chars);
        self.int_range = own.int_range.or(self.int_range);
        self.float_range = own.float_range.or(self.float_range);
        self.items = own.items.or(self.items);
        if !own.one_of_text.is_empty() || !own.one_of_int.is_empty() {
            self.one_of_text = own.one_of_text;
            self.one_of_int = own.one_of_int;
        }
        self
    }
}

/// Checks that `raw` applies to `ty` and is consistent.
pub fn check(ty: Ty, raw: &RawRules) -> Result<Rules, RuleError> {
    let el = ty.element();
    let mut rules = Rules::default();
    if let Some(b) = raw.chars {
        if !ty.is_text() {
            return Err(err(Rule::Chars, format!("rule chars does not apply to {}", ty.name())));
        }
        ordered(b.min, b.max, Rule::Chars, "chars")?;
        rules.chars = Some(b);
    }
    if let Some(b) = raw.items {
        if !ty.is_list() {
            return Err(err(Rule::Items, format!("rule items does not apply to {}", ty.name())));
        }
        ordered(b.min, b.max, Rule::Items, "items")?;
        rules.items = Some(b);
    }
    if let Some((min, max)) = &raw.range {
        match el {
            Ty::Integer => {
                let int = |n: &Option<Literal>| match n {
                    None => Ok(None),
                    Some(Literal::Int(n)) => Ok(Some(*n)),
                    Some(other) => Err(err(Rule::Range, format!("range bound {other} is not an integer"))),
                };
                let (min, max) = (int(min)?, int(max)?);
                ordered(min, max, Rule::Range, "range")?;
                rules.int_range = Some((min, max));
            }
            Ty::Float => {
                let float = |n: &Option<Literal>| match n {
                    None => Ok(None),
                    Some(l) => l
                        .as_f64()
                        .filter(|x| x.is_finite())
                        .map(Some)
                        .ok_or_else(|| err(Rule::Range, format!("range bound {l} is not a number"))),
                };
                let (min, max) = (float(min)?, float(max)?);
                ordered(min, max, Rule::Range, "range")?;
                rules.float_range = Some((min, max));
            }
            _ => return Err(err(Rule::Range, format!("rule range does not apply to {}", ty.name()))),
        }
    }
    if let Some(values) = &raw.one_of {
        if values.is_empty() {
            return Err(err(Rule::OneOf, "one_of is empty".into()));
        }
        for v in values {
            match (el, v) {
                (Ty::Keyword, Literal::Text(s)) => {
                    // Keywords arrive lower-cased: any other spelling could
                    // never match.
                    let lower = s.to_lowercase();
                    if lower != *s {
                        return Err(err(
                            Rule::OneOf,
                            format!(
                                "one_of value {s:?} can never match: keywords are compared in lower case ({lower:?})"
                            ),
                        ));
                    }
                    validate_keyword(s).map_err(|why| err(Rule::OneOf, format!("one_of value {why}")))?;
                    rules.one_of_text.push(s.clone());
                }
                (Ty::String | Ty::Untyped, Literal::Text(s)) => rules.one_of_text.push(s.clone()),
                (Ty::Integer, Literal::Int(n)) => rules.one_of_int.push(*n),
                _ => return Err(err(Rule::OneOf, format!("one_of value {v} does not fit {}", ty.name()))),
            }
        }
    }
    Ok(rules)
}

fn err(rule: Rule, message: String) -> RuleError {
    RuleError { rule, message }
}

fn ordered<T: PartialOrd + fmt::Display>(
    min: Option<T>,
    max: Option<T>,
    rule: Rule,
    name: &str,
) -> Result<(), RuleError> {
    match (min, max) {
        (Some(a), Some(b)) if a > b => Err(err(rule, format!("{name}: min {a} > max {b}"))),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_what_cannot_work() {
        let chars = |min, max| RawRules { chars: Some(Bounds { min, max }), ..RawRules::default() };
        assert_eq!(check(Ty::String, &chars(Some(70), Some(64))).unwrap_err().message, "chars: min 70 > max 64");
        assert_eq!(
            check(Ty::Integer, &chars(None, Some(3))).unwrap_err().message,
            "rule chars does not apply to integer"
        );
        let one_of = |v: &str| RawRules { one_of: Some(alloc::vec![Literal::Text(v.into())]), ..RawRules::default() };
        let e = check(Ty::Keyword, &one_of("Red")).unwrap_err();
        assert_eq!(
            (e.rule, e.message.as_str()),
            (Rule::OneOf, "one_of value \"Red\" can never match: keywords are compared in lower case (\"red\")")
        );
        assert!(check(Ty::Keyword, &one_of("a b")).is_err());
        assert!(check(Ty::ListOfKeyword, &one_of("red")).is_ok());
        let range = RawRules { range: Some((Some(Literal::Float(1.5)), None)), ..RawRules::default() };
        assert_eq!(check(Ty::Integer, &range).unwrap_err().message, "range bound 1.5 is not an integer");
        assert!(check(Ty::Float, &range).is_ok());
    }
}
