//! The flow-matching estimator (a DiT with adaLN-single timestep conditioning) and the
//! Euler sampler with classifier-free guidance, for one window.
//!
//! Both CFG rows run as one batch of 2: row 0 with μ = 0, row 1 with μ. `proj_in` is
//! linear in its input channels, so its convolution is split by input part: the
//! in-context and μ parts are constant over the steps and computed once per window;
//! only the x_t part runs every step.

use std::ops::ControlFlow;

use uniaudio_runtime::{ops, Backend, ConvParams, DType, Epilogue, Tensor, UnaryFn};

use crate::config::{CodecConfig, FlowConfig};
use crate::error::Result;
use crate::load::{conv_to_runtime, Loader};
use crate::tensors::POS_EMBED;
use crate::timesteps::{sinusoid, time_grid};

struct Block<B: Backend> {
    table: Tensor<B>, // [6, D] f32
    q_w: Tensor<B>,
    q_b: Tensor<B>,
    k_w: Tensor<B>,
    k_b: Tensor<B>,
    v_w: Tensor<B>,
    v_b: Tensor<B>,
    o_w: Tensor<B>,
    o_b: Tensor<B>,
    ff1_w: Tensor<B>,
    ff1_b: Tensor<B>,
    ff2_w: Tensor<B>,
    ff2_b: Tensor<B>,
}

pub struct Flow<B: Backend> {
    cfg: FlowConfig,
    cfg_scale: f32,
    sigma_min: f32,
    /// proj_in's convolution split by input part, scaled by K^-1/2: [D, K, C_part].
    in_x: Tensor<B>,
    in_c: Tensor<B>,
    in_mu: Tensor<B>,
    in_bias: Tensor<B>,
    in2_w: Tensor<B>,
    in2_b: Tensor<B>,
    pe: Tensor<B>, // [max_positions, D] f32
    t1_w: Tensor<B>,
    t1_b: Tensor<B>,
    t2_w: Tensor<B>,
    t2_b: Tensor<B>,
    ada_w: Tensor<B>,
    ada_b: Tensor<B>,
    blocks: Vec<Block<B>>,
    out_table: Tensor<B>, // [2, D] f32
    out1_w: Tensor<B>,    // [out, K, D], scaled
    out1_b: Tensor<B>,
    out2_w: Tensor<B>,
    out2_b: Tensor<B>,
}

/// What one window's sampling starts from.
pub struct WindowInput<'a, B: Backend> {
    /// Conditioning at the token rate [T_tok, cond_dim] (μ is it repeated ×2).
    pub cond: &'a Tensor<B>,
    /// Initial noise x0 [T, latent_dim].
    pub x0: &'a [f32],
    /// In-context latent [T, latent_dim]: zeros except the first `incontext` frames.
    pub context: &'a [f32],
    pub incontext: usize,
    pub steps: usize,
}

impl<B: Backend> Flow<B> {
    pub fn load(l: &Loader<B>, c: &CodecConfig) -> Result<Self> {
        let f = c.flow.clone();
        let p = f.prefix.clone();
        let name = |n: &str| format!("{p}{n}");
        let (d, k, lat, cond, ffd) = (f.inner_dim, f.proj_kernel, f.latent_dim, c.rvq.cond_dim, f.ffn_dim);
        let scale = (k as f64).powf(-0.5) as f32;
        // proj_in.ffn_1 [D, in, K] -> three [D, K, part] matrices, scaled.
        let w1 = l.host(&name("proj_in.ffn_1.weight"), &[d, f.in_channels, k])?;
        let part = |start: usize, len: usize| -> Result<Tensor<B>> {
            let mut w = vec![0f32; d * len * k];
            for o in 0..d {
                for i in 0..len {
                    for t in 0..k {
                        w[(o * len + i) * k + t] = w1[(o * f.in_channels + start + i) * k + t] * scale;
                    }
                }
            }
            l.upload(&[d, k, len], &conv_to_runtime(&w, d, len, k))
        };
        let (in_x, in_c, in_mu) = (part(0, lat)?, part(lat, lat)?, part(2 * lat, cond)?);
        let b1: Vec<f32> = l.host(&name("proj_in.ffn_1.bias"), &[d])?.iter().map(|v| v * scale).collect();
        let pe = l.host(&name(POS_EMBED), &[1, f.max_positions, d])?;
        let o1 = l.host(&name("proj_out.ffn_1.weight"), &[f.out_channels, d, k])?;
        let o1: Vec<f32> = o1.iter().map(|v| v * scale).collect();
        let ob1: Vec<f32> = l.host(&name("proj_out.ffn_1.bias"), &[f.out_channels])?.iter().map(|v| v * scale).collect();
        let te = "adaln_single.emb.timestep_embedder";
        let mut blocks = Vec::new();
        for i in 0..f.n_layer {
            let bn = |n: &str| name(&format!("transformer_blocks.{i}.{n}"));
            let lin = |n: &str, rows: usize, cols: usize| -> Result<(Tensor<B>, Tensor<B>)> {
                Ok((l.gemm_weight(&bn(&format!("{n}.weight")), &[rows, cols])?, l.weight(&bn(&format!("{n}.bias")), &[rows])?))
            };
            let (q_w, q_b) = lin("attn1.to_q", d, d)?;
            let (k_w, k_b) = lin("attn1.to_k", d, d)?;
            let (v_w, v_b) = lin("attn1.to_v", d, d)?;
            let (o_w, o_b) = lin("attn1.to_out.0", d, d)?;
            let (ff1_w, ff1_b) = lin("ff.net.0.proj", ffd, d)?;
            let (ff2_w, ff2_b) = lin("ff.net.2", d, ffd)?;
            let table = l.upload(&[6, d], &l.host(&bn("scale_shift_table"), &[6, d])?)?;
            blocks.push(Block { table, q_w, q_b, k_w, k_b, v_w, v_b, o_w, o_b, ff1_w, ff1_b, ff2_w, ff2_b });
        }
        Ok(Flow {
            cfg_scale: c.sampler.cfg_scale,
            sigma_min: c.sampler.sigma_min,
            in_x,
            in_c,
            in_mu,
            in_bias: l.upload(&[d], &b1)?,
            in2_w: l.gemm_weight(&name("proj_in.ffn_2.weight"), &[d, d])?,
            in2_b: l.weight(&name("proj_in.ffn_2.bias"), &[d])?,
            pe: l.upload(&[f.max_positions, d], &pe)?,
            t1_w: l.weight(&name(&format!("{te}.linear_1.weight")), &[d, f.timestep_embed_dim])?,
            t1_b: l.weight(&name(&format!("{te}.linear_1.bias")), &[d])?,
            t2_w: l.weight(&name(&format!("{te}.linear_2.weight")), &[d, d])?,
            t2_b: l.weight(&name(&format!("{te}.linear_2.bias")), &[d])?,
            ada_w: l.weight(&name("adaln_single.linear.weight"), &[6 * d, d])?,
            ada_b: l.weight(&name("adaln_single.linear.bias"), &[6 * d])?,
            blocks,
            out_table: l.upload(&[2, d], &l.host(&name("scale_shift_table"), &[2, d])?)?,
            out1_w: l.upload(&[f.out_channels, k, d], &conv_to_runtime(&o1, f.out_channels, d, k))?,
            out1_b: l.upload(&[f.out_channels], &ob1)?,
            out2_w: l.weight(&name("proj_out.ffn_2.weight"), &[f.out_channels, f.out_channels])?,
            out2_b: l.weight(&name("proj_out.ffn_2.bias"), &[f.out_channels])?,
            cfg: f,
        })
    }

    /// Multiply-adds of one estimator call on `rows` frames (both CFG rows), for GFLOP/s.
    pub fn flops_per_step(&self, rows: usize) -> f64 {
        let f = &self.cfg;
        let (d, k) = (f.inner_dim as f64, f.proj_kernel as f64);
        let per_row = d * k * f.latent_dim as f64 // x part of proj_in (the rest is per window)
            + d * d
            + f.n_layer as f64 * (4.0 * d * d + 2.0 * d * f.ffn_dim as f64 + 2.0 * rows as f64 / 2.0 * d)
            + k * d * f.out_channels as f64
            + (f.out_channels * f.out_channels) as f64;
        2.0 * per_row * rows as f64
    }

    /// The timestep path for every step: emb [N, D] and ada [N, 6D].
    fn timestep_tables(&self, b: &B, times: &[f32]) -> Result<(Tensor<B>, Tensor<B>)> {
        let f = &self.cfg;
        let n = times.len();
        let d = f.inner_dim;
        let sin = sinusoid(f, times);
        let sin = ops::upload_f32(b, &[n, f.timestep_embed_dim], &sin, DType::F32)?;
        let h = b.alloc(DType::F32, &[n, d])?;
        ops::linear(b, &sin, &self.t1_w, Some(&self.t1_b), &h, Epilogue::Act(UnaryFn::Silu))?;
        let emb = b.alloc(DType::F32, &[n, d])?;
        ops::linear(b, &h, &self.t2_w, Some(&self.t2_b), &emb, Epilogue::Store)?;
        ops::unary(b, &emb, &h, UnaryFn::Silu)?;
        let ada = b.alloc(DType::F32, &[n, 6 * d])?;
        ops::linear(b, &h, &self.ada_w, Some(&self.ada_b), &ada, Epilogue::Store)?;
        Ok((emb, ada))
    }

    /// Samples one window; returns the latent [T, latent_dim] (device) after the final
    /// in-context overwrite. `on_step` runs after every Euler step; `Break` ends the
    /// sampling there with `CodecError::Cancelled`.
    pub fn sample(&self, b: &B, input: &WindowInput<B>, on_step: &mut dyn FnMut() -> ControlFlow<()>) -> Result<Tensor<B>> {
        let f = &self.cfg;
        let (d, lat, k) = (f.inner_dim, f.latent_dim, f.proj_kernel);
        let t = input.x0.len() / lat;
        let (heads, hd) = (f.n_head, f.head_dim);
        let f32 = |shape: &[usize]| b.alloc(DType::F32, shape);
        let same = ConvParams { pad_left: (k - 1) / 2, ..ConvParams::plain() };

        let x = ops::upload_f32(b, &[t, lat], input.x0, DType::F32)?;
        let x0 = ops::upload_f32(b, &[t, lat], input.x0, DType::F32)?;
        let ctx = ops::upload_f32(b, &[t, lat], input.context, DType::F32)?;
        // base[0] = conv_c(ctx) + bias (μ = 0), base[1] = conv_μ(μ) + base[0].
        // Separate buffers: GPU backends bind each whole, and the add below reads one, writes the other.
        let (base_u, base_c) = (f32(&[1, t, d])?, f32(&[1, t, d])?);
        ops::conv1d(b, &ctx.reshape(&[1, t, lat])?, &self.in_c, Some(&self.in_bias), &base_u, same)?;
        let cond = input.cond;
        let t_tok = cond.shape()[0];
        let mu_conv = ConvParams { upsample: t / t_tok.max(1), ..same };
        ops::conv1d(b, &cond.reshape(&[1, t_tok, cond.shape()[1]])?, &self.in_mu, None, &base_c, mu_conv)?;
        ops::add(b, &base_c, &base_u, &base_c)?;

        let grid = time_grid(input.steps);
        let times: Vec<f32> = grid.iter().map(|s| s.t).collect();
        let (emb, ada) = self.timestep_tables(b, &times)?;
        let mods = f32(&[self.blocks.len(), 6, d])?;
        let out_mod = f32(&[2, d])?;

        let cx = f32(&[1, t, d])?;
        let hpre = f32(&[2 * t, d])?;
        let h = f32(&[2 * t, d])?;
        let n = f32(&[2 * t, d])?;
        let (q, kk, v, att) = (f32(&[2 * t, d])?, f32(&[2 * t, d])?, f32(&[2 * t, d])?, f32(&[2 * t, d])?);
        let (kc, vc) = (f32(&[heads, t, hd])?, f32(&[heads, t, hd])?);
        let ff = f32(&[2 * t, f.ffn_dim])?;
        let po = f32(&[2, t, f.out_channels])?;
        let vel = f32(&[2 * t, f.out_channels])?;
        let positions = ops::upload_u32(b, &[t], &(0..t as u32).collect::<Vec<_>>())?;
        let pe = self.pe.narrow(0, t)?;
        let lc = input.incontext;

        for (step, s) in grid.iter().enumerate() {
            if lc > 0 {
                let wa = 1.0 - (1.0 - self.sigma_min) * s.t;
                ops::blend(b, &x0.narrow(0, lc)?, &ctx.narrow(0, lc)?, wa, s.t, &x.narrow(0, lc)?)?;
            }
            // Modulation vectors of this step: table + ada (per block), table_out + emb.
            let ada_n = ada.narrow(step, 1)?.reshape(&[6, d])?;
            for (l, blk) in self.blocks.iter().enumerate() {
                ops::add(b, &blk.table, &ada_n, &mods.narrow(l, 1)?.reshape(&[6, d])?)?;
            }
            let emb_n = emb.narrow(step, 1)?;
            for r in 0..2 {
                ops::add(b, &self.out_table.narrow(r, 1)?, &emb_n, &out_mod.narrow(r, 1)?)?;
            }
            // proj_in: conv over [x | ctx | μ] = conv_x(x) + base[row], then Linear, then + pe.
            ops::conv1d(b, &x.reshape(&[1, t, lat])?, &self.in_x, None, &cx, same)?;
            let cx2 = cx.reshape(&[t, d])?;
            ops::add(b, &cx2, &base_u.reshape(&[t, d])?, &hpre.narrow(0, t)?)?;
            ops::add(b, &cx2, &base_c.reshape(&[t, d])?, &hpre.narrow(t, t)?)?;
            ops::linear(b, &hpre, &self.in2_w, Some(&self.in2_b), &h, Epilogue::Store)?;
            for r in 0..2 {
                let hr = h.narrow(r * t, t)?;
                ops::add(b, &hr, &pe, &hr)?;
            }
            for (l, blk) in self.blocks.iter().enumerate() {
                let m = mods.narrow(l, 1)?.reshape(&[6, d])?;
                let row = |i: usize| -> Result<Tensor<B>> { Ok(m.narrow(i, 1)?.reshape(&[d])?) };
                ops::layer_norm_modulate(b, &h, &row(0)?, &row(1)?, &n, f.norm_eps)?;
                ops::linear(b, &n, &blk.q_w, Some(&blk.q_b), &q, Epilogue::Store)?;
                ops::linear(b, &n, &blk.k_w, Some(&blk.k_b), &kk, Epilogue::Store)?;
                ops::linear(b, &n, &blk.v_w, Some(&blk.v_b), &v, Epilogue::Store)?;
                for r in 0..2 {
                    let view = |x: &Tensor<B>| -> Result<Tensor<B>> { Ok(x.narrow(r * t, t)?.reshape(&[t, heads, hd])?) };
                    ops::kv_append(b, &view(&kk)?, &view(&v)?, &positions, &kc, &vc)?;
                    ops::attention(b, &view(&q)?, &kc, &vc, &view(&att)?, t, false)?;
                }
                let gate_a = row(2)?;
                ops::linear(b, &att, &blk.o_w, Some(&blk.o_b), &h, Epilogue::GatedAdd { gate: &gate_a })?;
                ops::layer_norm_modulate(b, &h, &row(3)?, &row(4)?, &n, f.norm_eps)?;
                ops::linear(b, &n, &blk.ff1_w, Some(&blk.ff1_b), &ff, Epilogue::Act(UnaryFn::GeluTanh))?;
                let gate_f = row(5)?;
                ops::linear(b, &ff, &blk.ff2_w, Some(&blk.ff2_b), &h, Epilogue::GatedAdd { gate: &gate_f })?;
            }
            let shift = out_mod.narrow(0, 1)?.reshape(&[d])?;
            let scale = out_mod.narrow(1, 1)?.reshape(&[d])?;
            ops::layer_norm_modulate(b, &h, &shift, &scale, &n, f.norm_out_eps)?;
            ops::conv1d(b, &n.reshape(&[2, t, d])?, &self.out1_w, Some(&self.out1_b), &po, same)?;
            ops::linear(b, &po.reshape(&[2 * t, f.out_channels])?, &self.out2_w, Some(&self.out2_b), &vel, Epilogue::Store)?;
            ops::euler_cfg(b, &x, &vel.narrow(t, t)?, &vel.narrow(0, t)?, self.cfg_scale, s.dt)?;
            if on_step().is_break() {
                return Err(crate::error::CodecError::Cancelled);
            }
        }
        if lc > 0 {
            ops::blend(b, &x0.narrow(0, lc)?, &ctx.narrow(0, lc)?, 0.0, 1.0, &x.narrow(0, lc)?)?;
        }
        Ok(x)
    }
}
