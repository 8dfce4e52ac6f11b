//! attention_prompt_lanes: a prompt chunk's attention on CPU adapters with subgroups, composed after
//! attention_params.wgsl and attention_rowwise.wgsl (its bindings and softmax_step; ROPE false:
//! rope.wgsl has rotated q and k), `const HD4: u32 = ...;` (head_dim / 4) and `const LANES: u32 =
//! ...;` (Layout::act_lanes: 8 on lavapipe, 4 on SwiftShader). A workgroup of LANES lanes per LANES
//! consecutive rows and one query head: at each position every lane needs the same key and value,
//! so lane i loads vectors i, i + LANES, ... of them and the subgroup broadcasts (on lavapipe a
//! storage load is a loop over the lanes, so 8 lanes loading one address cost as much as 8
//! addresses). A position past a lane's own row gets weight 0. Positions before
//! the chunk come from the cache, the chunk's own from qkv. The walks replace `//@walk_cache` and
//! `//@walk_own`: written out by kernels::attention with a named value per query, key, value and
//! accumulator vector (a private array indexed at run time is memory on lavapipe). Grid:
//! [ceil(rows / LANES), n_heads, 1]. Needs uniform control flow around the walks (subgroupBroadcast).

@compute @workgroup_size(LANES)
fn prompt_lanes(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lane: u32) {
    let h = wid.y;
    let r0 = wid.x * LANES;
    if (r0 >= step.n_rows) {
        return; // the whole workgroup
    }
    let r = r0 + lane;
    let row = min(r, step.n_rows - 1u); // lanes past the chunk repeat its last row, unstored
    let pos_r = step.pos + row;
    let last = step.pos + min(r0 + LANES - 1u, step.n_rows - 1u); // the workgroup's last position
    let kv4 = p.kv_dim / 4u;
    let stride4 = p.qkv_stride / 4u;
    let group = p.n_heads / p.n_kv_heads;
    let kv_off4 = (h / group) * HD4;
    let own_k = p.n_heads * HD4 + kv_off4; // this head's key in a qkv row, in vec4 (its value kv4 on)
    if (h % group == 0u && r < step.n_rows) {
        let dst = pos_r * kv4 + kv_off4;
        let src = row * stride4 + own_k;
        for (var i = 0u; i < HD4; i++) {
            k_cache[dst + i] = qkv[src + i];
            v_cache[dst + i] = qkv[src + kv4 + i];
        }
    }
    let qa = row * stride4 + h * HD4;
    var m = -3.4e38;
    var l = 0.0;
    //@walk_cache
    //@walk_own
    if (r < step.n_rows) {
        let o = (row * p.n_heads + h) * HD4;
        //@store
    }
}
