//! The dylib hosting: a shared library loaded with libloading, exporting `adaptest_adapter`
//! (C ABI v1, [`adaptest_plugin_sdk::abi`]). Libraries are never unloaded: a plugin's threads
//! and statics may outlive any one component, and unloading code that still runs is undefined.
//!
//! Calls run on tokio's blocking pool. A panic inside the plugin comes back as an `internal`
//! error (the SDK's `catch_unwind`); a call that does not return within the timeout is
//! abandoned (its thread cannot be stopped) and the session reports the connection lost. A
//! plugin that crashes the process takes the harness with it: that is what `exec:` is for.

use super::{Channel, Host, blocking, unwrap_response};
use adaptest_plugin_sdk::ErrorKind;
use adaptest_plugin_sdk::abi::{ABI_VERSION, AdapterTable, CallFn, ENTRY_SYMBOL, EntryFn};
use serde_json::{Value, json};
use std::collections::HashMap;
use std::ffi::{CStr, CString};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

/// A loaded plugin library: its table, valid for the rest of the process.
#[derive(Clone)]
pub struct Library {
    path: PathBuf,
    table: &'static AdapterTable,
}

/// Libraries loaded so far, by canonical path: each is loaded once and kept.
fn loaded() -> &'static Mutex<HashMap<PathBuf, &'static AdapterTable>> {
    static LOADED: OnceLock<Mutex<HashMap<PathBuf, &'static AdapterTable>>> = OnceLock::new();
    LOADED.get_or_init(Default::default)
}

impl Library {
    /// Load the library at `path` (once per process) and check its ABI version.
    pub fn load(path: &Path) -> Result<Library, String> {
        let canonical = std::fs::canonicalize(path)
            .map_err(|e| format!("cannot open plugin library {}: {e}", path.display()))?;
        let mut cache = loaded().lock().unwrap_or_else(|p| p.into_inner());
        if let Some(table) = cache.get(&canonical) {
            return Ok(Library {
                path: canonical,
                table,
            });
        }
        let table = blocking(|| open_table(&canonical))?;
        cache.insert(canonical.clone(), table);
        Ok(Library {
            path: canonical,
            table,
        })
    }

    /// `describe`, synchronously (when the component is created).
    pub(crate) fn describe_blocking(&self) -> Result<Value, (ErrorKind, String)> {
        let req =
            json!({ "protocol": adaptest_plugin_sdk::PROTOCOL_VERSION, "id": 0, "op": "describe" });
        let text = blocking(|| call_table(self.table, "describe", &req.to_string()))?;
        unwrap_response(&text)
    }
}

fn open_table(path: &Path) -> Result<&'static AdapterTable, String> {
    let shown = path.display();
    // SAFETY: loading runs the library's initialisers. The library is code the plan names
    // explicitly as this component's adapter, trusted like the harness's own adapters.
    let lib = unsafe { libloading::Library::new(path) }
        .map_err(|e| format!("cannot load plugin library {shown}: {e}"))?;
    // Never unloaded (see the module documentation): the table and its functions stay valid.
    let lib: &'static libloading::Library = Box::leak(Box::new(lib));
    // SAFETY: ABI v1 fixes the entry's type as `extern "C" fn() -> *const AdapterTable`.
    let entry: libloading::Symbol<'static, EntryFn> = unsafe { lib.get(ENTRY_SYMBOL.as_bytes()) }
        .map_err(|e| {
        format!("{shown} is not an adaptest plugin: it exports no `{ENTRY_SYMBOL}` ({e})")
    })?;
    // SAFETY: the entry takes no arguments and returns a pointer to static data.
    let ptr = unsafe { entry() };
    if ptr.is_null() {
        return Err(format!(
            "{shown}: `{ENTRY_SYMBOL}` returned no adapter table (null)"
        ));
    }
    // SAFETY: non-null and aligned for the table; only the first field is read, which every
    // ABI version places at offset 0 as a u32.
    let abi = unsafe { ptr.cast::<u32>().read() };
    if abi != ABI_VERSION {
        return Err(format!(
            "plugin library {shown} has C ABI version {abi}; this adaptest supports ABI version {ABI_VERSION}"
        ));
    }
    // SAFETY: the version says the layout is `AdapterTable` v1; it is static data of a library
    // that is never unloaded.
    Ok(unsafe { &*ptr })
}

/// One call through the table: request in, response text out, response released.
fn call_table(
    table: &AdapterTable,
    op: &str,
    request: &str,
) -> Result<String, (ErrorKind, String)> {
    let f: CallFn = match op {
        "describe" => table.describe,
        "open" => table.open,
        "execute" => table.execute,
        "close" => table.close,
        other => return Err((ErrorKind::Protocol, format!("no table entry for `{other}`"))),
    };
    let req = CString::new(request)
        .map_err(|_| (ErrorKind::Protocol, "the request contains NUL".to_string()))?;
    // SAFETY: ABI v1: the request is NUL-terminated UTF-8 and outlives the call.
    let out = unsafe { f(req.as_ptr()) };
    if out.is_null() {
        return Err((
            ErrorKind::Protocol,
            format!("the plugin's `{op}` returned no response (null)"),
        ));
    }
    // SAFETY: non-null responses are NUL-terminated strings owned by the plugin until `free`.
    let text = unsafe { CStr::from_ptr(out) }.to_str().map(str::to_owned);
    // SAFETY: returned by this table's function just now and released exactly once.
    unsafe { (table.free)(out) };
    text.map_err(|_| {
        (
            ErrorKind::Protocol,
            format!("the plugin's `{op}` response is not UTF-8"),
        )
    })
}

#[async_trait::async_trait]
impl Host for Library {
    async fn channel(&self, _timeout: Duration) -> Result<Arc<dyn Channel>, String> {
        Ok(Arc::new(self.clone()))
    }
}

#[async_trait::async_trait]
impl Channel for Library {
    async fn call(
        &self,
        mut request: Value,
        timeout: Duration,
    ) -> Result<Value, (ErrorKind, String)> {
        request["protocol"] = json!(adaptest_plugin_sdk::PROTOCOL_VERSION);
        request["id"] = json!(0);
        let op = request["op"].as_str().unwrap_or_default().to_string();
        let table = self.table;
        let text = request.to_string();
        let op2 = op.clone();
        let job = tokio::task::spawn_blocking(move || call_table(table, &op2, &text));
        match tokio::time::timeout(timeout, job).await {
            Ok(Ok(r)) => unwrap_response(&r?),
            Ok(Err(join)) => Err((
                ErrorKind::Internal,
                format!("the call thread failed: {join}"),
            )),
            Err(_) => Err((
                ErrorKind::Lost,
                format!(
                    "plugin library {} did not return from `{op}` within {timeout:?}; the call is abandoned (a dylib plugin cannot be stopped: host it with exec: to contain hangs)",
                    self.path.display()
                ),
            )),
        }
    }
}
