// Group = one subgroup: each subgroup handles one rating and subgroupAdd forms the dot product.
// Prepended to sgd.wgsl when the adapter has Features::SUBGROUP.

struct GroupIds {
    @builtin(workgroup_id) workgroup: vec3<u32>,
    @builtin(num_workgroups) workgroups: vec3<u32>,
    @builtin(local_invocation_index) local: u32,
    @builtin(subgroup_invocation_id) lane: u32,
    @builtin(subgroup_size) width: u32,
    @builtin(subgroup_id) subgroup: u32,
    @builtin(num_subgroups) subgroups: u32,
}

fn group_index(ids: GroupIds) -> u32 { return ids.workgroup.x * ids.subgroups + ids.subgroup; }
fn group_count(ids: GroupIds) -> u32 { return ids.workgroups.x * ids.subgroups; }
fn group_lane(ids: GroupIds) -> u32 { return ids.lane; }
fn group_width(ids: GroupIds) -> u32 { return ids.width; }
fn group_sum(x: f32, ids: GroupIds) -> f32 { return subgroupAdd(x); }
