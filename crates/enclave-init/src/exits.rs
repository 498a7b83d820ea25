//! Exit statuses of processes started outside the service table (the control server's exec),
//! delivered by the supervisor that reaps them. Below both: the manager owns the watchers, the
//! control server registers with them.
//!
//! PID 1 reaps every child with `waitpid(-1)` in the supervisor; nothing else may wait, or it
//! would steal exits from it. So an exec'd process is spawned by the supervisor's thread
//! ([`ServiceManager::spawn`](crate::ServiceManager::spawn)), through [`ExitWatchers::spawn`],
//! which registers its pid, and the supervisor hands the exit it reaped to the registered
//! channel ([`ExitWatchers::deliver`]). Spawning on the reaping thread matters: when exec fails,
//! std's `spawn` waits for the child itself, which a concurrent `waitpid(-1)` would have
//! reaped already (std then panics).

use std::collections::HashMap;
use std::process::{Child, Command};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender};
use std::sync::Mutex;

use crate::policy::Exit;

/// Pids whose exit someone waits for. See the [module doc](self).
#[derive(Default)]
pub struct ExitWatchers {
    map: Mutex<HashMap<i32, SyncSender<Exit>>>,
}

impl ExitWatchers {
    /// Spawns `cmd` and registers its pid. Never call `wait` on the returned child: its exit
    /// arrives on the receiver.
    pub fn spawn(&self, cmd: &mut Command) -> std::io::Result<(Child, Receiver<Exit>)> {
        let mut map = self.map.lock().unwrap_or_else(|p| p.into_inner());
        let child = cmd.spawn()?;
        let (tx, rx) = sync_channel(1);
        // Linux pids fit an i32.
        map.insert(child.id() as i32, tx);
        Ok((child, rx))
    }

    /// Hands a reaped exit to its watcher; false when nobody registered the pid.
    pub fn deliver(&self, pid: i32, exit: Exit) -> bool {
        let tx = self
            .map
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&pid);
        match tx {
            Some(tx) => {
                // The watcher may be gone (connection closed): the reap was all that mattered.
                let _ = tx.try_send(exit);
                true
            }
            None => false,
        }
    }

    /// Number of processes being watched (for tests and leak checks).
    pub fn len(&self) -> usize {
        self.map.lock().unwrap_or_else(|p| p.into_inner()).len()
    }

    /// Whether no process is watched.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}
