//! Keeps a [`FileStore`] current with a debounced filesystem watcher, and publishes every
//! change to NATS when a publisher is given: a file's record, or a removed file's signed
//! tombstone, each with its generation.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use notify::event::{AccessKind, AccessMode};
use notify::{EventKind, RecommendedWatcher, RecursiveMode};
use notify_debouncer_full::{new_debouncer_opt, DebounceEventResult, Debouncer, RecommendedCache};

use super::{Change, FileError, FileStore, NatsError, NatsPublisher};

/// Quiet time after the last event on a path before it is handled: one write is often
/// several events (truncate, writes, close), and hashing once after them is enough.
const DEBOUNCE: Duration = Duration::from_millis(200);
/// How often the worker wakes without events (to notice `stop`, and to retry publications).
const TICK: Duration = Duration::from_millis(250);
/// Most paths waiting for publication while NATS is unreachable; beyond it changes to new
/// paths are not queued (logged), so an outage cannot grow memory without bound.
const MAX_PENDING: usize = 200_000;

/// A running monitor. Dropping it stops it too; [`FileMonitor::stop`] also waits for its
/// threads.
pub struct FileMonitor {
    debouncer: Option<Debouncer<RecommendedWatcher, RecommendedCache>>,
    threads: Vec<JoinHandle<()>>,
    stop: Arc<AtomicBool>,
}

impl std::fmt::Debug for FileMonitor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FileMonitor")
            .field("running", &!self.threads.is_empty())
            .finish()
    }
}

impl FileMonitor {
    /// Watches every root of `store` recursively (symbolic links not followed). The worker
    /// first rescans (catching changes made since the store's initial scan), then, with a
    /// publisher, publishes every entry, then applies and publishes changes as they come (a
    /// removed file as a signed tombstone).
    /// A failed publication is logged and retried; it never stops the monitor.
    pub fn start(
        store: Arc<FileStore>,
        publisher: Option<NatsPublisher>,
    ) -> Result<FileMonitor, FileError> {
        let watch_err = |e: notify::Error| FileError::Watch(e.to_string());
        let (tx, rx) = mpsc::channel::<DebounceEventResult>();
        // Following links would watch (and report) directories outside the roots.
        let config = notify::Config::default().with_follow_symlinks(false);
        let mut debouncer = new_debouncer_opt::<_, RecommendedWatcher, RecommendedCache>(
            DEBOUNCE,
            None,
            tx,
            RecommendedCache::new(),
            config,
        )
        .map_err(watch_err)?;
        for root in store.real_roots() {
            debouncer
                .watch(&root, RecursiveMode::Recursive)
                .map_err(watch_err)?;
        }
        let stop = Arc::new(AtomicBool::new(false));
        let spawn = |name: &str, f: Box<dyn FnOnce() + Send>| {
            std::thread::Builder::new()
                .name(name.into())
                .spawn(f)
                .map_err(|e| FileError::Watch(format!("starting the {name} thread: {e}")))
        };
        // Publishing runs on its own thread so an unreachable NATS (connect and reply
        // timeouts) never delays the store, which is what the server answers from.
        let (publish_tx, publisher) = match publisher {
            Some(publisher) => {
                let (tx, rx) = mpsc::channel();
                let pending = store
                    .paths()
                    .into_iter()
                    .filter_map(|path| Some((path.clone(), Change::Put(store.get(&path)?))))
                    .collect();
                let mut thread = Publishing {
                    store: store.clone(),
                    publisher,
                    pending,
                    stop: stop.clone(),
                };
                (
                    Some(tx),
                    Some(spawn("file-publish", Box::new(move || thread.run(rx)))?),
                )
            }
            None => (None, None),
        };
        let worker = Worker {
            store,
            publish: publish_tx,
            stop: stop.clone(),
        };
        let worker = spawn("file-monitor", Box::new(move || worker.run(rx)))?;
        Ok(FileMonitor {
            debouncer: Some(debouncer),
            threads: [Some(worker), publisher].into_iter().flatten().collect(),
            stop,
        })
    }

    /// Stops watching and waits for the monitor's threads (a publication in progress
    /// finishes or times out first: a few seconds at most).
    pub fn stop(mut self) {
        self.shutdown();
    }

    fn shutdown(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(debouncer) = self.debouncer.take() {
            debouncer.stop();
        }
        // The worker ends when the debouncer's sender is gone, then the publishing thread
        // when the worker's sender is gone (or at `stop`, between publications).
        for thread in self.threads.drain(..) {
            if thread.join().is_err() {
                tracing::error!("file monitor thread panicked");
            }
        }
    }
}

impl Drop for FileMonitor {
    fn drop(&mut self) {
        self.shutdown();
    }
}

/// Applies watcher events to the store and hands the changes to the publishing thread.
struct Worker {
    store: Arc<FileStore>,
    publish: Option<Sender<Change>>,
    stop: Arc<AtomicBool>,
}

impl Worker {
    fn run(self, rx: Receiver<DebounceEventResult>) {
        self.rescan("start");
        while !self.stop.load(Ordering::Relaxed) {
            match rx.recv_timeout(TICK) {
                Ok(Ok(events)) => self.handle(events),
                Ok(Err(errors)) => {
                    for error in errors {
                        tracing::warn!(%error, "file monitor: watcher error");
                    }
                }
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => break,
            }
        }
    }

    fn handle(&self, events: Vec<notify_debouncer_full::DebouncedEvent>) {
        let mut paths: BTreeSet<PathBuf> = BTreeSet::new();
        for event in events {
            if event.need_rescan() {
                // The kernel queue overflowed: events were lost, only a full walk is sound.
                self.rescan("events lost");
                return;
            }
            match event.kind {
                EventKind::Access(AccessKind::Close(AccessMode::Write)) => {}
                EventKind::Access(_) => continue,
                _ => {}
            }
            paths.extend(event.event.paths);
        }
        for path in paths {
            match self.store.update(&path) {
                Ok(changes) => self.apply(changes),
                Err(FileError::Ignored { .. } | FileError::OutsideRoots { .. }) => {}
                Err(error) => {
                    tracing::warn!(path = %path.display(), %error, "file monitor: not updated")
                }
            }
        }
    }

    fn rescan(&self, why: &str) {
        match self.store.rescan() {
            Ok(changes) => self.apply(changes),
            Err(error) => tracing::error!(why, %error, "file monitor: rescan failed"),
        }
    }

    fn apply(&self, changes: Vec<Change>) {
        for change in changes {
            let removed = matches!(change, Change::Removed(_));
            tracing::debug!(
                path = change.path(),
                generation = change.generation(),
                removed,
                "file attestation: updated"
            );
            if let Some(tx) = &self.publish {
                // Only fails once the publishing thread is gone, i.e. while stopping.
                let _ = tx.send(change);
            }
        }
    }
}

/// Publishes the latest change of each changed path, retrying until NATS takes it.
struct Publishing {
    store: Arc<FileStore>,
    publisher: NatsPublisher,
    /// The latest change of each path whose current state is not yet in the bucket (a later
    /// change replaces an earlier one: only the newest generation matters to readers).
    pending: BTreeMap<String, Change>,
    stop: Arc<AtomicBool>,
}

impl Publishing {
    fn run(&mut self, rx: Receiver<Change>) {
        while !self.stop.load(Ordering::Relaxed) {
            self.flush();
            let first = match rx.recv_timeout(TICK) {
                Ok(change) => change,
                Err(RecvTimeoutError::Timeout) => continue,
                Err(RecvTimeoutError::Disconnected) => return,
            };
            self.queue(first);
            while let Ok(change) = rx.try_recv() {
                self.queue(change);
            }
        }
    }

    fn queue(&mut self, change: Change) {
        let path = change.path();
        if self.pending.len() >= MAX_PENDING && !self.pending.contains_key(path) {
            tracing::warn!(
                path,
                "file monitor: too many unpublished changes; not queued"
            );
            return;
        }
        self.pending.insert(path.to_string(), change);
    }

    /// Publishes pending paths in order until one fails (the rest wait for the next round,
    /// and the publisher's backoff spaces out reconnection attempts).
    fn flush(&mut self) {
        let key = self.store.vrf_public_key();
        let epoch = self.store.epoch();
        while let Some(entry) = self.pending.first_entry() {
            if self.stop.load(Ordering::Relaxed) {
                return;
            }
            let change = entry.get();
            let published = self.publisher.publish(change, epoch, &key);
            let (path, generation) = (change.path(), change.generation());
            match published {
                Ok(seq) => {
                    tracing::debug!(path, seq, generation, "published to NATS");
                    entry.remove();
                }
                Err(error @ (NatsError::BadKey(_) | NatsError::TooLarge { .. })) => {
                    tracing::warn!(path, %error, "file monitor: cannot publish this path");
                    entry.remove();
                }
                Err(NatsError::Backoff(_)) => return,
                Err(error) => {
                    tracing::warn!(path, %error, "file monitor: publication failed; will retry");
                    return;
                }
            }
        }
    }
}
