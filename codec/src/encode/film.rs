//! The reconstruction branches: down-sampling convolutions (stride = kernel, so a reshape
//! and a GEMM), the fusion linears, FiLM from the reasoning feature and the three RVQs
//! (phone, structure, acoustic), whose codes form the reconstruction tokens.

use uniaudio_runtime::{ops, Backend, DType, Epilogue, Tensor, WeightLayout};

use super::config::EncoderConfig;
use super::layers::{EncoderWeights, Lin};
use crate::load::conv_to_runtime;
use super::rvq_search::RvqSearch;
use crate::error::Result;

/// A Conv1d with stride = kernel as a linear over [T/K, K·C_in].
struct DownConv<B: Backend> {
    lin: Lin<B>,
    k: usize,
}

impl<B: Backend> DownConv<B> {
    fn load(l: &EncoderWeights<B>, name: &str, ch: usize, k: usize) -> Result<Self> {
        let w = l.host(&format!("{name}.weight"), &[ch, ch, k])?;
        let b = l.host(&format!("{name}.bias"), &[ch])?;
        // [C_out, C_in, K] -> [C_out, K·C_in]: the linear over frames reshaped to [T/K, K·C_in].
        Ok(DownConv { lin: Lin::from_host(l, &conv_to_runtime(&w, ch, ch, k), Some(&b), ch, k * ch)?, k })
    }

    /// x [B·T, C] -> [B·frames, C], each chunk's frames from its first frames·K rows.
    fn apply(&self, bk: &B, x: &Tensor<B>, batch: usize, frames: usize) -> Result<Tensor<B>> {
        let (rows, c) = (x.rows() / batch, x.dim_back(0));
        let out = bk.alloc(DType::F32, &[batch * frames, self.lin.out_dim()])?;
        for b in 0..batch {
            let x = x.narrow(b * rows, frames * self.k)?.reshape(&[frames, self.k * c])?;
            self.lin.run(bk, &x, &out.narrow(b * frames, frames)?, Epilogue::Store)?;
        }
        Ok(out)
    }
}

struct Branch<B: Backend> {
    film: Lin<B>,
    vq: RvqSearch<B>,
}

pub struct Reconstruction<B: Backend> {
    whisper4: DownConv<B>,
    wavlm4: DownConv<B>,
    semantic2: DownConv<B>,
    acoustic2: DownConv<B>,
    reason_adaptor: Lin<B>,
    phone: Lin<B>,
    structure: Lin<B>,
    /// cond_fusion_layer_acoustic split by input part: MusicFM's acoustic stream, then Whisper.
    acoustic_musicfm: Lin<B>,
    acoustic_whisper: Lin<B>,
    branches: Vec<Branch<B>>,
    gamma: f32,
}

/// The streams one chunk's reconstruction frames come from.
pub struct Streams<'a, B: Backend> {
    pub whisper: &'a Tensor<B>,
    pub wavlm_mean: &'a Tensor<B>,
    pub semantic: &'a Tensor<B>,
    pub acoustic: &'a Tensor<B>,
    /// project_out of the reasoning codes [R, dim].
    pub reasoning: &'a Tensor<B>,
}

impl<B: Backend> Reconstruction<B> {
    pub fn load(l: &EncoderWeights<B>, c: &EncoderConfig) -> Result<Self> {
        let r = &c.reconstruction;
        let (dw, dm, hw, cd) = (c.whisper.d_model, c.musicfm.encoder_dim, c.wavlm.hidden_size, r.codec_dim);
        let fusion = l.host("cond_fusion_layer_acoustic.weight", &[cd, dm + dw])?;
        let cols = |start: usize, len: usize| -> Vec<f32> { fusion.chunks(dm + dw).flat_map(|row| row[start..start + len].to_vec()).collect() };
        let films = ["time_film_phone", "time_film_semantic", "time_film_acoustic"];
        let mut branches = Vec::new();
        for (g, film) in r.groups.iter().zip(films) {
            branches.push(Branch {
                film: l.linear(film, 2 * cd, cd, true)?,
                vq: RvqSearch::load(l, &format!("{}.", g.module), cd, g.levels, r.vq.codebook_size, r.vq.codebook_dim, false)?,
            });
        }
        Ok(Reconstruction {
            whisper4: DownConv::load(l, "d_conv_whisper", dw, 4)?,
            wavlm4: DownConv::load(l, "d_conv_wavlm", hw, 4)?,
            semantic2: DownConv::load(l, "d_conv_embedding_semantic", dm, 2)?,
            acoustic2: DownConv::load(l, "d_conv_embedding_acoustic", dm, 2)?,
            reason_adaptor: l.linear("reason_adaptor", cd, c.audio_thinking.dim, true)?,
            phone: l.linear("cond_fusion_layer_phone", cd, hw, true)?,
            structure: l.linear("cond_fusion_layer_semantic", cd, dm, true)?,
            acoustic_musicfm: Lin::from_host(l, &cols(0, dm), Some(&l.host("cond_fusion_layer_acoustic.bias", &[cd])?), cd, dm)?,
            acoustic_whisper: Lin::from_host(l, &cols(dm, dw), None, cd, dw)?,
            branches,
            gamma: r.film.gamma,
        })
    }

    /// `frames` reconstruction frames per chunk (B chunks) -> the branches' FiLM outputs
    /// (phone, structure, acoustic; each [B·frames, codec_dim]) and codes [B·frames, levels].
    pub fn forward(&self, bk: &B, s: &Streams<B>, batch: usize, frames: usize) -> Result<Vec<(Tensor<B>, Tensor<B>)>> {
        // Reasoning feature at 12.5 Hz: frame i takes reasoning frame ⌊2i/5⌋ (nearest ×2.5).
        let r = self.reason_adaptor.apply(bk, s.reasoning, Epilogue::Store)?;
        let per = r.rows() / batch;
        let ids: Vec<u32> = (0..batch * frames).map(|i| ((i / frames) * per + 2 * (i % frames) / 5) as u32).collect();
        let cond = bk.alloc(DType::F32, &[batch * frames, r.dim_back(0)])?;
        ops::embed_rows(bk, &r, &ops::upload_u32(bk, &[batch * frames], &ids)?, &cond)?;
        let phone = self.phone.apply(bk, &self.wavlm4.apply(bk, s.wavlm_mean, batch, frames)?, Epilogue::Store)?;
        let structure = self.structure.apply(bk, &self.semantic2.apply(bk, s.semantic, batch, frames)?, Epilogue::Store)?;
        let acoustic = self.acoustic_musicfm.apply(bk, &self.acoustic2.apply(bk, s.acoustic, batch, frames)?, Epilogue::Store)?;
        let whisper = self.whisper4.apply(bk, s.whisper, batch, frames)?;
        ops::matmul(bk, &whisper, &self.acoustic_whisper.w, &acoustic, WeightLayout::OutIn, true)?;
        let mut out = Vec::new();
        for (feature, branch) in [phone, structure, acoustic].into_iter().zip(&self.branches) {
            let p = branch.film.apply(bk, &cond, Epilogue::Store)?;
            ops::film(bk, &feature, &p, &feature, self.gamma)?;
            let codes = branch.vq.encode(bk, &feature)?.codes;
            out.push((feature, codes));
        }
        Ok(out)
    }
}
