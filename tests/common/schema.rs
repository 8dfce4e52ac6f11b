//! A JSON Schema check for the subset the tests' schemas use (structured output, tool arguments).

use serde_json::{json, Value};

/// Checks `v` against the subset of JSON Schema the test schemas use.
pub fn valid(v: &Value, s: &Value) -> Result<(), String> {
    if let Some(choices) = s.get("enum").and_then(Value::as_array) {
        if !choices.contains(v) {
            return Err(format!("{v} is not one of {choices:?}"));
        }
    }
    let num = |k: &str| s.get(k).and_then(Value::as_f64);
    match s.get("type").and_then(Value::as_str) {
        Some("object") => {
            let o = v.as_object().ok_or(format!("{v} is not an object"))?;
            let props = s["properties"].as_object().cloned().unwrap_or_default();
            for r in s.get("required").and_then(Value::as_array).into_iter().flatten() {
                if !o.contains_key(r.as_str().unwrap()) {
                    return Err(format!("{r} missing from {v}"));
                }
            }
            for (k, x) in o {
                match props.get(k) {
                    Some(p) => valid(x, p)?,
                    None if s.get("additionalProperties") == Some(&json!(false)) => {
                        return Err(format!("{k} is not allowed"))
                    }
                    None => {}
                }
            }
        }
        Some("array") => {
            let a = v.as_array().ok_or(format!("{v} is not an array"))?;
            let n = a.len() as f64;
            if num("minItems").is_some_and(|m| n < m) || num("maxItems").is_some_and(|m| n > m) {
                return Err(format!("{v} has {n} items"));
            }
            for x in a {
                valid(x, &s["items"])?;
            }
        }
        Some("string") => {
            let t = v.as_str().ok_or(format!("{v} is not a string"))?;
            if num("maxLength").is_some_and(|m| t.chars().count() as f64 > m) {
                return Err(format!("{v} is too long"));
            }
        }
        Some(t @ ("integer" | "number")) => {
            let x = v.as_f64().ok_or(format!("{v} is not a number"))?;
            if t == "integer" && !(v.is_i64() || v.is_u64()) {
                return Err(format!("{v} is not an integer"));
            }
            if num("minimum").is_some_and(|m| x < m) || num("maximum").is_some_and(|m| x > m) {
                return Err(format!("{v} is out of bounds"));
            }
        }
        _ => {}
    }
    Ok(())
}
