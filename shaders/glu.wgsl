//! The feed-forward's gated activation, act(gate) * up, composed after `const GELU: bool = ...;`
//! (kernels::GatedAct): SwiGLU's silu(g) = g / (1 + e^-g), or GeGLU's gelu (Gemma) in the tanh
//! form ggml computes, 0.5 g (1 + tanh(sqrt(2 / pi) (g + 0.044715 g^3))), which is g from 10 up and
//! 0 from -10 down as ggml has it (tanh's argument kept finite: some GPUs' tanh is NaN past it).

fn act_mul(g: f32, u: f32) -> f32 {
    if (GELU) {
        if (g >= 10.0) {
            return g * u;
        }
        if (g <= -10.0) {
            return 0.0;
        }
        return 0.5 * g * (1.0 + tanh(0.7978845608 * (g + 0.044715 * g * g * g))) * u;
    }
    return g / (1.0 + exp(-g)) * u;
}
