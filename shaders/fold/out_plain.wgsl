//! matvec_wide's results stored (rows past the last are computed again, not stored).

fn finish(row: u32, v: f32) {
    if (row < p.rows) {
        _ = store(row, v);
    }
}
