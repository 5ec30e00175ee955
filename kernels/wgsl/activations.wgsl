// Activation functions shared by kernels with an epilogue (f32, as torch computes them).
//   0 identity, 1 tanh-GELU, 2 SiLU, 3 round-half-even(levels * y) / levels,
//   4 erf-GELU, 5 ReLU
fn gelu_tanh(x: f32) -> f32 {
    // 0.5 * x * (1 + tanh(sqrt(2/pi) * (x + 0.044715 x^3)))
    let inner = 0.7978845608028654 * (x + 0.044715 * x * x * x);
    return 0.5 * x * (1.0 + tanh(inner));
}

// erf in f32 (WGSL has none), by the method of fdlibm's s_erff.c, whose minimax
// coefficients these are (Copyright (C) 1993 Sun Microsystems, Inc.; freely
// distributable with this notice): erf(x) = x + x * P(x^2) / Q(x^2) below 0.84375;
// erx + P(|x| - 1) / Q(|x| - 1) below 1.25; 1 - erfc(|x|) below 6 with
// erfc(a) = exp(-z^2 - 0.5625) * exp((z - a)(z + a) + R(1/a^2) / S(1/a^2)) / a, z = a
// with its low 13 bits cleared (so z^2 is exact); +-1 beyond.
fn erf_f32(x: f32) -> f32 {
    let a = abs(x);
    if a < 0.84375 {
        let z = x * x;
        let r = 1.2837916613e-01 + z * (-3.2504209876e-01 + z * (-2.8481749818e-02 + z * (-5.7702702470e-03 + z * -2.3763017452e-05)));
        let s = 1.0 + z * (3.9791721106e-01 + z * (6.5022252500e-02 + z * (5.0813062117e-03 + z * (1.3249473704e-04 + z * -3.9602282413e-06))));
        return x + x * (r / s);
    }
    var y = 1.0;
    if a < 1.25 {
        let s = a - 1.0;
        let pn = -2.3621185683e-03 + s * (4.1485610604e-01 + s * (-3.7220788002e-01 + s * (3.1834661961e-01 + s * (-1.1089469492e-01 + s * (3.5478305072e-02 + s * -2.1663755178e-03)))));
        let qd = 1.0 + s * (1.0642088205e-01 + s * (5.4039794207e-01 + s * (7.1828655899e-02 + s * (1.2617121637e-01 + s * (1.3637083583e-02 + s * 1.1984500103e-02)))));
        y = 8.4506291151e-01 + pn / qd;
    } else if a < 6.0 {
        let s = 1.0 / (a * a);
        var r: f32;
        var q: f32;
        if a < 2.857142857 {
            r = -9.8649440333e-03 + s * (-6.9385856390e-01 + s * (-1.0558626175e+01 + s * (-6.2375331879e+01 + s * (-1.6239666748e+02 + s * (-1.8460508728e+02 + s * (-8.1287437439e+01 + s * -9.8143291473e+00))))));
            q = 1.0 + s * (1.9651271820e+01 + s * (1.3765776062e+02 + s * (4.3456588745e+02 + s * (6.4538726807e+02 + s * (4.2900814819e+02 + s * (1.0863500214e+02 + s * (6.5702495575e+00 + s * -6.0424413532e-02)))))));
        } else {
            r = -9.8649431020e-03 + s * (-7.9928326607e-01 + s * (-1.7757955551e+01 + s * (-1.6063638306e+02 + s * (-6.3756646729e+02 + s * (-1.0250950928e+03 + s * -4.8351919556e+02)))));
            q = 1.0 + s * (3.0338060379e+01 + s * (3.2579251099e+02 + s * (1.5367296143e+03 + s * (3.1998581543e+03 + s * (2.5530502930e+03 + s * (4.7452853394e+02 + s * -2.2440952301e+01))))));
        }
        let z = bitcast<f32>(bitcast<u32>(a) & 0xffffe000u);
        y = 1.0 - exp(-z * z - 0.5625) * exp((z - a) * (z + a) + r / q) / a;
    } else if !(a >= 6.0) {
        return x; // NaN
    }
    return select(y, -y, x < 0.0);
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
        case 4u: {
            // torch: x * 0.5 * (1 + erf(x * M_SQRT1_2))
            return y * 0.5 * (1.0 + erf_f32(y * 0.7071067811865476));
        }
        case 5u: {
            return max(y, 0.0);
        }
        default: {
            return y;
        }
    }
}
