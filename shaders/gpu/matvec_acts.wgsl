//! matvec.wgsl's activations as stored: the quant files' block_dot and the row walk read x as it is.

fn act4(i: u32) -> vec4<f32> {
    return x4(i);
}
fn raw4(i: u32) -> vec4<f32> {
    return x4(i);
}
fn act_of(v: vec4<f32>, i: u32) -> vec4<f32> {
    return v;
}
fn prepare_acts(lid: u32) {}
