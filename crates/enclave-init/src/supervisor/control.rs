//! Requests from the [`ServiceManager`](crate::ServiceManager).

use std::time::Instant;

use super::{Pending, Phase, Supervisor};
use crate::manager::{ManagerError, Request};
use crate::say;

impl Supervisor {
    pub(super) fn handle_request(&mut self, req: Request, now: Instant) {
        match req {
            Request::List(reply) => {
                let _ = reply.send(self.services.iter().map(|s| s.status()).collect());
            }
            Request::Start(name, reply) => {
                let _ = reply.send(self.request_start(&name));
            }
            Request::Stop(name, reply) => {
                let _ = reply.send(self.request_stop(&name, now));
            }
            Request::Restart(name, reply) => {
                let _ = reply.send(self.request_restart(&name, now));
            }
            Request::Shutdown(reason) => self.begin_shutdown(reason, now),
            Request::Spawn(mut cmd, reply) => {
                let spawned = self.manager.exits().spawn(&mut cmd);
                // Dropping the command closes what it holds for the child (a pty's slave).
                drop(cmd);
                let _ = reply.send(spawned);
            }
        }
    }

    fn find(&self, name: &str) -> Result<usize, ManagerError> {
        if self.shutdown.is_some() {
            return Err(ManagerError::ShuttingDown);
        }
        self.index(name)
            .ok_or_else(|| ManagerError::UnknownService(name.to_owned()))
    }

    fn request_start(&mut self, name: &str) -> Result<(), ManagerError> {
        let i = self.find(name)?;
        let svc = &mut self.services[i];
        match svc.phase {
            Phase::Running(_) | Phase::Waiting => {
                return Err(ManagerError::AlreadyRunning(name.to_owned()))
            }
            Phase::Backoff(_) | Phase::Exited | Phase::Failed | Phase::Stopped => {
                svc.restarts = 0;
                svc.phase = Phase::Waiting;
            }
        }
        say!("start of {name} requested");
        Ok(())
    }

    fn request_stop(&mut self, name: &str, now: Instant) -> Result<(), ManagerError> {
        let i = self.find(name)?;
        say!("stop of {name} requested");
        if self.terminate(i, now) {
            self.services[i].pending = Pending::Stop;
        } else if matches!(self.services[i].phase, Phase::Waiting | Phase::Backoff(_)) {
            self.services[i].phase = Phase::Stopped;
        }
        Ok(())
    }

    fn request_restart(&mut self, name: &str, now: Instant) -> Result<(), ManagerError> {
        let i = self.find(name)?;
        say!("restart of {name} requested");
        if self.terminate(i, now) {
            self.services[i].pending = Pending::Restart;
        } else {
            self.services[i].restarts = 0;
            self.services[i].phase = Phase::Waiting;
        }
        Ok(())
    }
}
