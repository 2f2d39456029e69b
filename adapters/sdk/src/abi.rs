//! The C ABI of dylib plugins: one exported symbol, [`ENTRY_SYMBOL`], returning a pointer to a
//! static [`AdapterTable`]; requests and responses are NUL-terminated UTF-8 JSON texts.
//!
//! The host reads `abi_version` (always the first field, at offset 0) before anything else and
//! refuses a table whose version it does not know. A response is owned by the plugin until the
//! host hands it back to the table's `free`, so each side frees what its own allocator made.
//! Libraries are never unloaded.

use crate::Plugin;
use std::ffi::{CStr, CString, c_char};
use std::panic::{AssertUnwindSafe, catch_unwind};

/// The version of [`AdapterTable`]'s layout. A new field means a new version.
pub const ABI_VERSION: u32 = 1;

/// The name of the exported entry function (without the trailing NUL: `adaptest_adapter`).
pub const ENTRY_SYMBOL: &str = "adaptest_adapter";

/// A request in, a response out: both NUL-terminated UTF-8 JSON. Never returns null from a
/// well-behaved plugin; the response must be released with [`AdapterTable::free`].
pub type CallFn = unsafe extern "C" fn(request: *const c_char) -> *mut c_char;

/// `extern "C" fn adaptest_adapter() -> *const AdapterTable`.
pub type EntryFn = unsafe extern "C" fn() -> *const AdapterTable;

/// What [`ENTRY_SYMBOL`] returns. The functions may be called from several threads at once
/// (calls for one session never overlap).
#[repr(C)]
pub struct AdapterTable {
    /// [`ABI_VERSION`] of the plugin. Offset 0 in every version.
    pub abi_version: u32,
    /// Answers a `describe` request.
    pub describe: CallFn,
    /// Answers an `open` request.
    pub open: CallFn,
    /// Answers an `execute` request.
    pub execute: CallFn,
    /// Answers a `close` request.
    pub close: CallFn,
    /// Releases a response returned by any of the above.
    pub free: unsafe extern "C" fn(response: *mut c_char),
}

/// Serve one C call: read the request, let `plugin` answer it, hand the response out. Panics
/// anywhere (including in the plugin's constructor behind `plugin`) become `internal` errors.
///
/// # Safety
/// `request` must be null or point to a NUL-terminated string valid for the whole call.
pub unsafe fn call(
    plugin: fn() -> &'static Plugin,
    op: &str,
    request: *const c_char,
) -> *mut c_char {
    let answer = catch_unwind(AssertUnwindSafe(|| {
        if request.is_null() {
            return error_text("protocol", "the request pointer is null");
        }
        // SAFETY: non-null, and the caller guarantees a NUL-terminated string alive for the call.
        let bytes = unsafe { CStr::from_ptr(request) }.to_bytes();
        match std::str::from_utf8(bytes) {
            Ok(text) => plugin().handle_as(Some(op), text),
            Err(_) => error_text("protocol", "the request is not UTF-8"),
        }
    }))
    .unwrap_or_else(|p| {
        error_text(
            "internal",
            &format!("the plugin panicked: {}", crate::panic_message(p.as_ref())),
        )
    });
    // JSON text has no raw NUL (it would be escaped as \u0000), so this cannot fail; be safe.
    CString::new(answer)
        .unwrap_or_else(|_| {
            CString::new(error_text("internal", "response contained NUL")).expect("no NUL")
        })
        .into_raw()
}

fn error_text(kind: &str, message: &str) -> String {
    serde_json::json!({ "id": null, "ok": false, "error": { "kind": kind, "message": message } })
        .to_string()
}

/// Release a response made by [`call`].
///
/// # Safety
/// `response` must be null or a pointer returned by [`call`] in this library, not yet freed.
pub unsafe extern "C" fn free_response(response: *mut c_char) {
    if response.is_null() {
        return;
    }
    // SAFETY: made by `CString::into_raw` in `call` of this same library and not freed before.
    let _ = catch_unwind(AssertUnwindSafe(|| {
        drop(unsafe { CString::from_raw(response) })
    }));
}

/// Export a dylib plugin: `export_adapter!(MyAdapter::new());` in a `cdylib` crate defines
/// the C entry [`ENTRY_SYMBOL`]. The expression is evaluated once, on the first call.
#[macro_export]
macro_rules! export_adapter {
    ($make:expr) => {
        #[doc(hidden)]
        fn __adaptest_plugin() -> &'static $crate::Plugin {
            static PLUGIN: ::std::sync::OnceLock<$crate::Plugin> = ::std::sync::OnceLock::new();
            PLUGIN.get_or_init(|| $crate::Plugin::new($make))
        }

        #[doc(hidden)]
        unsafe extern "C" fn __adaptest_describe(
            request: *const ::std::ffi::c_char,
        ) -> *mut ::std::ffi::c_char {
            // SAFETY: the host passes a NUL-terminated request valid for the call (protocol v1).
            unsafe { $crate::abi::call(__adaptest_plugin, "describe", request) }
        }

        #[doc(hidden)]
        unsafe extern "C" fn __adaptest_open(
            request: *const ::std::ffi::c_char,
        ) -> *mut ::std::ffi::c_char {
            // SAFETY: as for describe.
            unsafe { $crate::abi::call(__adaptest_plugin, "open", request) }
        }

        #[doc(hidden)]
        unsafe extern "C" fn __adaptest_execute(
            request: *const ::std::ffi::c_char,
        ) -> *mut ::std::ffi::c_char {
            // SAFETY: as for describe.
            unsafe { $crate::abi::call(__adaptest_plugin, "execute", request) }
        }

        #[doc(hidden)]
        unsafe extern "C" fn __adaptest_close(
            request: *const ::std::ffi::c_char,
        ) -> *mut ::std::ffi::c_char {
            // SAFETY: as for describe.
            unsafe { $crate::abi::call(__adaptest_plugin, "close", request) }
        }

        /// The adaptest adapter entry point (C ABI v1).
        #[unsafe(no_mangle)]
        pub extern "C" fn adaptest_adapter() -> *const $crate::abi::AdapterTable {
            static TABLE: $crate::abi::AdapterTable = $crate::abi::AdapterTable {
                abi_version: $crate::abi::ABI_VERSION,
                describe: __adaptest_describe,
                open: __adaptest_open,
                execute: __adaptest_execute,
                close: __adaptest_close,
                free: $crate::abi::free_response,
            };
            &TABLE
        }
    };
}

#[cfg(test)]
#[expect(
    unreachable_pub,
    reason = "the entry `export_adapter!` defines is `pub` for C callers"
)]
mod tests {
    use super::*;
    use crate::{Adapter, Description, Error, OpenConfig, Session};
    use serde_json::{Map, Value};

    struct Panicky;
    impl Adapter for Panicky {
        fn describe(&self) -> Description {
            Description {
                name: "panicky".into(),
                ..Description::default()
            }
        }
        fn open(&self, _: &OpenConfig) -> Result<Box<dyn Session>, Error> {
            panic!("cannot open today")
        }
    }
    impl Session for Panicky {
        fn execute(&mut self, _: &str, _: &Map<String, Value>) -> Result<Value, Error> {
            Ok(Value::Null)
        }
    }

    crate::export_adapter!(Panicky);

    /// Call a table function like the host does and read the answer back.
    fn through_c(f: CallFn, free: unsafe extern "C" fn(*mut c_char), req: &str) -> Value {
        let req = CString::new(req).unwrap();
        // SAFETY: a valid NUL-terminated request; the response is freed exactly once below.
        let out = unsafe { f(req.as_ptr()) };
        assert!(!out.is_null());
        // SAFETY: `out` is a NUL-terminated string from `call`.
        let text = unsafe { CStr::from_ptr(out) }.to_str().unwrap().to_string();
        // SAFETY: returned by this table and not freed yet.
        unsafe { free(out) };
        serde_json::from_str(&text).unwrap()
    }

    #[test]
    fn the_exported_table_serves_requests_and_contains_panics() {
        // SAFETY: the macro's entry returns a pointer to a static table.
        let table = unsafe { &*adaptest_adapter() };
        assert_eq!(table.abi_version, ABI_VERSION);
        let d = through_c(
            table.describe,
            table.free,
            r#"{"protocol":1,"id":1,"op":"describe"}"#,
        );
        assert_eq!(d["result"]["name"], "panicky");
        let o = through_c(
            table.open,
            table.free,
            r#"{"protocol":1,"id":2,"op":"open","config":{}}"#,
        );
        assert_eq!(o["error"]["kind"], "internal");
        assert!(
            o["error"]["message"]
                .as_str()
                .unwrap()
                .contains("cannot open today")
        );
        let wrong = through_c(
            table.execute,
            table.free,
            r#"{"protocol":1,"op":"describe"}"#,
        );
        assert_eq!(wrong["error"]["kind"], "protocol");
        // SAFETY: null is explicitly allowed.
        let null = unsafe { (table.describe)(std::ptr::null()) };
        // SAFETY: a response of this table.
        let text = unsafe { CStr::from_ptr(null) }
            .to_str()
            .unwrap()
            .to_string();
        // SAFETY: freed once.
        unsafe { (table.free)(null) };
        assert!(text.contains("null"), "{text}");
    }
}
