//! Memory-mapped safetensors weights: single files, sharded model directories, and
//! zero-copy views that the CPU backend computes on in place.

mod model_dir;
mod safetensors_file;
mod view;

pub use model_dir::ModelWeights;
pub use safetensors_file::SafetensorsFile;
pub use view::WeightView;
