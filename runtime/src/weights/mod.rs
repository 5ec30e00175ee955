//! Memory-mapped safetensors weights: single files, sharded model directories, and
//! zero-copy views that the CPU backend computes on in place.

mod model_dir;
mod safetensors_file;
mod view;
mod writer;

pub use model_dir::ModelWeights;
pub use safetensors_file::SafetensorsFile;
pub use view::WeightView;
pub use writer::{quantized_metadata_key, SafetensorsWriter, TensorSpec, Q4_METADATA_KEY, Q8_METADATA_KEY};
pub use model_dir::{INDEX_FILE, SINGLE_FILE};
