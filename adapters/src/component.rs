//! Component kinds: the product under test and what it can do.

/// What a component offers to suites (`requires = { capabilities = [...] }`).
pub const KNOWN_CAPABILITIES: &[&str] = &["shell", "sql", "kv", "pubsub", "queue", "http", "cli"];

/// A component kind this build knows, with the capabilities it offers.
#[derive(Debug, Clone, Copy)]
pub struct ComponentKind {
    pub name: &'static str,
    pub capabilities: &'static [&'static str],
}

/// Component kinds built into this build. `os` is always present: the target's operating system,
/// reached through the target's shell.
pub const COMPONENT_KINDS: &[ComponentKind] = &[ComponentKind {
    name: "os",
    capabilities: &["shell"],
}];

pub fn component_kind(name: &str) -> Option<&'static ComponentKind> {
    COMPONENT_KINDS.iter().find(|k| k.name == name)
}
