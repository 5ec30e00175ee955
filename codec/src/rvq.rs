//! Decode conditioning: per RVQ, Σ of the gathered codebook rows, `project_out`; the
//! three results summed, then `cond_feature_emb`. Output at the token rate; the flow
//! reads it upsampled ×2 (nearest) through its convolution's `upsample`.

use uniaudio_runtime::{ops, Backend, DType, Epilogue, Tensor};

use crate::config::CodecConfig;
use crate::error::{CodecError, Result};
use crate::load::Loader;

struct Group<B: Backend> {
    rows: Vec<usize>,
    /// The group's codebooks stacked: [levels · codebook_size, codebook_dim].
    table: Tensor<B>,
    project_w: Tensor<B>,
    project_b: Tensor<B>,
}

pub struct Rvq<B: Backend> {
    groups: Vec<Group<B>>,
    cond_w: Tensor<B>,
    cond_b: Tensor<B>,
    codebook_size: usize,
    codebook_dim: usize,
    cond_dim: usize,
    ones: Tensor<B>,
}

impl<B: Backend> Rvq<B> {
    pub fn load(l: &Loader<B>, c: &CodecConfig) -> Result<Self> {
        let r = &c.rvq;
        let (k, d, cond) = (r.codebook_size, r.codebook_dim, r.cond_dim);
        let mut groups = Vec::new();
        for g in &r.groups {
            let mut table = Vec::with_capacity(g.levels * k * d);
            for q in 0..g.levels {
                table.extend(l.host(&format!("{}.layers.{q}._codebook.embed", g.module), &[1, k, d])?);
            }
            groups.push(Group {
                rows: g.token_rows.clone(),
                table: l.upload(&[g.levels * k, d], &table)?,
                project_w: l.weight(&format!("{}.project_out.weight", g.module), &[cond, d])?,
                project_b: l.weight(&format!("{}.project_out.bias", g.module), &[cond])?,
            });
        }
        Ok(Rvq {
            groups,
            cond_w: l.weight("cond_feature_emb.weight", &[cond, cond])?,
            cond_b: l.weight("cond_feature_emb.bias", &[cond])?,
            codebook_size: k,
            codebook_dim: d,
            cond_dim: cond,
            ones: l.upload(&[cond], &vec![1.0; cond])?,
        })
    }

    /// Checks every id against the codebook size; the error names row and position.
    pub fn check_tokens(&self, tokens: &[Vec<u32>]) -> Result<()> {
        for (row, ids) in tokens.iter().enumerate() {
            if let Some(pos) = ids.iter().position(|&id| id as usize >= self.codebook_size) {
                return Err(CodecError::Tokens(format!(
                    "row {row}, position {pos}: id {} is outside the codebook (0..{})",
                    ids[pos], self.codebook_size
                )));
            }
        }
        Ok(())
    }

    /// Conditioning [T, cond_dim] for one window of token columns (`tokens[row][t]`).
    pub fn cond(&self, b: &B, tokens: &[Vec<u32>]) -> Result<Tensor<B>> {
        let t = tokens.first().map_or(0, |r| r.len());
        let h = b.alloc(DType::F32, &[t, self.cond_dim])?;
        let gathered = b.alloc(DType::F32, &[t, self.codebook_dim])?;
        for (gi, g) in self.groups.iter().enumerate() {
            let levels = g.rows.len();
            // codes[t, q] = tokens[row_q][t]
            let codes: Vec<u32> = (0..t).flat_map(|ti| g.rows.iter().map(move |&r| tokens[r][ti])).collect();
            let codes = ops::upload_u32(b, &[t, levels], &codes)?;
            let mask = ops::upload_u32(b, &[t, levels], &vec![1; t * levels])?;
            ops::embed_codebook_sum(b, &g.table, &codes, &mask, self.codebook_size, &gathered)?;
            // h = P, then h += 1 · S, h += 1 · A: the reference's left-to-right sum.
            let epilogue = if gi == 0 { Epilogue::Store } else { Epilogue::GatedAdd { gate: &self.ones } };
            ops::linear(b, &gathered, &g.project_w, Some(&g.project_b), &h, epilogue)?;
        }
        let out = b.alloc(DType::F32, &[t, self.cond_dim])?;
        ops::linear(b, &h, &self.cond_w, Some(&self.cond_b), &out, Epilogue::Store)?;
        Ok(out)
    }
}
