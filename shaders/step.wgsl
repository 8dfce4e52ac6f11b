//! The per-step uniform (kernels::Step, 32 bytes) that every position-dependent kernel reads: one
//! token (decode), a prompt chunk (rows at pos, pos + 1, ...) or n candidates (every row at pos).
//! gpu/compose.rs puts it before each part that binds `step`.

struct Step {
    pos: u32,        // position of row 0
    kv_len: u32,     // positions in the KV cache including row 0's (pos + 1)
    n_rows: u32,     // rows in this batch (tokens or candidates); grid rows past it do nothing
    pos_step: u32,   // 1: row r is at pos + r; 0: every row at pos (candidates)
    branch: u32,     // 1: positions >= prefix_len come from each row's branch cache
    prefix_len: u32,
    _a: u32,
    _b: u32,
}

