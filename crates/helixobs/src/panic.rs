//! The message of a panic, for the `helix.error` event of the tracked step it unwinds through.
//! A guard's `Drop` knows only *that* the thread is panicking; a chained panic hook (installed
//! once, calling the previous hook) keeps the message of the thread's latest panic.

use std::cell::RefCell;
use std::sync::Once;

thread_local! {
    static LAST: RefCell<Option<String>> = const { RefCell::new(None) };
}

static INSTALL: Once = Once::new();

pub(crate) fn install_hook() {
    INSTALL.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            let payload = info.payload();
            let message = payload
                .downcast_ref::<&str>()
                .map(|s| (*s).to_owned())
                .or_else(|| payload.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "panic with a non-string payload".to_owned());
            // try_with: the thread may be tearing down its locals.
            let _ = LAST.try_with(|last| *last.borrow_mut() = Some(message));
            previous(info);
        }));
    });
}

/// The `helix.error` attributes of a panic unwinding through a tracked step.
pub(crate) fn error_metadata() -> Vec<(&'static str, String)> {
    let message = LAST.try_with(|last| last.borrow().clone()).ok().flatten().unwrap_or_default();
    vec![("message", "panic".to_owned()), ("exception.message", message)]
}
