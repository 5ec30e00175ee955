//! Embedding gathers: text rows, and the masked sum of 8 codebook rows per audio frame.

use rayon::prelude::*;

use super::view::WeightSlice;
use crate::{Error, Result};

/// out[n] = table[ids[n]]; table [V, C].
pub fn rows(table: WeightSlice, ids: &[u32], out: &mut [f32]) -> Result<()> {
    if ids.is_empty() {
        return Ok(());
    }
    let cols = out.len() / ids.len();
    let vocab = table.len().checked_div(cols).unwrap_or(0);
    if let Some((n, &id)) = ids.iter().enumerate().find(|(_, &id)| id as usize >= vocab) {
        return Err(Error::invalid("embed_rows", format!("id {id} at row {n} is outside the table of {vocab} rows")));
    }
    out.par_chunks_mut(cols.max(1)).zip(ids.par_iter()).for_each(|(out, &id)| {
        table.widen_into(id as usize * cols, out);
    });
    Ok(())
}

/// out[n] = Σ_k mask[n, k] ? table[k·card + codes[n, k]] : 0, accumulated in k order.
/// codes, mask [N, K]; table [K·card, C]; out [N, C].
pub fn codebook_sum(table: WeightSlice, codes: &[u32], mask: &[u32], card: usize, codebooks: usize, out: &mut [f32]) -> Result<()> {
    if codes.is_empty() || codebooks == 0 {
        return Ok(());
    }
    let frames = codes.len() / codebooks;
    let cols = out.len() / frames;
    for (i, (&c, &m)) in codes.iter().zip(mask).enumerate() {
        if m != 0 && c as usize >= card {
            let (n, k) = (i / codebooks, i % codebooks);
            return Err(Error::invalid("embed_codebook_sum", format!("code {c} of codebook {k} in frame {n} is outside the codebook of {card} entries")));
        }
    }
    out.par_chunks_mut(cols.max(1)).enumerate().for_each_init(
        || vec![0f32; cols],
        |row, (n, out)| {
            out.fill(0.0);
            for k in 0..codebooks {
                let i = n * codebooks + k;
                if mask[i] != 0 {
                    table.widen_into((k * card + codes[i] as usize) * cols, row);
                    for (o, r) in out.iter_mut().zip(row.iter()) {
                        *o += r;
                    }
                }
            }
        },
    );
    Ok(())
}
