//! Target adapters (where commands run) and component adapters (the product under test).
//!
//! Architecture invariant: this is the only crate that spawns target processes or opens sockets
//! to components. The harness sees targets only through [`Target`].

pub mod component;
pub mod duration;
pub mod env_probe;
pub mod exit_status;
mod file_lock;
pub mod hardware;
pub mod image;
pub mod plugin;
pub mod target;
pub mod text;

pub use target::{ExecOutput, ExecRequest, Target, TargetError};
