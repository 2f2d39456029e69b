//! Target adapters (where commands run) and component adapters (the product under test).
//!
//! Architecture invariant: this is the only crate that spawns target processes or opens sockets
//! to components. The harness sees targets only through [`Target`].

pub mod component;
pub mod env_probe;
pub mod target;

pub use target::{ExecOutput, ExecRequest, Target, TargetError};
