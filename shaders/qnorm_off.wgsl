// qnorm.wgsl's hooks for a matvec without a norm in front: nothing loaded, nothing scaled (× 1 is exact, so the
// sums keep the bits of a kernel without hooks).

fn norm_load_gain(c: u32) {}

fn norm_gain_x() -> f32 { return 0.0; }

fn norm_factor(ss: f32, lane: u32, slot: u32) -> f32 { return 1.0; }
