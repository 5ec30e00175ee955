// The PTX f16 -> f32 conversion of common.cuh, in software (normal, subnormal, inf/nan).
#pragma once

inline float widen(f16_t v) {
    unsigned s = (v.bits >> 15) & 1, e = (v.bits >> 10) & 31, m = v.bits & 1023;
    float f = e == 0 ? std::ldexp((float)m, -24) : e == 31 ? (m ? NAN : INFINITY) : std::ldexp((float)(m | 1024), (int)e - 25);
    return s ? -f : f;
}
