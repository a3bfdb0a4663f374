// Sum and max of one f32 per thread over a 1-D workgroup of WG threads (the including
// kernel declares `override WG`, a power of two), every thread getting the result.
// Each call is a barrier: call it from uniform control flow.
//
// With SUBGROUPS: one subgroupAdd / subgroupMax per subgroup and one workgroup-memory
// round for the subgroups' partials, instead of log2(WG) barrier rounds. Used where the
// device has the SUBGROUP feature.
//
// The kernel's entry point takes an `Invocation`, the builtins the reductions need.
// (Not `workgroup_id`: a struct argument counts as non-uniform as a whole, and kernels
// branch on the workgroup id before calling a reduction.)

struct Invocation {
    @builtin(local_invocation_index) tid: u32,
//#if SUBGROUPS
    @builtin(subgroup_invocation_id) lane: u32,
    @builtin(subgroup_size) size: u32,
//#endif
}

// One slot per thread, or per subgroup (a subgroup has at least one lane).
var<workgroup> red: array<f32, WG>;

const SUM: u32 = 0u;
const MAX: u32 = 1u;

fn combine(a: f32, b: f32, op: u32) -> f32 {
    return select(a + b, max(a, b), op == MAX);
}

//#if SUBGROUPS
fn workgroup_sum(inv: Invocation, x: f32) -> f32 {
    return across_subgroups(inv, subgroupAdd(x), SUM);
}

fn workgroup_max(inv: Invocation, x: f32) -> f32 {
    return across_subgroups(inv, subgroupMax(x), MAX);
}

// Subgroups of a 1-D workgroup are runs of consecutive invocations on every
// implementation, so subgroup g holds invocations g * size .. (g + 1) * size.
fn across_subgroups(inv: Invocation, partial: f32, op: u32) -> f32 {
    if (inv.lane == 0u) {
        red[inv.tid / inv.size] = partial;
    }
    workgroupBarrier();
    var r = red[0];
    for (var g = 1u; g < (WG + inv.size - 1u) / inv.size; g++) {
        r = combine(r, red[g], op);
    }
    workgroupBarrier(); // everyone has read the partials before they are reused
    return r;
}
//#else
fn workgroup_sum(inv: Invocation, x: f32) -> f32 {
    return tree(inv, x, SUM);
}

fn workgroup_max(inv: Invocation, x: f32) -> f32 {
    return tree(inv, x, MAX);
}

// Halve the live slots each round until slot 0 holds the whole.
fn tree(inv: Invocation, x: f32, op: u32) -> f32 {
    red[inv.tid] = x;
    workgroupBarrier();
    for (var s = WG / 2u; s > 0u; s >>= 1u) {
        if (inv.tid < s) {
            red[inv.tid] = combine(red[inv.tid], red[inv.tid + s], op);
        }
        workgroupBarrier();
    }
    let r = red[0];
    workgroupBarrier(); // everyone has read red[0] before it is reused
    return r;
}
//#endif
