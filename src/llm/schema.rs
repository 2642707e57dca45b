//! A JSON Schema check for the subset planbox's own schemas use (type, properties, required,
//! additionalProperties, items, enum, const, min/max items, length and value, anyOf), with
//! errors a model can act on: where, what was expected, what came.

use serde_json::Value;

/// Keywords OpenAI's strict structured output does not accept; planbox checks them itself
/// on the reply.
const NOT_STRICT: [&str; 2] = ["minLength", "maxLength"];

/// `schema` in the form OpenAI's strict mode requires: every object lists all its properties
/// in `required` and allows no others, a property that was optional may be `null` instead,
/// and the keywords strict mode refuses are left out (the reply is still checked against the
/// full schema, after [`drop_optional_nulls`]).
pub fn strict(schema: &Value) -> Value {
    let mut out = schema.clone();
    make_strict(&mut out);
    out
}

fn make_strict(schema: &mut Value) {
    let Value::Object(map) = schema else {
        return;
    };
    for keyword in NOT_STRICT {
        map.remove(keyword);
    }
    let required: Vec<String> = match map.get("required") {
        Some(Value::Array(names)) => names
            .iter()
            .filter_map(|n| n.as_str().map(str::to_string))
            .collect(),
        _ => Vec::new(),
    };
    if let Some(Value::Object(properties)) = map.get_mut("properties") {
        let mut properties = std::mem::take(properties);
        let mut all = Vec::new();
        for (name, property) in properties.iter_mut() {
            make_strict(property);
            if !required.contains(name) {
                nullable(property);
            }
            all.push(Value::String(name.clone()));
        }
        map.insert("properties".into(), Value::Object(properties));
        map.insert("required".into(), Value::Array(all));
        map.insert("additionalProperties".into(), Value::Bool(false));
    }
    if let Some(items) = map.get_mut("items") {
        make_strict(items);
    }
    if let Some(Value::Array(options)) = map.get_mut("anyOf") {
        options.iter_mut().for_each(make_strict);
    }
}

/// Let `property` also be `null`.
fn nullable(property: &mut Value) {
    let Value::Object(map) = property else {
        return;
    };
    match map.get("type").cloned() {
        Some(Value::String(kind)) => {
            map.insert("type".into(), serde_json::json!([kind, "null"]));
        }
        Some(Value::Array(mut kinds)) => {
            if !kinds.contains(&Value::String("null".into())) {
                kinds.push(Value::String("null".into()));
            }
            map.insert("type".into(), Value::Array(kinds));
        }
        _ => {}
    }
    // An enum must list null too for a null to be allowed.
    if let Some(Value::Array(values)) = map.get_mut("enum")
        && !values.contains(&Value::Null)
    {
        values.push(Value::Null);
    }
}

/// `value` without the `null`s a strict-mode reply gives for the properties `schema` does not
/// require: the reply as if those had been left out.
pub fn drop_optional_nulls(schema: &Value, value: &Value) -> Value {
    match (schema, value) {
        (Value::Object(schema), Value::Object(object)) => {
            let required: Vec<&str> = match schema.get("required") {
                Some(Value::Array(names)) => names.iter().filter_map(Value::as_str).collect(),
                _ => Vec::new(),
            };
            let properties = schema.get("properties").and_then(Value::as_object);
            let mut out = serde_json::Map::new();
            for (name, field) in object {
                if field.is_null() && !required.contains(&name.as_str()) {
                    continue;
                }
                let inner = properties.and_then(|p| p.get(name));
                out.insert(
                    name.clone(),
                    inner.map_or_else(|| field.clone(), |s| drop_optional_nulls(s, field)),
                );
            }
            Value::Object(out)
        }
        (Value::Object(schema), Value::Array(items)) => match schema.get("items") {
            Some(item) => {
                Value::Array(items.iter().map(|v| drop_optional_nulls(item, v)).collect())
            }
            None => value.clone(),
        },
        _ => value.clone(),
    }
}

/// Check `value` against `schema`; every problem found, each naming its JSON path.
pub fn validate(schema: &Value, value: &Value) -> Result<(), Vec<String>> {
    let mut errors = Vec::new();
    check(schema, value, "$", &mut errors);
    if errors.is_empty() {
        Ok(())
    } else {
        Err(errors)
    }
}

fn type_name(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(n) if n.is_i64() || n.is_u64() => "integer",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

fn matches_type(want: &str, value: &Value) -> bool {
    let got = type_name(value);
    want == got || (want == "number" && got == "integer")
}

fn check(schema: &Value, value: &Value, path: &str, errors: &mut Vec<String>) {
    let Some(schema) = schema.as_object() else {
        return;
    };
    if let Some(want) = schema.get("type") {
        let wanted: Vec<&str> = match want {
            Value::String(t) => vec![t.as_str()],
            Value::Array(ts) => ts.iter().filter_map(Value::as_str).collect(),
            _ => vec![],
        };
        if !wanted.is_empty() && !wanted.iter().any(|t| matches_type(t, value)) {
            errors.push(format!(
                "at {path}: expected {}, got {}",
                wanted.join(" or "),
                type_name(value)
            ));
            return;
        }
    }
    if let Some(Value::Array(options)) = schema.get("enum")
        && !options.contains(value)
    {
        let names: Vec<String> = options.iter().map(Value::to_string).collect();
        errors.push(format!(
            "at {path}: must be one of {}, got {value}",
            names.join(", ")
        ));
    }
    if let Some(constant) = schema.get("const")
        && constant != value
    {
        errors.push(format!("at {path}: must be {constant}, got {value}"));
    }
    if let Some(Value::Array(options)) = schema.get("anyOf")
        && !options.iter().any(|option| validate(option, value).is_ok())
    {
        errors.push(format!("at {path}: matches none of the allowed shapes"));
    }
    match value {
        Value::Object(object) => {
            if let Some(Value::Array(required)) = schema.get("required") {
                for name in required.iter().filter_map(Value::as_str) {
                    if !object.contains_key(name) {
                        errors.push(format!("at {path}: missing required field \"{name}\""));
                    }
                }
            }
            let properties = schema.get("properties").and_then(Value::as_object);
            for (name, field) in object {
                let child = format!("{path}.{name}");
                match properties.and_then(|p| p.get(name)) {
                    Some(field_schema) => check(field_schema, field, &child, errors),
                    None => {
                        if schema.get("additionalProperties") == Some(&Value::Bool(false)) {
                            errors.push(format!("at {path}: unknown field \"{name}\""));
                        }
                    }
                }
            }
        }
        Value::Array(items) => {
            let bound = |key: &str| schema.get(key).and_then(Value::as_u64);
            if let Some(min) = bound("minItems")
                && (items.len() as u64) < min
            {
                errors.push(format!(
                    "at {path}: needs at least {min} items, has {}",
                    items.len()
                ));
            }
            if let Some(max) = bound("maxItems")
                && items.len() as u64 > max
            {
                errors.push(format!(
                    "at {path}: allows at most {max} items, has {}",
                    items.len()
                ));
            }
            if let Some(item_schema) = schema.get("items") {
                for (i, item) in items.iter().enumerate() {
                    check(item_schema, item, &format!("{path}[{i}]"), errors);
                }
            }
        }
        Value::String(text) => {
            let chars = text.chars().count() as u64;
            if let Some(min) = schema.get("minLength").and_then(Value::as_u64)
                && chars < min
            {
                errors.push(format!("at {path}: needs at least {min} characters"));
            }
            if let Some(max) = schema.get("maxLength").and_then(Value::as_u64)
                && chars > max
            {
                errors.push(format!(
                    "at {path}: allows at most {max} characters, has {chars}"
                ));
            }
        }
        Value::Number(number) => {
            let n = number.as_f64().unwrap_or(f64::NAN);
            if let Some(min) = schema.get("minimum").and_then(Value::as_f64)
                && n < min
            {
                errors.push(format!("at {path}: must be at least {min}, got {n}"));
            }
            if let Some(max) = schema.get("maximum").and_then(Value::as_f64)
                && n > max
            {
                errors.push(format!("at {path}: must be at most {max}, got {n}"));
            }
        }
        Value::Null | Value::Bool(_) => {}
    }
}

#[cfg(test)]
mod strict_tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn the_strict_form_requires_every_property_and_drops_what_strict_mode_refuses() {
        let plan = crate::plan::schema(&crate::plan::Limits::default());
        let strict = strict(&plan);
        let item = &strict["properties"]["steps"]["items"];
        let required: Vec<&str> = item["required"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_str().unwrap())
            .collect();
        let properties: Vec<&str> = item["properties"]
            .as_object()
            .unwrap()
            .keys()
            .map(String::as_str)
            .collect();
        assert_eq!(required, properties);
        assert_eq!(
            item["properties"]["fallback"]["type"],
            json!(["string", "null"])
        );
        assert_eq!(
            item["properties"]["produces"]["type"],
            json!(["array", "null"])
        );
        assert_eq!(item["properties"]["id"]["type"], json!("string"));
        assert_eq!(item["additionalProperties"], json!(false));
        assert!(!strict.to_string().contains("maxLength"));
        assert!(
            strict["properties"]["steps"]
                .as_object()
                .unwrap()
                .contains_key("maxItems")
        );
        // The original is untouched.
        assert!(plan.to_string().contains("maxLength"));
    }

    #[test]
    fn a_strict_reply_s_nulls_for_optional_fields_are_dropped_before_the_check() {
        let plan = crate::plan::schema(&crate::plan::Limits::default());
        let reply = json!({"steps": [{"id": "a", "title": "t", "instruction": "i", "kind": "action",
            "depends_on": [], "reads": [], "writes": [], "produces": null, "uses": null, "fallback": null}]});
        assert!(validate(&plan, &reply).is_err());
        let cleaned = drop_optional_nulls(&plan, &reply);
        assert_eq!(validate(&plan, &cleaned), Ok(()));
        assert!(cleaned["steps"][0].get("fallback").is_none());
        // A required field's null stays, and fails.
        let bad = json!({"steps": [{"id": null, "title": "t", "instruction": "i", "kind": "action",
            "depends_on": [], "reads": [], "writes": []}]});
        assert!(validate(&plan, &drop_optional_nulls(&plan, &bad)).is_err());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use pretty_assertions::assert_eq;
    use serde_json::json;

    fn plan_schema() -> Value {
        json!({
            "type": "object",
            "required": ["steps"],
            "additionalProperties": false,
            "properties": {
                "steps": {
                    "type": "array", "minItems": 1, "maxItems": 2,
                    "items": {
                        "type": "object",
                        "required": ["id", "kind"],
                        "properties": {
                            "id": {"type": "string", "minLength": 1},
                            "kind": {"enum": ["action", "verify"]},
                            "n": {"type": "integer", "minimum": 0}
                        }
                    }
                }
            }
        })
    }

    #[test]
    fn accepts_a_matching_value() {
        assert_eq!(
            validate(
                &plan_schema(),
                &json!({"steps": [{"id": "a", "kind": "action", "extra": 1}]})
            ),
            Ok(())
        );
    }

    #[test]
    fn names_every_problem_with_its_path() {
        let value = json!({"steps": [{"id": 3, "kind": "run", "n": -1}, {"kind": "verify"}, {"id": "c", "kind": "action"}], "x": 1});
        assert_eq!(
            validate(&plan_schema(), &value),
            Err(vec![
                "at $.steps: allows at most 2 items, has 3".to_string(),
                "at $.steps[0].id: expected string, got integer".to_string(),
                "at $.steps[0].kind: must be one of \"action\", \"verify\", got \"run\""
                    .to_string(),
                "at $.steps[0].n: must be at least 0, got -1".to_string(),
                "at $.steps[1]: missing required field \"id\"".to_string(),
                "at $: unknown field \"x\"".to_string(),
            ])
        );
    }
}
