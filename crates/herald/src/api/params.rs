//! Decoding and validating request inputs: the `{id}` path segment and query parameters.
//! Every rejection is a 400 naming the offending parameter; handlers only see checked values.

use axum::extract::{FromRequestParts, Path, Query};
use axum::http::request::Parts;
use helix_model::shape::MAX_KEY_BYTES;
use helix_model::MAX_ENTITY_ID_BYTES;
use helix_store::PageRequest;

use super::{ApiError, ApiResult};

/// Longest query value accepted (filters, prefixes, metadata values).
pub const MAX_VALUE_BYTES: usize = 16 * 1024;
/// Longest cursor accepted. Cursors embed the last row's sort key, which can be an entity ID
/// of up to [`MAX_ENTITY_ID_BYTES`] (hex-encoded by the stores), so this is well above twice that.
pub const MAX_CURSOR_BYTES: usize = 4 * MAX_ENTITY_ID_BYTES;
/// Most `meta.KEY` filters in one request: each is a condition the store evaluates per row.
pub const MAX_META_FILTERS: usize = 16;
/// Stand-in in a route's parameter list for every `meta.KEY` parameter.
pub const META_WILDCARD: &str = "meta.*";
const META_PREFIX: &str = "meta.";

/// An entity ID taken from the `{id}` path segment, percent-decoded and checked: non-empty,
/// valid UTF-8, and within the rule ingest applies ([`helix_model::check_entity_id`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EntityId(pub String);

impl<S: Send + Sync> FromRequestParts<S> for EntityId {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let Path(id) = Path::<String>::from_request_parts(parts, state)
            .await
            // The usual cause is a percent-encoding that does not decode to UTF-8.
            .map_err(|rejection| ApiError::bad("id", rejection.body_text()))?;
        check_entity_id(&id)?;
        Ok(EntityId(id))
    }
}

/// The rules every entity ID in a path obeys: the model's rule for stored IDs, so any ID the
/// herald stored can be asked for and no other; an empty segment names no entity at all.
pub fn check_entity_id(id: &str) -> ApiResult<()> {
    if id.is_empty() {
        return Err(ApiError::bad("id", "must not be empty"));
    }
    helix_model::check_entity_id(id).map_err(|why| ApiError::bad("id", why))
}

/// The decoded query string of one request. Handlers first check the names against the
/// endpoint's list ([`QueryParams::allow`]), then read typed values through the accessors.
#[derive(Debug, Clone, Default)]
pub struct QueryParams {
    pairs: Vec<(String, String)>,
}

impl<S: Send + Sync> FromRequestParts<S> for QueryParams {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        let Query(pairs) = Query::<Vec<(String, String)>>::try_from_uri(&parts.uri)
            .map_err(|rejection| ApiError::bad("query", rejection.body_text()))?;
        Ok(QueryParams { pairs })
    }
}

impl QueryParams {
    #[cfg(test)]
    pub fn from_pairs(pairs: &[(&str, &str)]) -> Self {
        QueryParams { pairs: pairs.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect() }
    }

    /// Rejects names outside `allowed` (so a typo like `limt` is an error, not a silent
    /// default) and any parameter given twice (which value would win is not obvious).
    pub fn allow(self, allowed: &[&str]) -> ApiResult<Self> {
        self.check(allowed, true)
    }

    /// Like [`QueryParams::allow`] but ignores unknown names: for the compatible endpoints,
    /// whose existing clients may add parameters of their own (cache busters and the like).
    pub fn allow_extra(self, allowed: &[&str]) -> ApiResult<Self> {
        self.check(allowed, false)
    }

    fn check(self, allowed: &[&str], strict: bool) -> ApiResult<Self> {
        let metas_allowed = allowed.contains(&META_WILDCARD);
        if metas_allowed {
            let metas = self.pairs.iter().filter(|(name, _)| name.starts_with(META_PREFIX)).count();
            if metas > MAX_META_FILTERS {
                return Err(ApiError::bad(
                    META_WILDCARD,
                    format!("{metas} metadata filters, more than the {MAX_META_FILTERS} allowed in one request"),
                ));
            }
            // Checked before anything else reads the name: keys are short names, and a long one
            // costs the store time for nothing.
            if let Some((name, _)) = self.pairs.iter().find(|(name, _)| name.len() > META_PREFIX.len() + MAX_KEY_BYTES)
            {
                let shown: String = name.chars().take(24).collect();
                return Err(ApiError::bad(
                    format!("{shown}…"),
                    format!(
                        "metadata key is {} bytes, more than the {MAX_KEY_BYTES} allowed",
                        name.len() - META_PREFIX.len()
                    ),
                ));
            }
        }
        for (i, (name, value)) in self.pairs.iter().enumerate() {
            let known = allowed.contains(&name.as_str()) || (metas_allowed && name.starts_with(META_PREFIX));
            if !known {
                if strict {
                    return Err(ApiError::bad(
                        name.clone(),
                        format!("unknown parameter; accepted: {}", allowed.join(", ")),
                    ));
                }
                continue;
            }
            // `name[]` is a list by convention (Loki's `match[]`): it may repeat.
            if !name.ends_with("[]") && self.pairs[..i].iter().any(|(earlier, _)| earlier == name) {
                return Err(ApiError::bad(name.clone(), "given more than once"));
            }
            let max = if name == "cursor" { MAX_CURSOR_BYTES } else { MAX_VALUE_BYTES };
            if value.len() > max {
                return Err(ApiError::bad(name.clone(), format!("longer than {max} bytes")));
            }
        }
        Ok(self)
    }

    /// The value of `name`; an empty value counts as absent, since HTML forms send empty
    /// fields for filters the user left blank.
    pub fn text(&self, name: &str) -> Option<&str> {
        self.pairs
            .iter()
            .find(|(key, _)| key == name)
            .map(|(_, value)| value.as_str())
            .filter(|value| !value.is_empty())
    }

    /// Every non-empty value of a repeatable `name[]` parameter, in request order.
    pub fn list(&self, name: &str) -> Vec<&str> {
        self.pairs.iter().filter(|(key, value)| key == name && !value.is_empty()).map(|(_, v)| v.as_str()).collect()
    }

    /// A required text value.
    pub fn required(&self, name: &str) -> ApiResult<&str> {
        self.text(name).ok_or_else(|| ApiError::bad(name, "required"))
    }

    /// An optional signed 64-bit integer (timestamps in ns).
    pub fn i64(&self, name: &str) -> ApiResult<Option<i64>> {
        self.text(name)
            .map(|raw| raw.parse::<i64>().map_err(|_| ApiError::bad(name, format!("`{raw}` is not an integer"))))
            .transpose()
    }

    /// An optional count in `min..=max`.
    pub fn count(&self, name: &str, min: u64, max: u64) -> ApiResult<Option<u64>> {
        let Some(value) = self.i64(name)? else {
            return Ok(None);
        };
        if value < 0 {
            return Err(ApiError::bad(name, "must not be negative"));
        }
        // Non-negative i64 always fits u64.
        let value = value.unsigned_abs();
        if value < min {
            return Err(ApiError::bad(name, format!("must be at least {min}")));
        }
        if value > max {
            return Err(ApiError::bad(name, format!("must be at most {max}")));
        }
        Ok(Some(value))
    }

    /// `limit`, 1..=`max`, `default` when absent.
    pub fn limit(&self, default: usize, max: usize) -> ApiResult<usize> {
        let max64 = u64::try_from(max).unwrap_or(u64::MAX);
        let limit = self.count("limit", 1, max64)?;
        // The value is at most `max`, which came from a usize.
        Ok(limit.map_or(default, |limit| usize::try_from(limit).unwrap_or(max)))
    }

    /// The opaque `cursor` of a previous page. Only its envelope is checked here; whether
    /// the store made it is the store's call (`StoreError::BadCursor` → 400 too).
    pub fn cursor(&self) -> ApiResult<Option<String>> {
        let Some(cursor) = self.text("cursor") else {
            return Ok(None);
        };
        if cursor.len() > MAX_CURSOR_BYTES {
            return Err(ApiError::bad("cursor", format!("longer than {MAX_CURSOR_BYTES} bytes")));
        }
        if !cursor.chars().all(|c| c.is_ascii_graphic()) {
            return Err(ApiError::bad("cursor", "malformed (cursors are printable ASCII)"));
        }
        Ok(Some(cursor.to_owned()))
    }

    /// `limit` and `cursor` together.
    pub fn page(&self, default: usize, max: usize) -> ApiResult<PageRequest> {
        Ok(PageRequest { limit: self.limit(default, max)?, cursor: self.cursor()? })
    }

    /// Every `meta.KEY=VALUE` pair, in request order, as (KEY, VALUE). Values may be empty
    /// (a metadata value can be the empty string); keys may not.
    pub fn metadata(&self) -> ApiResult<Vec<(String, String)>> {
        let mut pairs = Vec::new();
        for (name, value) in &self.pairs {
            let Some(key) = name.strip_prefix(META_PREFIX) else {
                continue;
            };
            if key.is_empty() {
                return Err(ApiError::bad(name.clone(), "metadata key must not be empty"));
            }
            if key.chars().any(char::is_control) {
                return Err(ApiError::bad(name.clone(), "metadata key contains a control character"));
            }
            pairs.push((key.to_owned(), value.clone()));
        }
        Ok(pairs)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(err: ApiError) -> String {
        err.to_string()
    }

    #[test]
    fn limit_rejects_negative_zero_text_and_oversized_naming_limit() {
        for bad in ["-1", "0", "ten", "10001", "1.5", "99999999999999999999"] {
            let params = QueryParams::from_pairs(&[("limit", bad)]);
            let err = params.limit(100, 10_000).expect_err(bad);
            assert!(message(err).contains("`limit`"), "{bad}");
        }
        assert_eq!(QueryParams::from_pairs(&[("limit", "10000")]).limit(100, 10_000).ok(), Some(10_000));
        assert_eq!(QueryParams::default().limit(100, 10_000).ok(), Some(100));
    }

    #[test]
    fn unknown_and_repeated_parameters_are_named() {
        let err = QueryParams::from_pairs(&[("limt", "5")]).allow(&["limit"]).expect_err("unknown");
        assert!(message(err).contains("`limt`"));
        let err = QueryParams::from_pairs(&[("limit", "5"), ("limit", "6")]).allow(&["limit"]).expect_err("twice");
        assert!(message(err).contains("`limit`"));
        assert!(QueryParams::from_pairs(&[("_", "123")]).allow_extra(&["limit"]).is_ok());
        let list = QueryParams::from_pairs(&[("match[]", "a"), ("match[]", "b")]).allow(&["match[]"]).expect("a list");
        assert_eq!(list.list("match[]"), ["a", "b"]);
    }

    #[test]
    fn metadata_keys_must_be_non_empty() {
        let params = QueryParams::from_pairs(&[("meta.", "x")]).allow(&[META_WILDCARD]).expect("allowed");
        assert!(message(params.metadata().expect_err("empty key")).contains("`meta.`"));
        let params = QueryParams::from_pairs(&[("meta.dm", "56.7"), ("meta.beam", "")]);
        assert_eq!(
            params.metadata().ok(),
            Some(vec![("dm".to_owned(), "56.7".to_owned()), ("beam".to_owned(), String::new())])
        );
    }

    #[test]
    fn metadata_filters_are_bounded_in_number_and_key_length() {
        let long = format!("meta.{}", "k".repeat(MAX_KEY_BYTES + 1));
        let err = message(QueryParams::from_pairs(&[(&long, "x")]).allow(&[META_WILDCARD]).expect_err("long key"));
        assert!(err.contains("1025 bytes, more than the 1024 allowed") && err.len() < 200, "{err}");
        let fine = format!("meta.{}", "k".repeat(MAX_KEY_BYTES));
        assert!(QueryParams::from_pairs(&[(&fine, "x")]).allow(&[META_WILDCARD]).is_ok());
        let names: Vec<String> = (0..=MAX_META_FILTERS).map(|i| format!("meta.k{i}")).collect();
        let pairs: Vec<(&str, &str)> = names.iter().map(|n| (n.as_str(), "v")).collect();
        let err = message(QueryParams::from_pairs(&pairs).allow(&[META_WILDCARD]).expect_err("too many"));
        assert!(err.contains("17 metadata filters, more than the 16 allowed"), "{err}");
        assert!(QueryParams::from_pairs(&pairs[..MAX_META_FILTERS]).allow(&[META_WILDCARD]).is_ok());
    }

    #[test]
    fn cursor_must_be_printable_ascii() {
        assert!(
            message(QueryParams::from_pairs(&[("cursor", "a b")]).cursor().expect_err("space")).contains("`cursor`")
        );
        assert!(QueryParams::from_pairs(&[("cursor", "abc123=")]).cursor().is_ok());
    }

    #[test]
    fn entity_ids_follow_the_ingest_rule() {
        assert!(check_entity_id("a/b \"<script>\" 🚀").is_ok());
        assert!(check_entity_id(&"x".repeat(MAX_ENTITY_ID_BYTES)).is_ok());
        for bad in ["", "a\nb", "a\u{0}b", "a\u{7f}", &"x".repeat(MAX_ENTITY_ID_BYTES + 1)] {
            let shown = &bad[..bad.len().min(8)];
            assert!(message(check_entity_id(bad).expect_err(shown)).contains("`id`"), "{shown}");
        }
        let too_long = message(check_entity_id(&"x".repeat(MAX_ENTITY_ID_BYTES + 1)).expect_err("too long"));
        assert!(too_long.ends_with("more than the 16384 allowed"), "{too_long}");
    }
}
