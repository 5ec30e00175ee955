pub mod torch_writer;
