//! One module per subcommand.

pub mod build;
pub mod console;
pub mod enclave_inspect;
pub mod inspect;
pub mod logs;
pub mod measure;
pub mod ps;
pub mod rm;
pub mod run;
pub mod stop;
pub mod cp;
pub mod exec;
pub mod services;
pub mod verify;
