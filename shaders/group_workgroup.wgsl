// Group = one workgroup: each workgroup handles one rating (LANES = WG) and a shared-memory
// tree reduction forms the dot product. Prepended to sgd.wgsl when the adapter lacks subgroups.

struct GroupIds {
    @builtin(workgroup_id) workgroup: vec3<u32>,
    @builtin(num_workgroups) workgroups: vec3<u32>,
    @builtin(local_invocation_index) local: u32,
}

var<workgroup> group_scratch: array<f32, WG>;

fn group_id(ids: GroupIds) -> u32 { return ids.workgroup.x; }
fn group_total(ids: GroupIds) -> u32 { return ids.workgroups.x; }
fn group_offset(ids: GroupIds) -> u32 { return 0u; }
fn group_lane(ids: GroupIds) -> u32 { return ids.local; }

fn group_sum(x: f32, ids: GroupIds) -> f32 {
    group_scratch[ids.local] = x;
    workgroupBarrier();
    for (var stride = WG / 2u; stride > 0u; stride = stride / 2u) {
        if (ids.local < stride) {
            group_scratch[ids.local] += group_scratch[ids.local + stride];
        }
        workgroupBarrier();
    }
    let total = group_scratch[0];
    workgroupBarrier();
    return total;
}
