//! The Entity Inspector: the web UI served by the herald at `/` (assets embedded in the binary).

use axum::Router;

use crate::api::ApiState;

/// The UI's routes; merged with the JSON API on the API listener.
pub fn router() -> Router<ApiState> {
    Router::new()
}
