//! Limits on what one operation of a model file's chat template may build: minijinja's fuel bounds
//! the number of operations and chat.rs's writer the output, but some filters and methods size
//! their result from their arguments (`indent`, printf's and str.format's widths, `replace`,
//! `batch`, `slice`) or walk a whole sequence in one call (`list`, `join`, `sort`, `tojson`, ...,
//! where `[0] * 4000000000` is a lazy sequence of four billion items), so one call could ask for
//! gigabytes (an allocation that aborts the process, or a wasm trap) or run for minutes. These wrap
//! minijinja's own filters and pycompat's methods with a check of that size first. Operators
//! (`~`, `*` of a string, `in`) cannot be wrapped: minijinja caps a repeated string at 100 MB.

use minijinja::value::{Kwargs, Rest, StringInput, ValueKind};
use minijinja::{Error, ErrorKind, State, Value};

/// The widest indent, field width or precision a template may ask for, and the largest batch or
/// slice count.
pub const TEMPLATE_WIDTH_MAX: usize = 256;
/// The longest string `replace`, `indent` or `join` may make, and the most a filter that walks a
/// whole sequence may meet (an item counts 1, a string its bytes, nested sequences included).
pub const TEMPLATE_BUILD_MAX: usize = 16 << 20;

/// Wraps minijinja's filter `$name` with a check that its input is within TEMPLATE_BUILD_MAX.
macro_rules! walked {
    ($env:expr, $($name:ident),*) => {$({
        let original = Value::from_function(minijinja::filters::$name);
        $env.add_filter(stringify!($name), move |state: &State, args: Rest<Value>| {
            if let Some(value) = args.first() {
                walk_within(stringify!($name), value)?;
            }
            original.call(state, &args)
        });
    })*};
}

/// The environment's filters and its unknown-method callback (pycompat's str and dict methods),
/// each refusing a result sized past the limits above.
pub fn bound(env: &mut minijinja::Environment) {
    env.add_filter(
        "indent",
        |value: StringInput, width: Option<usize>, first: Option<bool>, blank: Option<bool>, kwargs: Kwargs| {
            let asked = match width {
                Some(w) => w,
                None => kwargs.get::<Option<usize>>("width")?.unwrap_or(4),
            };
            within("indent", asked)?;
            let lines = value.as_str().matches('\n').count() + 1;
            built("indent", value.as_str().len().saturating_add(lines.saturating_mul(asked)))?;
            minijinja::filters::indent(value, width, first, blank, kwargs)
        },
    );
    env.add_filter("format", |state: &State, format: &Value, args: Rest<Value>| {
        printf_widths(format.as_str().unwrap_or_default())?;
        minijinja::filters::format(state, format, args)
    });
    env.add_filter("replace", |state: &State, value: StringInput, from: StringInput, to: StringInput| {
        replaced_len(value.as_str(), from.as_str(), to.as_str())?;
        minijinja::filters::replace(state, value, from, to)
    });
    env.add_filter("join", |state: &State, value: &Value, joiner: Option<StringInput>| {
        joined("join", value, joiner.as_ref().map_or("", |j| j.as_str()))?;
        minijinja::filters::join(state, value, joiner)
    });
    // batch and slice make `count` lists (slice) or reserve `count` places (batch) at once.
    env.add_filter("batch", |state: &State, value: Value, count: usize, fill: Option<Value>| {
        within("batch count", count)?;
        walk_within("batch", &value)?;
        minijinja::filters::batch(state, value, count, fill)
    });
    env.add_filter("slice", |state: &State, value: Value, count: usize, fill: Option<Value>| {
        within("slice count", count)?;
        walk_within("slice", &value)?;
        minijinja::filters::slice(state, value, count, fill)
    });
    walked!(env, list, sort, unique, reverse, dictsort, items, groupby, string, sum, min, max, last);
    walked!(env, map, select, reject, selectattr, rejectattr);
    env.set_unknown_method_callback(|state: &State, value: &Value, method: &str, args: &[Value]| {
        if let Some(s) = value.as_str() {
            match (method, args) {
                ("format", _) => format_widths(s)?,
                ("replace", [from, to, ..]) => {
                    replaced_len(s, from.as_str().unwrap_or_default(), to.as_str().unwrap_or_default())?
                }
                ("join", [items, ..]) => joined("str.join", items, s)?,
                // pycompat's count of "" never ends (its search steps 0 bytes): Python's answer.
                ("count", [what]) if what.as_str() == Some("") => return Ok(Value::from(s.chars().count() + 1)),
                _ => {}
            }
        } else if method == "count" {
            walk_within("list.count", value)?;
        }
        minijinja_contrib::pycompat::unknown_method_callback(state, value, method, args)
    });
}

fn refuse(msg: String) -> Error {
    Error::new(ErrorKind::InvalidOperation, msg)
}

fn within(what: &str, n: usize) -> Result<(), Error> {
    match n <= TEMPLATE_WIDTH_MAX {
        true => Ok(()),
        false => Err(refuse(format!("{what} {n} is over the limit of {TEMPLATE_WIDTH_MAX}"))),
    }
}

/// A result of `len` bytes, within TEMPLATE_BUILD_MAX.
fn built(what: &str, len: usize) -> Result<(), Error> {
    match len <= TEMPLATE_BUILD_MAX {
        true => Ok(()),
        false => Err(refuse(format!("{what} would make {len} bytes, over the limit of {TEMPLATE_BUILD_MAX}"))),
    }
}

/// `items` joined by `joiner`: the items within the walk's limit, and the joiners' bytes too.
fn joined(what: &str, items: &Value, joiner: &str) -> Result<(), Error> {
    walk_within(what, items)?;
    built(what, items.len().unwrap_or(0).saturating_mul(joiner.len()))
}

/// A filter's input, walked to its leaves (at most TEMPLATE_BUILD_MAX steps): within the limit
/// (chat.rs's tojson asks too).
pub fn walk_within(what: &str, value: &Value) -> Result<(), Error> {
    let mut budget = TEMPLATE_BUILD_MAX;
    match walk(value, &mut budget) {
        true => Ok(()),
        false => Err(refuse(format!(
            "{what} would walk over {TEMPLATE_BUILD_MAX} items and bytes (a sequence too long for a template)"
        ))),
    }
}

/// Takes `value`'s size (an item 1, a string its bytes, sequences and maps their contents) from
/// `budget`; false once it runs out. A sequence whose length alone is over is refused unwalked.
fn walk(value: &Value, budget: &mut usize) -> bool {
    let kind = value.kind();
    if !matches!(kind, ValueKind::Seq | ValueKind::Map | ValueKind::Iterable) {
        let cost = match kind {
            ValueKind::String => value.as_str().map_or(0, str::len),
            ValueKind::Bytes => value.len().unwrap_or(0),
            _ => 0,
        };
        return match budget.checked_sub(cost) {
            Some(left) => {
                *budget = left;
                true
            }
            None => false,
        };
    }
    if value.len().is_some_and(|n| n > *budget) {
        return false;
    }
    let Ok(items) = value.try_iter() else { return true };
    for item in items {
        if *budget == 0 {
            return false;
        }
        *budget -= 1;
        let inner = match kind {
            ValueKind::Map => value.get_item(&item).unwrap_or_default(),
            _ => item,
        };
        if !walk(&inner, budget) {
            return false;
        }
    }
    true
}

/// The numbers in a format spec (widths, precisions), each within the limit.
fn spec_numbers(what: &str, spec: &str) -> Result<(), Error> {
    for digits in spec.split(|c: char| !c.is_ascii_digit()).filter(|d| !d.is_empty()) {
        within(what, digits.parse::<usize>().unwrap_or(usize::MAX))?;
    }
    Ok(())
}

/// printf-style specs (`%-08.3f`): widths and precisions within the limit, none taken from the
/// arguments (`*`).
fn printf_widths(format: &str) -> Result<(), Error> {
    let mut rest = format;
    while let Some(at) = rest.find('%') {
        let spec = &rest[at + 1..];
        // After a mapping key (`%(name)8s`), the spec runs to its conversion letter (or %, for a
        // literal percent sign).
        let spec = match spec.strip_prefix('(') {
            Some(keyed) => &keyed[keyed.find(')').map_or(keyed.len(), |i| i + 1)..],
            None => spec,
        };
        let end = spec.find(|c: char| c.is_ascii_alphabetic() || c == '%').unwrap_or(spec.len());
        let head = &spec[..end];
        if head.contains('*') {
            return Err(refuse("a printf width or precision from the arguments (*) is not allowed".into()));
        }
        spec_numbers("printf width", head)?;
        rest = &spec[(end + 1).min(spec.len())..];
    }
    Ok(())
}

/// str.format replacement fields (`{0:>8}`): widths and precisions within the limit, no field
/// nested in a spec (`{:{w}}`, a width from the arguments).
fn format_widths(format: &str) -> Result<(), Error> {
    let mut rest = format;
    while let Some(at) = rest.find('{') {
        let field = &rest[at + 1..];
        if let Some(escaped) = field.strip_prefix('{') {
            rest = escaped;
            continue;
        }
        let end = field.find('}').unwrap_or(field.len());
        // A nested field ends the outer one's search early: refuse a `{` in what came before.
        let inner = &field[..end];
        if let Some(colon) = inner.find(':') {
            let spec = &inner[colon + 1..];
            if spec.contains('{') {
                return Err(refuse("a str.format width from the arguments ({:{w}}) is not allowed".into()));
            }
            spec_numbers("str.format width", spec)?;
        }
        rest = &field[(end + 1).min(field.len())..];
    }
    Ok(())
}

/// `value` with `from` replaced by `to` within TEMPLATE_BUILD_MAX bytes (an empty `from` matches
/// between every two characters, as Python's does).
fn replaced_len(value: &str, from: &str, to: &str) -> Result<(), Error> {
    let matches = if from.is_empty() { value.chars().count() + 1 } else { value.matches(from).count() };
    built("replace", (value.len() - matches * from.len()).saturating_add(matches.saturating_mul(to.len())))
}

#[cfg(test)]
mod tests {
    use super::{format_widths, printf_widths, replaced_len};

    #[test]
    fn widths_past_the_limit_are_refused() {
        for ok in ["%s and %d", "%-8s|%08.3f|%%", "%(name)s", "100%", "no specs at all 2026"] {
            assert!(printf_widths(ok).is_ok(), "{ok}");
        }
        for bad in ["%1000000000d", "%.999999s", "%*d", "%-.*f", "%(name)100000s"] {
            assert!(printf_widths(bad).is_err(), "{bad}");
        }
        for ok in ["{} in 2026", "{0:>8}", "{name:.3f}", "{{1000000}}", "{{:{}}}"] {
            assert!(format_widths(ok).is_ok(), "{ok}");
        }
        for bad in ["{:>3000000000}", "{0:.100000}", "{:{w}}", "{:>{}}"] {
            assert!(format_widths(bad).is_err(), "{bad}");
        }
        assert!(replaced_len("abc", "b", "xyz").is_ok());
        assert!(replaced_len(&"a".repeat(1 << 20), "a", &"b".repeat(64)).is_err());
        assert!(replaced_len("ab", "", &"x".repeat(8 << 20)).is_err());
    }
}
