//! Runs the analysis on one long-lived thread with the stack it needs for deeply nested
//! statements (`ddlgate::internals::analysis::STACK_SIZE`): libFuzzer's main thread has 8 MiB, and a new
//! thread per input would exhaust the pthread keys libpg_query takes per thread.

use std::sync::mpsc::{Receiver, SyncSender, sync_channel};
use std::sync::{Mutex, OnceLock};

type Job = (Vec<u8>, fn(&[u8]));

struct Worker {
    jobs: SyncSender<Job>,
    done: Receiver<()>,
}

fn worker() -> &'static Mutex<Worker> {
    static WORKER: OnceLock<Mutex<Worker>> = OnceLock::new();
    WORKER.get_or_init(|| {
        let (jobs, incoming) = sync_channel::<Job>(0);
        let (finished, done) = sync_channel(0);
        std::thread::Builder::new()
            .name("analysis".into())
            .stack_size(ddlgate::internals::analysis::STACK_SIZE)
            .spawn(move || {
                for (data, f) in incoming {
                    f(&data);
                    if finished.send(()).is_err() {
                        return;
                    }
                }
            })
            .expect("analysis thread");
        Mutex::new(Worker { jobs, done })
    })
}

/// Runs `f(data)` on the analysis thread and waits for it. A panic there aborts the process
/// (libfuzzer-sys's panic hook), which libFuzzer reports as a crash of this input.
pub fn run(data: &[u8], f: fn(&[u8])) {
    let worker = worker().lock().expect("worker lock");
    worker
        .jobs
        .send((data.to_vec(), f))
        .expect("analysis thread alive");
    worker.done.recv().expect("analysis thread alive");
}
