//! NaN and infinity told by their bits, for the kernels that pass them over (argmax, sample,
//! moe_route): compilers that assume no NaN or infinity (Metal's fast math, on by default there)
//! may fold `v == v` and `abs(v) <= 3.4e38` to true.

// Whether v is a number (not NaN; infinities are numbers).
fn not_nan(v: f32) -> bool {
    return (bitcast<u32>(v) & 0x7fffffffu) <= 0x7f800000u;
}

// Whether v is neither NaN nor infinite.
fn finite(v: f32) -> bool {
    return (bitcast<u32>(v) & 0x7f800000u) != 0x7f800000u;
}
