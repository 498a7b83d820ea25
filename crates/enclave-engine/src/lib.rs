//! enclave-engine: runs enclaves built by `enclave-ctl build`.
//!
//! Where it runs: on the parent only, in `enclave-ctl` (the lifecycle: create, start, stop,
//! remove) and in each enclave's supervisor (`enclave-engine supervise`, one process per
//! enclave, which owns the backend's processes). Nothing of it is in the enclave.
//!
//! - [`backend`]: how an enclave runs. [`backend::qemu`] emulates Nitro on any Linux host (a
//!   QEMU `microvm` booting the EIF's kernel, cmdline and ramdisks, with a vhost-user vsock
//!   device served by `vhost-device-vsock`); [`backend::nitro`] drives `nitro-cli` on a
//!   Nitro-enabled EC2 instance; [`backend::fake`] records calls for unit tests.
//! - [`state`]: the daemonless state directory (`/run/enclave-engine` as root,
//!   `$XDG_RUNTIME_DIR/enclave-engine` otherwise), one directory and one `state.json` per
//!   enclave, written atomically.
//! - [`supervisor`]: the per-enclave process (`enclave-engine supervise ID`, conmon-style) that
//!   owns the backend's processes, answers the boot heartbeat, collects the console into
//!   size-capped JSON-lines logs and applies the restart policy.
//! - [`lifecycle`]: what the CLI calls: create and start, stop, remove, resolve names.
//! - [`memory`]: memory sizes as users write them (`512m`, `2g`; a bare number is MiB).
//! - [`network`]: published ports and the egress proxy of an enclave (`enclave-proxy`).
//! - [`control`]: how the host drives an enclave's control channel: the supervisor key, the
//!   pinned control identity, the identity document check.
//! - [`config`]: the optional config file of defaults (`/etc/enclave-engine/config.toml`, then
//!   the user's).
#![deny(unsafe_code)]
#![warn(missing_docs)]

pub mod backend;
pub mod config;
pub mod console;
pub mod control;
pub mod daemon;
pub mod eif;
mod error;
pub mod events;
pub mod health;
pub mod images;
pub mod lifecycle;
pub mod local_http;
pub mod logs;
pub mod memory;
pub mod metrics;
pub mod network;
pub mod policy;
mod private_dir;
mod spawn_unsafe;
pub mod state;
pub mod supervisor;
mod tsc_unsafe;
pub mod util;

pub use error::{EngineError, Result};
