//! A CustomResourceDefinition's structural schema, applied as the API server applies it
//! under strict field validation (what `kubectl apply` asks for): types, enums, required
//! fields, int32 ranges, and every field declared (the API server prunes or, strictly,
//! refuses the others), patterns, minimum lengths and int-or-string fields. `metadata` is
//! checked as the ObjectMeta fields nsguard writes.

use serde_json::Value;

/// Every violation of `schema` by `value`, as `path: what`.
pub fn violations(schema: &Value, value: &Value) -> Vec<String> {
    let mut out = Vec::new();
    check(schema, value, "", &mut out);
    out
}

fn check(schema: &Value, value: &Value, path: &str, out: &mut Vec<String>) {
    if path == ".metadata" {
        return metadata(value, out);
    }
    if schema["x-kubernetes-int-or-string"] == true {
        if !(value.is_i64() || value.is_string()) {
            out.push(format!(
                "{path}: expected an integer or a string, got {value}"
            ));
        }
        return;
    }
    let ok = match schema["type"].as_str() {
        Some("object") => value.is_object(),
        Some("array") => value.is_array(),
        Some("string") => value.is_string(),
        Some("boolean") => value.is_boolean(),
        Some("integer") => value.is_i64(),
        other => panic!("{path}: schema type {other:?} not handled"),
    };
    if !ok {
        out.push(format!("{path}: expected {}, got {value}", schema["type"]));
        return;
    }
    if let Some(allowed) = schema["enum"].as_array()
        && !allowed.contains(value)
    {
        out.push(format!("{path}: {value} is not one of {allowed:?}"));
    }
    if let (Some(pattern), Some(text)) = (schema["pattern"].as_str(), value.as_str())
        && !regex::Regex::new(pattern).unwrap().is_match(text)
    {
        out.push(format!("{path}: {value} does not match {pattern}"));
    }
    if let (Some(min), Some(text)) = (schema["minLength"].as_u64(), value.as_str())
        && (text.chars().count() as u64) < min
    {
        out.push(format!("{path}: {value} is shorter than {min}"));
    }
    if schema["format"] == "int32" && i32::try_from(value.as_i64().unwrap()).is_err() {
        out.push(format!("{path}: {value} is out of int32 range"));
    }
    match value {
        Value::Object(fields) => {
            for required in schema["required"].as_array().into_iter().flatten() {
                if !fields.contains_key(required.as_str().unwrap()) {
                    out.push(format!("{path}: required field {required} missing"));
                }
            }
            for (key, field) in fields {
                let at = format!("{path}.{key}");
                if let Some(declared) = schema["properties"].get(key) {
                    check(declared, field, &at, out);
                } else if let Some(any) = schema.get("additionalProperties") {
                    check(any, field, &at, out);
                } else {
                    out.push(format!("{at}: unknown field"));
                }
            }
        }
        Value::Array(items) => {
            for (i, item) in items.iter().enumerate() {
                check(&schema["items"], item, &format!("{path}[{i}]"), out);
            }
        }
        _ => {}
    }
}

/// The ObjectMeta fields nsguard writes: a name, a namespace and string labels.
fn metadata(value: &Value, out: &mut Vec<String>) {
    let Some(fields) = value.as_object() else {
        return out.push(format!(".metadata: expected an object, got {value}"));
    };
    for (key, field) in fields {
        let ok = match key.as_str() {
            "name" | "namespace" => field.as_str().is_some_and(|s| !s.is_empty()),
            "labels" | "annotations" => field
                .as_object()
                .is_some_and(|m| m.values().all(Value::is_string)),
            _ => false,
        };
        if !ok {
            out.push(format!(
                ".metadata.{key}: not a valid ObjectMeta field: {field}"
            ));
        }
    }
}
