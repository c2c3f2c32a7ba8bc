// Group = LANES lanes of one subgroup: a subgroup of width w handles w / LANES ratings at once,
// so small ranks do not leave most lanes idle. The dot product is reduced within each group of
// LANES lanes by a butterfly of subgroupShuffleXor, or by subgroupAdd when a group is the whole
// subgroup. Prepended to sgd.wgsl when the adapter has Features::SUBGROUP.
//
// Every lane of a subgroup runs the same loop iterations (see the loops in sgd.wgsl), so the
// shuffles always see the whole subgroup; a group with no rating left sits out an iteration.

struct GroupIds {
    @builtin(workgroup_id) workgroup: vec3<u32>,
    @builtin(num_workgroups) workgroups: vec3<u32>,
    @builtin(local_invocation_index) local: u32,
    @builtin(subgroup_invocation_id) lane: u32,
    @builtin(subgroup_size) width: u32,
    @builtin(subgroup_id) subgroup: u32,
    @builtin(num_subgroups) subgroups: u32,
}

// This group's index among all groups of the dispatch; the groups of a subgroup are consecutive.
fn group_id(ids: GroupIds) -> u32 {
    return (ids.workgroup.x * ids.subgroups + ids.subgroup) * (ids.width / LANES) + ids.lane / LANES;
}
// Groups in the dispatch.
fn group_total(ids: GroupIds) -> u32 { return ids.workgroups.x * ids.subgroups * (ids.width / LANES); }
// This group's position within its subgroup.
fn group_offset(ids: GroupIds) -> u32 { return ids.lane / LANES; }
fn group_lane(ids: GroupIds) -> u32 { return ids.lane % LANES; }

fn group_sum(x: f32, ids: GroupIds) -> f32 {
    if (LANES >= ids.width) {
        return subgroupAdd(x);
    }
    var s = x;
    for (var mask = LANES / 2u; mask > 0u; mask = mask / 2u) {
        s += subgroupShuffleXor(s, mask);
    }
    return s;
}
