//! attention.wgsl's sum of the scores over the D_SPLIT lanes that share a key, through the
//! subgroup (a butterfly of xor shuffles within aligned clusters of D_SPLIT lanes; every lane ends
//! with the sum). Called in uniform control flow.

fn lane_sums(lid: u32) {
    for (var r = 0u; r < ROWS; r++) {
        var x = scores[r];
        for (var o = 1u; o < D_SPLIT; o <<= 1u) {
            x += subgroupShuffleXor(x, o);
        }
        scores[r] = x;
    }
}
