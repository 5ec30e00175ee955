//! The engine thread: one model and one continuously batched engine for every request.
//! HTTP handlers send jobs over a channel and read replies from their own channel; a
//! reply channel whose receiver is gone (the client disconnected) cancels the request
//! at once, freeing its KV caches. A request past its deadline is cancelled with 504.

use std::collections::HashMap;
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::Value;
use tokio::sync::mpsc::UnboundedSender;
use uniaudio::generate_json::output_json;
use uniaudio_lm::{Engine, EngineEvent, EngineOptions, Frame, GenerateOptions, OutputKind, RequestId, UniAudioLm};
use uniaudio_runtime::Backend;

use crate::metrics::Shared;
use crate::ApiError;

/// What a handler hears back.
#[derive(Debug)]
pub enum Reply {
    Frame([u32; 8]),
    Text(u32),
    Done(Result<Value, ApiError>),
}

pub type Sink = UnboundedSender<Reply>;

/// Faults a test can inject through `ServeOptions::fault_injection`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fault {
    /// The request's processing fails with an error.
    Error,
    /// The request's processing panics.
    Panic,
}

pub enum Job {
    Generate { frames: Vec<Frame>, opts: GenerateOptions, sink: Sink, deadline: Option<Instant>, fault: Option<Fault> },
}

struct Live {
    sink: Sink,
    kind: OutputKind,
    deadline: Option<Instant>,
}

/// Loads the LM and serves jobs until every sender is gone and the engine is drained.
pub fn run<B: Backend>(b: B, lm_dir: std::path::PathBuf, engine_opts: EngineOptions, jobs: Receiver<Job>, shared: Arc<Shared>) {
    let lm = match UniAudioLm::load(&b, &lm_dir) {
        Ok(lm) => lm,
        Err(e) => {
            shared.set_failed(format!("loading {}: {e}", lm_dir.display()));
            // Answer whatever arrives until the server stops.
            for job in jobs {
                let Job::Generate { sink, .. } = job;
                let _ = sink.send(Reply::Done(Err(ApiError::unavailable("the model failed to load"))));
            }
            return;
        }
    };
    let mut engine = match Engine::new(&lm, &b, &engine_opts) {
        Ok(e) => e,
        Err(e) => {
            shared.set_failed(e.to_string());
            return;
        }
    };
    shared.set_ready(&lm.config, engine.kv().budget());
    let mut live: HashMap<RequestId, Live> = HashMap::new();
    let mut open = true;
    while open || !engine.is_idle() {
        // Block only while there is nothing to step.
        if open && engine.is_idle() {
            match jobs.recv_timeout(Duration::from_millis(200)) {
                Ok(job) => accept(&mut engine, &mut live, job, &shared),
                Err(RecvTimeoutError::Timeout) => continue,
                Err(RecvTimeoutError::Disconnected) => open = false,
            }
        }
        while open {
            match jobs.try_recv() {
                Ok(job) => accept(&mut engine, &mut live, job, &shared),
                Err(std::sync::mpsc::TryRecvError::Empty) => break,
                Err(std::sync::mpsc::TryRecvError::Disconnected) => open = false,
            }
        }
        drop_abandoned(&mut engine, &mut live, &shared);
        if engine.is_idle() {
            shared.observe_engine(&engine);
            continue;
        }
        let t = Instant::now();
        let stepped = engine.step();
        let rows = engine.rows();
        let mut produced = 0;
        match stepped {
            Ok(events) => {
                for e in events {
                    match e {
                        EngineEvent::Frame { id, codes } => {
                            produced += 1;
                            send(&live, id, Reply::Frame(codes));
                        }
                        EngineEvent::Text { id, token } => {
                            produced += 1;
                            send(&live, id, Reply::Text(token));
                        }
                        EngineEvent::Finished { .. } | EngineEvent::Failed { .. } => {}
                    }
                }
            }
            Err(e) => eprintln!("a batched step failed: {e}; its requests get 500"),
        }
        for f in engine.take_finished() {
            if let Some(l) = live.remove(&f.id) {
                let reply = match f.result {
                    Ok(out) => Ok(output_json(l.kind, &out)),
                    Err(msg) => Err(ApiError::internal(msg)),
                };
                let _ = l.sink.send(Reply::Done(reply));
            }
        }
        shared.observe_step(rows, produced, t.elapsed());
        shared.observe_engine(&engine);
    }
}

fn send(live: &HashMap<RequestId, Live>, id: RequestId, reply: Reply) {
    if let Some(l) = live.get(&id) {
        let _ = l.sink.send(reply);
    }
}

/// Submits one job, or answers it at once when it is refused.
fn accept<B: Backend>(engine: &mut Engine<'_, B>, live: &mut HashMap<RequestId, Live>, job: Job, shared: &Shared) {
    let Job::Generate { frames, opts, sink, deadline, fault } = job;
    // A fault (test hook) or a panic fails only this request.
    let submitted = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        match fault {
            Some(Fault::Panic) => panic!("injected fault"),
            Some(Fault::Error) => return Err(ApiError::internal("injected backend error")),
            None => {}
        }
        engine.submit(&frames, &opts).map_err(|e| ApiError::bad_request(e.to_string()))
    }));
    match submitted {
        Ok(Ok(id)) => {
            live.insert(id, Live { sink, kind: opts.kind, deadline });
        }
        Ok(Err(e)) => {
            let _ = sink.send(Reply::Done(Err(e)));
        }
        Err(_) => {
            shared.count_panic();
            let _ = sink.send(Reply::Done(Err(ApiError::internal("internal error while starting the request (the server and other requests are unaffected)"))));
        }
    }
}

/// Cancels requests whose client is gone or whose deadline passed.
fn drop_abandoned<B: Backend>(engine: &mut Engine<'_, B>, live: &mut HashMap<RequestId, Live>, shared: &Shared) {
    let now = Instant::now();
    let gone: Vec<RequestId> = live.iter().filter(|(_, l)| l.sink.is_closed() || l.deadline.is_some_and(|d| now >= d)).map(|(&id, _)| id).collect();
    for id in gone {
        let l = live.remove(&id).expect("listed above");
        engine.cancel(id);
        if l.sink.is_closed() {
            shared.count_cancelled();
        } else {
            let _ = l.sink.send(Reply::Done(Err(ApiError::timeout())));
        }
    }
}
