//! The GPU: the device (device.rs: adapter, buffers, readback; no policy), the Layout chosen for it
//! once (layout.rs), and WGSL composition (compose.rs).

pub mod compose;
pub mod device;
pub mod layout;

pub use device::Gpu;
pub use layout::{Family, Layout, Overrides};
