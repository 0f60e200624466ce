//! Every message between actors, with who sends it, who handles it, and what the reply means.

use actix::prelude::*;

use crate::record::{LineBatch, RecordBatch};

/// Lines of one file. Reader → Parser. Reply: `()` once the parser has parsed them (it may still
/// be waiting for room at the writer).
#[derive(Message)]
#[rtype(result = "()")]
pub struct Lines(pub LineBatch);

/// Records and dead letters of one file. Parser → Writer. Reply: `()` once the writer has taken
/// them into its pending transaction (not yet committed).
#[derive(Message)]
#[rtype(result = "()")]
pub struct Records(pub RecordBatch);

/// The input is over: pass on everything held, then answer. Reader → Parser → Writer. The
/// writer answers once every batch it received is committed; `Err` when a stage downstream is
/// gone or a commit failed.
#[derive(Message)]
#[rtype(result = "Result<(), StageGone>")]
pub struct Flush;

/// The next stage has stopped (it failed, or the pipeline is being torn down).
#[derive(Debug, Clone, thiserror::Error)]
#[error("{0} is gone")]
pub struct StageGone(pub &'static str);

/// The pipeline stages, as named in logs, errors and restart counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Stage {
    Tailer,
    Reader,
    Parser,
    Writer,
}

impl std::fmt::Display for Stage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Stage::Tailer => "tailer",
            Stage::Reader => "reader",
            Stage::Parser => "parser",
            Stage::Writer => "writer",
        })
    }
}

/// Ctrl-C or SIGTERM: drain and exit. Signal handler → Supervisor.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Shutdown;

/// A stage of pipeline `generation` failed or vanished. Any stage (or its drop guard) →
/// Supervisor, which restarts the pipeline from the committed positions.
#[derive(Message, Debug)]
#[rtype(result = "()")]
pub struct StageFailed {
    pub generation: u64,
    pub stage: Stage,
    pub reason: String,
    /// A restart cannot mend it (a missing grant, a read-only database): stop instead.
    pub fatal: bool,
}

/// Pipeline `generation` has committed everything it read after its input ended. Reader →
/// Supervisor.
#[derive(Message, Debug)]
#[rtype(result = "()")]
pub struct Drained {
    pub generation: u64,
}
