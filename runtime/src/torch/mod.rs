//! Reading `torch.save` checkpoints without Python and without executing anything.

mod checkpoint;
pub mod pickle;

pub use checkpoint::{TorchCheckpoint, TorchTensor};
