//! One module per subcommand.

pub mod build;
pub mod inspect;
pub mod measure;
pub mod console;
pub mod enclave_inspect;
pub mod logs;
pub mod ps;
pub mod rm;
pub mod run;
pub mod stop;
