//! Metadata rendering (docs/wire.md): any OTLP attribute value → the flat string stored in
//! `metadata`, so dashboards can read `metadata->>'key'` whatever type the client sent.

use opentelemetry_proto::tonic::common::v1::{any_value::Value, AnyValue, KeyValue};
use serde_json::Value as Json;

use crate::ids::to_hex;
use crate::records::Metadata;

/// The stored text of one attribute value. An absent value renders as the empty string.
pub fn render_value(value: Option<&AnyValue>) -> String {
    match value.and_then(|v| v.value.as_ref()) {
        None => String::new(),
        Some(Value::StringValue(s)) => s.clone(),
        Some(Value::IntValue(i)) => i.to_string(),
        Some(Value::DoubleValue(d)) => render_double(*d),
        Some(Value::BoolValue(b)) => b.to_string(),
        Some(Value::BytesValue(b)) => to_hex(b),
        Some(v @ (Value::ArrayValue(_) | Value::KvlistValue(_))) => to_json(Some(v)).to_string(),
        // Dictionary references only have meaning inside OTLP profiles, never on spans.
        Some(Value::StringValueStrindex(_)) => String::new(),
    }
}

/// Shortest text that parses back to the same double; plain decimal for magnitudes in
/// [1e-6, 1e21), exponent form outside it (as JavaScript prints numbers).
pub fn render_double(d: f64) -> String {
    if d.is_nan() {
        return "NaN".into();
    }
    if d.is_infinite() {
        return if d > 0.0 { "Infinity".into() } else { "-Infinity".into() };
    }
    if d == 0.0 {
        // -0.0 and 0.0 are the same measurement to a scientist reading metadata.
        return "0".into();
    }
    let magnitude = d.abs();
    if (1e-6..1e21).contains(&magnitude) {
        // Rust's Display for f64 is the shortest round-tripping decimal and never uses an exponent.
        format!("{d}")
    } else {
        // `{:e}` is also shortest round-trip; JavaScript style puts a sign on the exponent.
        let s = format!("{d:e}");
        match s.split_once('e') {
            Some((mantissa, exp)) if !exp.starts_with('-') => format!("{mantissa}e+{exp}"),
            _ => s,
        }
    }
}

/// Compact JSON for arrays and key-value lists; scalars keep their JSON type.
fn to_json(value: Option<&Value>) -> Json {
    match value {
        None => Json::Null,
        Some(Value::StringValue(s)) => Json::String(s.clone()),
        Some(Value::IntValue(i)) => Json::from(*i),
        Some(Value::DoubleValue(d)) => serde_json::Number::from_f64(*d)
            .map(Json::Number)
            // JSON has no NaN/Infinity: keep the value readable as text.
            .unwrap_or_else(|| Json::String(render_double(*d))),
        Some(Value::BoolValue(b)) => Json::Bool(*b),
        Some(Value::BytesValue(b)) => Json::String(to_hex(b)),
        Some(Value::StringValueStrindex(_)) => Json::Null,
        Some(Value::ArrayValue(a)) => Json::Array(a.values.iter().map(|v| to_json(v.value.as_ref())).collect()),
        Some(Value::KvlistValue(kv)) => Json::Object(
            kv.values
                .iter()
                .map(|kv| (kv.key.clone(), to_json(kv.value.as_ref().and_then(|v| v.value.as_ref()))))
                .collect(),
        ),
    }
}

/// Render every attribute except the keys in `skip`. A repeated key keeps its last value.
pub fn render_attributes(attributes: &[KeyValue], skip: &[&str]) -> Metadata {
    attributes
        .iter()
        .filter(|kv| !skip.contains(&kv.key.as_str()))
        .map(|kv| (kv.key.clone(), render_value(kv.value.as_ref())))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use opentelemetry_proto::tonic::common::v1::{ArrayValue, KeyValueList};

    fn v(value: Value) -> AnyValue {
        AnyValue { value: Some(value) }
    }

    #[test]
    fn string_is_kept_as_is() {
        assert_eq!(render_value(Some(&v(Value::StringValue("a b\"c".into())))), "a b\"c");
    }

    #[test]
    fn int_is_decimal() {
        assert_eq!(render_value(Some(&v(Value::IntValue(-42)))), "-42");
        assert_eq!(render_value(Some(&v(Value::IntValue(i64::MAX)))), "9223372036854775807");
    }

    #[test]
    fn double_is_shortest_round_trip_without_exponent_in_range() {
        let cases = [
            (0.5, "0.5"),
            (0.97, "0.97"),
            (12.5, "12.5"),
            (1.0, "1"),
            (0.1 + 0.2, "0.30000000000000004"),
            (1e-6, "0.000001"),
            (123456789012345680000.0, "123456789012345680000"),
            (-2.25, "-2.25"),
            (1e21, "1e+21"),
            (1.5e-7, "1.5e-7"),
            (-0.0, "0"),
            (f64::NAN, "NaN"),
            (f64::NEG_INFINITY, "-Infinity"),
        ];
        for (d, want) in cases {
            assert_eq!(render_double(d), want, "rendering {d:?}");
            if d.is_finite() {
                assert_eq!(render_double(d).parse::<f64>().unwrap(), d, "round trip of {d:?}");
            }
        }
    }

    #[test]
    fn bool_bytes_and_absent() {
        assert_eq!(render_value(Some(&v(Value::BoolValue(true)))), "true");
        assert_eq!(render_value(Some(&v(Value::BoolValue(false)))), "false");
        assert_eq!(render_value(Some(&v(Value::BytesValue(vec![0xde, 0xad, 0x01])))), "dead01");
        assert_eq!(render_value(None), "");
        assert_eq!(render_value(Some(&AnyValue { value: None })), "");
    }

    #[test]
    fn arrays_and_kvlists_are_compact_json() {
        let array = v(Value::ArrayValue(ArrayValue {
            values: vec![v(Value::StringValue("a".into())), v(Value::StringValue("b".into()))],
        }));
        assert_eq!(render_value(Some(&array)), r#"["a","b"]"#);
        let mixed = v(Value::ArrayValue(ArrayValue {
            values: vec![
                v(Value::IntValue(1)),
                v(Value::DoubleValue(0.5)),
                v(Value::BoolValue(true)),
                v(Value::BytesValue(vec![0xff])),
            ],
        }));
        assert_eq!(render_value(Some(&mixed)), r#"[1,0.5,true,"ff"]"#);
        let kv = v(Value::KvlistValue(KeyValueList {
            values: vec![KeyValue { key: "k".into(), value: Some(v(Value::IntValue(7))), ..Default::default() }],
        }));
        assert_eq!(render_value(Some(&kv)), r#"{"k":7}"#);
    }

    #[test]
    fn skipped_keys_are_not_metadata_and_empty_is_empty_map() {
        let attrs = vec![
            KeyValue {
                key: "helix.entity.id".into(),
                value: Some(v(Value::StringValue("x".into()))),
                ..Default::default()
            },
            KeyValue { key: "score".into(), value: Some(v(Value::DoubleValue(0.97))), ..Default::default() },
        ];
        let m = render_attributes(&attrs, &["helix.entity.id"]);
        assert_eq!(m.len(), 1);
        assert_eq!(m["score"], "0.97");
        assert!(render_attributes(&attrs[..1], &["helix.entity.id"]).is_empty());
    }
}
