//! Rotate-half RoPE from a cos/sin table (see `Op::Rope`).

use rayon::prelude::*;

use crate::{Error, Result};

/// x, out [T, H, D]; positions [T]; table [P, D].
pub fn rope(x: &[f32], heads: usize, positions: &[u32], table: &[f32], out: &mut [f32]) -> Result<()> {
    let t = positions.len();
    if t == 0 || heads == 0 {
        return Ok(());
    }
    let d = x.len() / (t * heads);
    let half = d / 2;
    let rows = table.len().checked_div(d).unwrap_or(0);
    if let Some((i, &p)) = positions.iter().enumerate().find(|(_, &p)| p as usize >= rows) {
        return Err(Error::invalid("rope", format!("position {p} of row {i} is outside the table of {rows} positions")));
    }
    let row = heads * d;
    out.par_chunks_mut(row).zip(x.par_chunks(row)).zip(positions.par_iter()).for_each(|((out, x), &p)| {
        let (cos, sin) = table[p as usize * d..(p as usize + 1) * d].split_at(half);
        for (out, x) in out.chunks_mut(d).zip(x.chunks(d)) {
            for j in 0..half {
                let (a, b) = (x[j], x[j + half]);
                out[j] = a * cos[j] - b * sin[j];
                out[j + half] = b * cos[j] + a * sin[j];
            }
        }
    });
    Ok(())
}
