//! ReasoningCodec on the uniaudio runtime: RVQ lookup, the flow-matching decoder and the
//! SQ-Codec waveform decoder.
