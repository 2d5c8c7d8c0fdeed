// The step uniform (src/gpu/plan.ts STEP_BINDING), prepended to every kernel that reads the position.
struct Step {
  p0: u32,
  _s0: u32,
  _s1: u32,
  _s2: u32,
}
@group(0) @binding(15) var<uniform> S: Step;
