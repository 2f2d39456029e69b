//! The catalog of operations the built-in adapters offer, by namespace (`kv.set` is operation
//! `set` of namespace `kv`), so that a suite naming one that does not exist (`kv.frobnicate`)
//! is refused when it is validated instead of failing the product at run time.
//!
//! A namespace not in the catalog belongs to a vendor's plugin (`memcached.stats`,
//! `fault.echo`): only the plugin knows its operations, so those are not checked here.

/// Every operation of the built-in namespaces. Keep in step with the adapters' `execute`.
pub const OPERATIONS: &[&str] = &[
    // redis (and kv plugins)
    "kv.set",
    "kv.get",
    "kv.del",
    "kv.exists",
    "kv.expire",
    "kv.ttl",
    "kv.incr",
    "kv.ping",
    // SQL drivers and clients
    "sql.query",
    "sql.exec",
    "sql.begin",
    "sql.commit",
    "sql.rollback",
    "sql.info",
    // MQTT and NATS
    "pubsub.subscribe",
    "pubsub.unsubscribe",
    "pubsub.publish",
    "pubsub.expect",
    // AMQP
    "queue.declare",
    "queue.publish",
    "queue.consume",
    "queue.purge",
    "queue.delete",
    // HTTP
    "http.request",
    // NATS request/reply and JetStream
    "rpc.serve",
    "rpc.request",
    "stream.create",
    "stream.publish",
    "stream.get",
    "stream.delete",
];

/// Is `op` in a built-in namespace but not one of its operations? (`None`: it is known, or its
/// namespace is a plugin's.) `Some` carries the namespace's operations, for the message.
pub fn unknown_builtin(op: &str) -> Option<Vec<&'static str>> {
    let (ns, _) = op.split_once('.')?;
    let of_ns: Vec<&'static str> = OPERATIONS
        .iter()
        .copied()
        .filter(|o| o.split_once('.').is_some_and(|(n, _)| n == ns))
        .collect();
    (!of_ns.is_empty() && !of_ns.contains(&op)).then_some(of_ns)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_operations_of_builtin_namespaces_only() {
        assert_eq!(unknown_builtin("kv.set"), None);
        assert!(
            unknown_builtin("kv.frobnicate")
                .is_some_and(|ops| ops.contains(&"kv.get") && !ops.contains(&"sql.query"))
        );
        assert_eq!(unknown_builtin("fault.echo"), None, "a plugin's namespace");
        assert_eq!(unknown_builtin("sleep"), None);
    }
}
