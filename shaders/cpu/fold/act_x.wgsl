//! matvec_wide's rows dotted with x as stored.

fn act_init(lid: u32) {}

fn act4(i: u32) -> vec4<f32> {
    return x4(i);
}
