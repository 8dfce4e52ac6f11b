//! attention_lanes' walk over the cache positions for any group size and head width (composed in
//! place of its `//@positions` line): q, acc, m and l indexed at run time, which lavapipe keeps in
//! memory. gpu/compose.rs writes the walk out with named values instead where group * head_dim / 4 <= 64.
    var cp: array<vec2<f32>, GROUP>; // per query head: (correction of the old sums, this key's weight)
    for (var j = lane; j < pos; j += 8u) {
        for (var i = 0u; i < hd4; i++) {
            k[i] = cached_k(j, kv_off4 + i);
        }
        for (var h = 0u; h < group; h++) {
            var s = 0.0;
            for (var i = 0u; i < hd4; i++) {
                s += dot(q[h * hd4 + i], k[i]);
            }
            var mh = m[h]; // (naga 30 panics on a pointer to the array element itself)
            var lh = l[h];
            cp[h] = softmax_step(&mh, &lh, s);
            m[h] = mh;
            l[h] = lh;
        }
        for (var i = 0u; i < hd4; i++) {
            let v = cached_v(j, kv_off4 + i);
            for (var h = 0u; h < group; h++) {
                acc[h * hd4 + i] = acc[h * hd4 + i] * cp[h].x + cp[h].y * v;
            }
        }
    }
