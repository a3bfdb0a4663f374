// The entry point of a kernel with one thread per output element. The launch grid is
// rows of `p.groups_x` workgroups of WG threads (as `GpuBackend::elementwise_grid` lays
// it out, since one grid dimension may be too short); the including kernel defines
// `elements()`, the number of output elements, and `element(idx)`, which writes one.

override WG: u32;

@compute @workgroup_size(WG, 1, 1)
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
    let idx = gid.y * (p.groups_x * WG) + gid.x;
    if (idx < elements()) {
        element(idx);
    }
}
