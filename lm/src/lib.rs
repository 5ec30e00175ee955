//! The UniAudio 2.0 language model on the uniaudio runtime: config, the four Llama
//! stacks (understanding expert, backbone, generation expert, depth decoder), KV caches,
//! sampler and generation loop.
