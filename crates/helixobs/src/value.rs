//! Typed attribute values: what `set_attribute`, `add_event` and `complete_with` accept.

use std::borrow::Cow;
use std::sync::Arc;

use opentelemetry::{Array, Key, KeyValue, StringValue, Value};

/// A value that can be attached to a span or an event: strings, integers, floats, booleans and
/// homogeneous arrays of those. The herald renders each to text for the entity's metadata
/// (integers in decimal, floats as the shortest round-trip text, arrays as compact JSON).
pub trait IntoValue {
    /// The OpenTelemetry attribute value.
    fn into_value(self) -> Value;
}

impl IntoValue for Value {
    fn into_value(self) -> Value {
        self
    }
}

impl IntoValue for &str {
    fn into_value(self) -> Value {
        Value::String(StringValue::from(self.to_owned()))
    }
}

impl IntoValue for String {
    fn into_value(self) -> Value {
        Value::String(StringValue::from(self))
    }
}

impl IntoValue for &String {
    fn into_value(self) -> Value {
        Value::String(StringValue::from(self.clone()))
    }
}

impl IntoValue for Arc<str> {
    fn into_value(self) -> Value {
        Value::String(StringValue::from(self))
    }
}

impl IntoValue for Cow<'static, str> {
    fn into_value(self) -> Value {
        Value::String(StringValue::from(self))
    }
}

impl IntoValue for bool {
    fn into_value(self) -> Value {
        Value::Bool(self)
    }
}

macro_rules! int_values {
    ($($t:ty),*) => {$(
        impl IntoValue for $t {
            fn into_value(self) -> Value {
                Value::I64(i64::from(self))
            }
        }
    )*};
}
int_values!(i8, i16, i32, i64, u8, u16, u32);

/// OTLP integers are signed 64-bit: larger unsigned values are sent as their decimal text, which
/// is exactly what the herald would have rendered.
macro_rules! wide_values {
    ($($t:ty),*) => {$(
        impl IntoValue for $t {
            fn into_value(self) -> Value {
                match i64::try_from(self) {
                    Ok(v) => Value::I64(v),
                    Err(_) => Value::String(self.to_string().into()),
                }
            }
        }
    )*};
}
wide_values!(u64, usize, isize, i128, u128);

impl IntoValue for f64 {
    fn into_value(self) -> Value {
        Value::F64(self)
    }
}

impl IntoValue for f32 {
    fn into_value(self) -> Value {
        // Through the decimal text, so 0.1f32 stays 0.1 rather than 0.10000000149011612.
        Value::F64(self.to_string().parse().unwrap_or(f64::from(self)))
    }
}

/// An element type of an attribute array.
pub trait ArrayElement: Sized {
    /// The OpenTelemetry array holding these elements.
    fn into_array(items: Vec<Self>) -> Array;
}

impl ArrayElement for bool {
    fn into_array(items: Vec<Self>) -> Array {
        Array::Bool(items)
    }
}

impl ArrayElement for i64 {
    fn into_array(items: Vec<Self>) -> Array {
        Array::I64(items)
    }
}

impl ArrayElement for i32 {
    fn into_array(items: Vec<Self>) -> Array {
        Array::I64(items.into_iter().map(i64::from).collect())
    }
}

impl ArrayElement for u32 {
    fn into_array(items: Vec<Self>) -> Array {
        Array::I64(items.into_iter().map(i64::from).collect())
    }
}

impl ArrayElement for f64 {
    fn into_array(items: Vec<Self>) -> Array {
        Array::F64(items)
    }
}

impl ArrayElement for String {
    fn into_array(items: Vec<Self>) -> Array {
        Array::String(items.into_iter().map(StringValue::from).collect())
    }
}

impl ArrayElement for &str {
    fn into_array(items: Vec<Self>) -> Array {
        Array::String(items.into_iter().map(|s| StringValue::from(s.to_owned())).collect())
    }
}

impl<T: ArrayElement> IntoValue for Vec<T> {
    fn into_value(self) -> Value {
        Value::Array(T::into_array(self))
    }
}

impl<T: ArrayElement + Clone> IntoValue for &[T] {
    fn into_value(self) -> Value {
        Value::Array(T::into_array(self.to_vec()))
    }
}

impl<T: ArrayElement, const N: usize> IntoValue for [T; N] {
    fn into_value(self) -> Value {
        Value::Array(T::into_array(Vec::from(self)))
    }
}

/// Key/value pairs from anything iterable, e.g. `[("label", "FRB")]` or a `Vec<(String, f64)>`.
pub(crate) fn key_values<K, V>(pairs: impl IntoIterator<Item = (K, V)>) -> Vec<KeyValue>
where
    K: Into<Key>,
    V: IntoValue,
{
    pairs.into_iter().map(|(k, v)| KeyValue::new(k.into(), v.into_value())).collect()
}
