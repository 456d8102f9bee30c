//! Why a store call failed, with the database's own cause kept typed (backend, SQLite result
//! code or PostgreSQL SQLSTATE, and the store call it happened in), so callers decide on the
//! variant and the code, never on message text.

/// What the database (or the way to it) said.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DbCause {
    /// A SQLite failure: its extended result code (`SQLITE_BUSY` = 5, …) and message.
    Sqlite { code: i32, message: String },
    /// A PostgreSQL failure: the SQLSTATE when the server sent one, and the message.
    Postgres { sqlstate: Option<String>, message: String },
    /// The database could not be reached or used at all (connection, pool, file system, task).
    Io(String),
    /// A stored value that cannot be decoded: a corrupt row.
    Corrupt(String),
    /// A read ran past its time budget (`--query-timeout`; on PostgreSQL also the sessions'
    /// `statement_timeout`) and was stopped. The budget, when the store knows it.
    QueryTimeout(Option<std::time::Duration>),
    /// Described in words: by a caller outside the backends (test doubles), or a failure of
    /// ours that is not the database's (a task that died, an encoding bug).
    Other(String),
}

impl std::fmt::Display for DbCause {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DbCause::Sqlite { code, message } => write!(f, "sqlite: {message} (code {code})"),
            DbCause::Postgres { sqlstate: Some(s), message } => write!(f, "postgres: {message} ({s})"),
            DbCause::Postgres { sqlstate: None, message } => write!(f, "postgres: {message}"),
            DbCause::Io(m) | DbCause::Other(m) => f.write_str(m),
            DbCause::Corrupt(m) => write!(f, "corrupt data in the database: {m}"),
            DbCause::QueryTimeout(Some(budget)) => {
                write!(f, "the query ran longer than its {budget:?} budget (--query-timeout) and was stopped")
            }
            DbCause::QueryTimeout(None) => {
                f.write_str("the query ran longer than its budget (--query-timeout) and was stopped")
            }
        }
    }
}

/// The store call a failure happened in (`write`, `entity`, `migrate`, …); empty when the
/// failure was made outside one.
fn during(op: &str) -> String {
    if op.is_empty() {
        String::new()
    } else {
        format!(" during {op}")
    }
}

/// Why a store call failed. The variant decides what a client is told: `Unavailable` is
/// transient (retry later), `BadCursor` is the caller's fault, the rest are ours.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StoreError {
    /// The database cannot take the call right now (locked, down, disk full); retrying may work.
    #[error("store unavailable{}: {cause}", during(.op))]
    Unavailable { op: &'static str, cause: DbCause },
    /// The cursor given by the caller was not produced by this store.
    #[error("malformed cursor: {0}")]
    BadCursor(String),
    /// The schema in the database is newer than this binary understands, or a migration
    /// failed; the message tells the operator what to do.
    #[error("schema problem: {0}")]
    Schema(String),
    /// The store's configuration cannot work (a malformed URL, schema name); the message says
    /// what to fix.
    #[error("store configuration: {0}")]
    Config(String),
    /// A batch that refuses conflicts names an entity owned by another instrument; nothing of
    /// it was written.
    #[error("entity {:?} belongs to instrument {:?}, not to {:?}", .0.entity_id, .0.owner, .0.instrument)]
    InstrumentConflict(crate::InstrumentConflict),
    /// Anything else: a bug or corrupt data; logged with its cause, answered generically.
    #[error("store error{}: {cause}", during(.op))]
    Internal { op: &'static str, cause: DbCause },
}

impl StoreError {
    /// A transient failure described in words (test doubles and callers outside the backends).
    pub fn unavailable(why: impl Into<String>) -> Self {
        StoreError::Unavailable { op: "", cause: DbCause::Other(why.into()) }
    }

    /// A non-transient failure described in words (test doubles and callers outside the backends).
    pub fn internal(why: impl Into<String>) -> Self {
        StoreError::Internal { op: "", cause: DbCause::Other(why.into()) }
    }

    /// A read stopped at its time budget: transient (the same query may fit when the database
    /// is less busy), but the caller is best told to narrow it.
    pub fn query_timeout(budget: Option<std::time::Duration>) -> Self {
        StoreError::Unavailable { op: "", cause: DbCause::QueryTimeout(budget) }
    }

    /// Whether this is a read stopped at its time budget.
    pub fn is_query_timeout(&self) -> bool {
        matches!(self, StoreError::Unavailable { cause: DbCause::QueryTimeout(_), .. })
    }

    /// The database or its path is unreachable: transient.
    pub(crate) fn io(why: impl Into<String>) -> Self {
        StoreError::Unavailable { op: "", cause: DbCause::Io(why.into()) }
    }

    /// A stored value cannot be decoded.
    pub(crate) fn corrupt(what: impl Into<String>) -> Self {
        StoreError::Internal { op: "", cause: DbCause::Corrupt(what.into()) }
    }

    /// A failure of ours that is not the database's (a task that died, an encoding bug).
    pub(crate) fn bug(what: impl Into<String>) -> Self {
        StoreError::Internal { op: "", cause: DbCause::Other(what.into()) }
    }

    /// Name the store call the failure happened in, unless an inner call already did.
    pub(crate) fn during(mut self, call: &'static str) -> Self {
        if let StoreError::Unavailable { op, .. } | StoreError::Internal { op, .. } = &mut self {
            if op.is_empty() {
                *op = call;
            }
        }
        self
    }

    /// Whether a client should retry the request that hit this error.
    pub fn is_transient(&self) -> bool {
        matches!(self, StoreError::Unavailable { .. })
    }

    /// The database's cause, for logs and metrics labels.
    pub fn cause(&self) -> Option<&DbCause> {
        match self {
            StoreError::Unavailable { cause, .. } | StoreError::Internal { cause, .. } => Some(cause),
            _ => None,
        }
    }
}

pub type StoreResult<T> = Result<T, StoreError>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_name_the_call_and_the_database_code() {
        let e = StoreError::Unavailable {
            op: "",
            cause: DbCause::Sqlite { code: 5, message: "database is locked".into() },
        }
        .during("write")
        .during("outer");
        assert_eq!(e.to_string(), "store unavailable during write: sqlite: database is locked (code 5)");
        assert!(e.is_transient());
        let e = StoreError::Internal {
            op: "entity",
            cause: DbCause::Postgres { sqlstate: Some("42P01".into()), message: "no table".into() },
        };
        assert_eq!(e.to_string(), "store error during entity: postgres: no table (42P01)");
        assert!(!e.is_transient());
        assert_eq!(
            StoreError::corrupt("status \"x\"").to_string(),
            "store error: corrupt data in the database: status \"x\""
        );
    }
}
