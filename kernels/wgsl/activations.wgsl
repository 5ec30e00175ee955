// Activation functions shared by kernels with an epilogue (f32, as torch computes them).
//   0 identity, 1 tanh-GELU, 2 SiLU, 3 round-half-even(levels * y) / levels
fn gelu_tanh(x: f32) -> f32 {
    // 0.5 * x * (1 + tanh(sqrt(2/pi) * (x + 0.044715 x^3)))
    let inner = 0.7978845608028654 * (x + 0.044715 * x * x * x);
    return 0.5 * x * (1.0 + tanh(inner));
}

fn activate(y: f32, act: u32, levels: f32) -> f32 {
    switch act {
        case 1u: {
            return gelu_tanh(y);
        }
        case 2u: {
            return y / (1.0 + exp(-y));
        }
        case 3u: {
            // WGSL round() is half-to-even, as torch.round.
            return round(levels * y) / levels;
        }
        default: {
            return y;
        }
    }
}
