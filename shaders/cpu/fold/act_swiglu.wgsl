//! matvec_wide's rows dotted with silu(gate) * up, x = [gate | up] (up at element p.up_offset):
//! swiglu folded into the down projection (with subgroup activations each lane computes 4 values
//! per block and broadcasts them).

fn act_init(lid: u32) {}

fn act4(i: u32) -> vec4<f32> {
    let gate = x4(i);
    return gate / (vec4<f32>(1.0) + exp(-gate)) * x4(p.up_offset + i);
}
