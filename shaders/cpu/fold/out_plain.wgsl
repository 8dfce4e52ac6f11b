//! matvec_wide's results stored: rows row0 .. row0 + 3 (those past the last are computed again,
//! not stored).

fn finish4(row0: u32, v: vec4<f32>) {
    for (var k = 0u; k < 4u; k++) {
        if (row0 + k < p.rows) {
            _ = store(row0 + k, v[k]);
        }
    }
}
