//! One module per subcommand.

pub mod attest;
pub mod build;
pub mod console;
pub mod cp;
pub mod docs;
pub mod enclave_inspect;
pub mod events;
pub mod exec;
pub mod health;
pub mod inspect;
pub mod kube;
pub mod logs;
pub mod measure;
pub mod node;
pub mod package;
pub mod ps;
pub mod rm;
pub mod run;
pub mod run_remote;
pub mod selftest;
pub mod services;
pub mod sign;
pub mod state_dir;
pub mod stop;
pub mod verify;
