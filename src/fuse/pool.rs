//! The worker pool that answers I/O requests off the FUSE session thread.

use crate::fs::Fs;
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

pub(super) type Job = Box<dyn FnOnce(&Fs) + Send>;

/// A fixed pool of threads running jobs against the filesystem.
pub(super) struct Pool {
    tx: Option<mpsc::Sender<Job>>,
    threads: Vec<JoinHandle<()>>,
}

impl Pool {
    pub(super) fn new(fs: &Arc<Fs>, n: usize) -> Pool {
        let (tx, rx) = mpsc::channel::<Job>();
        let rx = Arc::new(Mutex::new(rx));
        let threads = (0..n.max(1))
            .map(|i| {
                let rx = Arc::clone(&rx);
                let fs = Arc::clone(fs);
                std::thread::Builder::new()
                    .name(format!("fuse-worker-{i}"))
                    .spawn(move || loop {
                        let job = match rx.lock() {
                            Ok(rx) => rx.recv(),
                            Err(_) => return,
                        };
                        match job {
                            Ok(job) => job(&fs),
                            Err(_) => return,
                        }
                    })
                    .expect("spawn worker thread")
            })
            .collect();
        Pool {
            tx: Some(tx),
            threads,
        }
    }

    pub(super) fn submit(&self, job: Job, fs: &Fs) {
        match &self.tx {
            Some(tx) => {
                if let Err(mpsc::SendError(job)) = tx.send(job) {
                    job(fs)
                }
            }
            None => job(fs),
        }
    }

    /// Runs every queued job, then stops the threads.
    pub(super) fn drain(&mut self) {
        self.tx = None;
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}
