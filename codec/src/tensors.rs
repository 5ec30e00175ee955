//! The decode subset of the two weight files, named as upstream, with their shapes.

use crate::config::CodecConfig;

pub type TensorList = Vec<(String, Vec<usize>)>;

pub const POS_EMBED: &str = "pos_embed.pe";

/// codec.safetensors: RVQ codebooks and projections, cond_feature_emb, the flow estimator.
pub fn codec_tensors(c: &CodecConfig) -> TensorList {
    let r = &c.rvq;
    let f = &c.flow;
    let (d, cond, k, ff) = (f.inner_dim, r.cond_dim, f.proj_kernel, f.ffn_dim);
    let mut out = TensorList::new();
    for g in &r.groups {
        for q in 0..g.levels {
            out.push((format!("{}.layers.{q}._codebook.embed", g.module), vec![1, r.codebook_size, r.codebook_dim]));
        }
        out.push((format!("{}.project_out.weight", g.module), vec![cond, r.codebook_dim]));
        out.push((format!("{}.project_out.bias", g.module), vec![cond]));
    }
    out.push(("cond_feature_emb.weight".into(), vec![cond, cond]));
    out.push(("cond_feature_emb.bias".into(), vec![cond]));
    out.push(("zero_cond_embedding1".into(), vec![cond]));
    let p = &f.prefix;
    let mut push = |name: String, shape: Vec<usize>| out.push((format!("{p}{name}"), shape));
    push("proj_in.ffn_1.weight".into(), vec![d, f.in_channels, k]);
    push("proj_in.ffn_1.bias".into(), vec![d]);
    push("proj_in.ffn_2.weight".into(), vec![d, d]);
    push("proj_in.ffn_2.bias".into(), vec![d]);
    push(POS_EMBED.into(), vec![1, f.max_positions, d]);
    let te = "adaln_single.emb.timestep_embedder";
    push(format!("{te}.linear_1.weight"), vec![d, f.timestep_embed_dim]);
    push(format!("{te}.linear_1.bias"), vec![d]);
    push(format!("{te}.linear_2.weight"), vec![d, d]);
    push(format!("{te}.linear_2.bias"), vec![d]);
    push("adaln_single.linear.weight".into(), vec![6 * d, d]);
    push("adaln_single.linear.bias".into(), vec![6 * d]);
    for l in 0..f.n_layer {
        let b = format!("transformer_blocks.{l}");
        push(format!("{b}.scale_shift_table"), vec![6, d]);
        for proj in ["to_q", "to_k", "to_v", "to_out.0"] {
            push(format!("{b}.attn1.{proj}.weight"), vec![d, d]);
            push(format!("{b}.attn1.{proj}.bias"), vec![d]);
        }
        push(format!("{b}.ff.net.0.proj.weight"), vec![ff, d]);
        push(format!("{b}.ff.net.0.proj.bias"), vec![ff]);
        push(format!("{b}.ff.net.2.weight"), vec![d, ff]);
        push(format!("{b}.ff.net.2.bias"), vec![d]);
    }
    push("scale_shift_table".into(), vec![2, d]);
    push("proj_out.ffn_1.weight".into(), vec![f.out_channels, d, k]);
    push("proj_out.ffn_1.bias".into(), vec![f.out_channels]);
    push("proj_out.ffn_2.weight".into(), vec![f.out_channels, f.out_channels]);
    push("proj_out.ffn_2.bias".into(), vec![f.out_channels]);
    out
}

/// Index of the PostProcessor module (if any) and of the output conv in `decoder.*`.
pub fn sq_tail_indices(c: &CodecConfig) -> (Option<usize>, usize) {
    let n = c.sq_decoder.upsample_factors.len();
    if c.sq_decoder.num_samples > 1 {
        (Some(n + 1), n + 2)
    } else {
        (None, n + 1)
    }
}

/// sqcodec.safetensors: the SQ-Codec decoder with un-folded weight norm (g, v).
pub fn sq_tensors(c: &CodecConfig) -> TensorList {
    let q = &c.sq_decoder;
    let ch = q.channels();
    let mut out = TensorList::new();
    let mut wn = |name: String, g_dim: usize, v: Vec<usize>, bias: usize| {
        out.push((format!("{name}.weight_g"), vec![g_dim, 1, 1]));
        out.push((format!("{name}.weight_v"), v));
        out.push((format!("{name}.bias"), vec![bias]));
    };
    wn("decoder.0".into(), ch[0], vec![ch[0], q.latent_hidden_dim, q.delay_kernel_size], ch[0]);
    for (i, (&s, &k)) in q.upsample_factors.iter().zip(&q.upsample_kernel_sizes).enumerate() {
        let _ = s;
        let (cin, cout) = (ch[i], ch[i + 1]);
        wn(format!("decoder.{}.up_conv.layer", i + 1), cin, vec![cin, cout, k], cout);
        for j in 0..q.residual_dilations.len() {
            let u = format!("decoder.{}.convs.{j}", i + 1);
            wn(format!("{u}.conv1"), cout, vec![cout, cout, q.res_kernel_size], cout);
            wn(format!("{u}.conv2"), cout, vec![cout, cout, 1], cout);
        }
    }
    let mut tail = TensorList::new();
    for (i, _) in q.upsample_factors.iter().enumerate() {
        for j in 0..q.residual_dilations.len() {
            for a in ["activation1", "activation2"] {
                tail.push((format!("decoder.{}.convs.{j}.{a}.weight", i + 1), vec![1]));
            }
        }
    }
    let (post, last) = sq_tail_indices(c);
    let init = q.init_channel;
    if let Some(p) = post {
        tail.push((format!("decoder.{p}.conv.weight"), vec![init, init, q.default_kernel_size]));
        tail.push((format!("decoder.{p}.conv.bias"), vec![init]));
        tail.push((format!("decoder.{p}.activation.weight"), vec![1]));
    }
    out.extend(tail);
    out.push((format!("decoder.{last}.weight_g"), vec![1, 1, 1]));
    out.push((format!("decoder.{last}.weight_v"), vec![1, init, q.default_kernel_size]));
    out.push((format!("decoder.{last}.bias"), vec![1]));
    out
}

/// diffusers' SinusoidalPositionalEmbedding in f32: pe[p, 2i] = sin(p·ω_i), pe[p, 2i+1] = cos(p·ω_i),
/// ω_i = exp(2i · (−ln 10000 / D)).
pub fn pos_embed_table(positions: usize, dim: usize) -> Vec<f32> {
    let factor = (-(10000f64.ln()) / dim as f64) as f32;
    let omega: Vec<f32> = (0..dim / 2).map(|i| (((2 * i) as f32 * factor) as f64).exp() as f32).collect();
    let mut pe = vec![0f32; positions * dim];
    for (p, row) in pe.chunks_mut(dim).enumerate() {
        for (i, &w) in omega.iter().enumerate() {
            let a = p as f32 * w;
            row[2 * i] = (a as f64).sin() as f32;
            if 2 * i + 1 < dim {
                row[2 * i + 1] = (a as f64).cos() as f32;
            }
        }
    }
    pe
}
