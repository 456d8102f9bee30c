//! SQLite backend (to be written).
pub struct SqliteStore;
