//! `enclave-ctl console`: the raw console of a debug-mode enclave, followed until it ends.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom, Write};
use std::time::Duration;

use anyhow::Result;
use enclave_engine::console::CONSOLE_FILE;
use enclave_engine::EngineError;

use crate::cli::{ConsoleArgs, EXIT_OK};

/// Runs the command; returns the exit status.
pub fn run(args: ConsoleArgs) -> Result<i32> {
    let root = super::state_dir::open(&args.state)?;
    let rec = root.resolve(&args.enclave)?;
    if !rec.debug_mode {
        return Err(EngineError::NotDebug(rec.name).into());
    }
    let path = root.dir(&rec.id).join(CONSOLE_FILE);
    let mut pos = 0u64;
    let mut out = std::io::stdout();
    loop {
        let alive = root.supervisor_alive(&rec.id);
        if let Ok(mut f) = File::open(&path) {
            let len = f.metadata().map(|m| m.len()).unwrap_or(0);
            if len < pos {
                pos = 0; // rotated
            }
            let mut buf = Vec::new();
            if f.seek(SeekFrom::Start(pos)).is_ok() && f.read_to_end(&mut buf).is_ok() {
                pos += buf.len() as u64;
                out.write_all(&buf)?;
                out.flush()?;
            }
        }
        if args.no_follow || !alive {
            return Ok(EXIT_OK);
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}
