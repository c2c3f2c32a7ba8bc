// Masked SGD for matrix factorisation, Hogwild style: groups of lanes (part of a subgroup, or a
// whole workgroup without subgroup support) each take one rating at a time and update its user
// and item rows in place, with no locks; in sparse data two groups rarely share a row.
//
// Composed at pipeline creation as: header + group prelude + the loss + the constraints + this
// file + svdpp.wgsl (with the SVD++ term; without, a user_decay toward zero and an add_share
// that does nothing follow). The loss (src/objective.rs) defines loss_slopes(score, label), the
// step's (factor, bias) slopes, loss_terms(score, label), a rating's four sums, judged(score),
// the score evaluation judges, and label_of(value); the constraints constrain(v, threshold) and
// project(v) (L1 shrinkage and non-negative factors, src/update.rs). The header defines the
// uniform's struct Params and
//   Factor  the storage type of four factors, vec4<f32> or vec4<f16> (then `enable f16;`)
//   K4      vec4s per factor row: ceil(rank / 4), the padding lanes stay exactly zero
//   LANES   lanes per group (one rating each): a power of two, at most the subgroup size
//   CHUNKS  vec4s per lane at most: ceil(K4 / LANES)
//   WG      workgroup size
// Lane l of a group owns the vec4s l, l + LANES, l + 2·LANES, ...: consecutive lanes touch
// consecutive 16-byte words, so every row access is one contiguous transaction.
//
// With G groups taking ratings, group g handles ratings g, g + G, g + 2·G, ...: neighbouring
// groups read neighbouring ratings (shuffled once at upload, so independent of each other).
// The loops run over the subgroup's first index, so all lanes of a subgroup (or workgroup)
// take the same iterations and the reductions stay in step; a group whose rating is past the
// end, or which is beyond G, takes part with `live` false.

struct Rating {
    user: u32,
    item: u32,
    value: f32,
}

const UNKNOWN: u32 = 0xffffffffu;

// One window of the problem: a run of ratings whose users and items lie in one block of rows.
// Indices in `ratings` are relative to the blocks bound here.
@group(0) @binding(0) var<storage, read> ratings: array<Rating>;
@group(0) @binding(1) var<storage, read_write> user_factors: array<Factor>;
@group(0) @binding(2) var<storage, read_write> item_factors: array<Factor>;
@group(0) @binding(3) var<storage, read_write> user_bias: array<f32>;
@group(0) @binding(4) var<storage, read_write> item_bias: array<f32>;
@group(0) @binding(5) var<uniform> params: Params;
// Per-workgroup sums of sgd_update and evaluate (the loss, e², |e|, and binary labels whose sign
// the score gets right: src/objective.rs, LossSums), four floats a workgroup, accumulated over
// windows.
@group(0) @binding(6) var<storage, read_write> output: array<f32>;
// Each row's regularisation weight, multiplying λ and λ_bias (frequency-scaled
// regularisation: Params::reg_weights in src/model/mod.rs).
@group(0) @binding(7) var<storage, read> user_reg_weight: array<f32>;
@group(0) @binding(8) var<storage, read> item_reg_weight: array<f32>;

// A group's share of the two rows: lane-owned vec4s, zero where the row has no more.
struct Rows {
    p: array<vec4<f32>, CHUNKS>,
    q: array<vec4<f32>, CHUNKS>,
    dot: f32,
}

fn load_rows(user: u32, item: u32, lane: u32) -> Rows {
    var rows: Rows;
    var partial = 0.0;
    for (var c = 0u; c < CHUNKS; c++) {
        let f = lane + c * LANES;
        if (f < K4) {
            rows.p[c] = vec4<f32>(user_factors[user * K4 + f]);
            rows.q[c] = vec4<f32>(item_factors[item * K4 + f]);
            partial += dot(rows.p[c], rows.q[c]);
        }
    }
    rows.dot = partial;
    return rows;
}

// The model's unclipped score of a rating; cold users or items contribute only what is known.
// Every lane of the subgroup must call it (it reduces across the group), `live` or not.
fn score(r: Rating, live: bool, ids: GroupIds) -> f32 {
    var partial = 0.0;
    if (live && r.user != UNKNOWN && r.item != UNKNOWN) {
        partial = load_rows(r.user, r.item, group_lane(ids)).dot;
    }
    var s = params.mean + group_sum(partial, ids);
    if (live && params.use_biases != 0u) {
        if (r.user != UNKNOWN) { s += user_bias[r.user]; }
        if (r.item != UNKNOWN) { s += item_bias[r.item]; }
    }
    return s;
}

// The rating at i, or an empty one past the end (its group then only joins the reduction).
fn rating_at(i: u32, count: u32) -> Rating {
    if (i < count) {
        return ratings[i];
    }
    return Rating(0u, 0u, 0.0);
}

// Which ratings a group takes in an update pass: g, g + groups, g + 2·groups, ... below count.
// The loop runs over `first`, the subgroup's first group, so that all its lanes take the same
// iterations (a group past `groups` or the end takes part with `live` false).
struct Stride {
    count: u32,
    g: u32,
    groups: u32,
    first: u32,
}

fn update_stride(ids: GroupIds) -> Stride {
    let g = group_id(ids);
    return Stride(arrayLength(&ratings), g, min(group_total(ids), params.max_groups), g - group_offset(ids));
}

// One rating's chain of memory latencies is kept short: the next rating is read while this one
// is worked on, and the biases are read beside the rows, before the reduction. Each rating's
// loss terms, before its update, are added to the workgroup's sums in output: the epoch's
// training loss at no extra pass (see `add_workgroup_sums`).
@compute @workgroup_size(WG)
fn sgd_update(ids: GroupIds) {
    var sums = vec4<f32>(0.0);
    let lane = group_lane(ids);
    let lr = params.learning_rate;
    let biases = params.use_biases != 0u;
    let at = update_stride(ids);
    let count = at.count;
    let g = at.g;
    let groups = at.groups;
    let first = at.first;
    var next = Rating(0u, 0u, 0.0);
    if (g < groups && g < count) {
        next = ratings[g];
    }
    for (var base = first; first < groups && base < count; base += groups) {
        let i = base + group_offset(ids);
        let live = g < groups && i < count;
        let r = next;
        if (live && i + groups < count) {
            next = ratings[i + groups];
        }
        var rows: Rows;
        var bu = 0.0;
        var bi = 0.0;
        var weight_u = 0.0;
        var weight_i = 0.0;
        if (live) {
            rows = load_rows(r.user, r.item, lane);
            weight_u = user_reg_weight[r.user];
            weight_i = item_reg_weight[r.item];
            if (biases) {
                bu = user_bias[r.user];
                bi = item_bias[r.item];
            }
        }
        let score = params.mean + bu + bi + group_sum(rows.dot, ids);
        if (!live) {
            continue;
        }
        let label = label_of(r.value);
        let slopes = loss_slopes(score, label);
        if (lane == 0u) {
            sums += loss_terms(score, label);
        }
        // The steps in src/update.rs's fused form (step_factors there says why the pull is
        // written so): p ← lr·g·q + (p + lr·λ_u·(z − p)), q ← lr·g·p + (1 − lr·λ_i)·q.
        let lr_slope = vec4<f32>(lr * slopes.x);
        let pull_u = lr * (weight_u * params.reg);
        let pull_i = lr * (weight_i * params.reg);
        let keep_i = 1.0 - pull_i;
        let cut_u = lr * weight_u * params.l1;
        let cut_i = lr * weight_i * params.l1;
        for (var c = 0u; c < CHUNKS; c++) {
            let f = lane + c * LANES;
            if (f < K4) {
                let p = rows.p[c];
                let q = rows.q[c];
                let decayed = user_decay(r.user * K4 + f, p, pull_u);
                user_factors[r.user * K4 + f] = Factor(constrain(fma(lr_slope, q, decayed), cut_u));
                add_share(r.user * K4 + f, slopes.x, q);
                item_factors[r.item * K4 + f] = Factor(constrain(fma(lr_slope, p, keep_i * q), cut_i));
            }
        }
        if (biases && lane == 0u) {
            user_bias[r.user] = bu + lr * (slopes.y - weight_u * params.reg_bias * bu);
            item_bias[r.item] = bi + lr * (slopes.y - weight_i * params.reg_bias * bi);
        }
    }
    add_workgroup_sums(sums, ids);
}

var<workgroup> error_scratch: array<vec4<f32>, WG>;

// The sum of `x` over the workgroup's threads (a shared-memory tree); every thread must call it.
fn workgroup_total(x: vec4<f32>, local: u32) -> vec4<f32> {
    error_scratch[local] = x;
    workgroupBarrier();
    for (var stride = WG / 2u; stride > 0u; stride = stride / 2u) {
        if (local < stride) {
            error_scratch[local] += error_scratch[local + stride];
        }
        workgroupBarrier();
    }
    let total = error_scratch[0];
    workgroupBarrier();
    return total;
}

// Adds the lanes' sums of the workgroup into output[4·workgroup ..], accumulated over windows.
fn add_workgroup_sums(sums: vec4<f32>, ids: GroupIds) {
    let total = workgroup_total(sums, ids.local);
    if (ids.local == 0u) {
        let w = 4u * ids.workgroup.x;
        output[w] += total.x;
        output[w + 1u] += total.y;
        output[w + 2u] += total.z;
        output[w + 3u] += total.w;
    }
}

// Adds this window's loss sums at the judged scores (real values clipped to the training range)
// into output[4·workgroup ..].
@compute @workgroup_size(WG)
fn evaluate(ids: GroupIds) {
    var sums = vec4<f32>(0.0);
    let count = arrayLength(&ratings);
    let groups = group_total(ids);
    for (var base = group_id(ids) - group_offset(ids); base < count; base += groups) {
        let i = base + group_offset(ids);
        let r = rating_at(i, count);
        let s = judged(score(r, i < count, ids));
        if (i < count && group_lane(ids) == 0u) {
            sums += loss_terms(s, label_of(r.value));
        }
    }
    add_workgroup_sums(sums, ids);
}

// Reduces the per-workgroup sums of `evaluate` into output[0..4]; one workgroup.
@compute @workgroup_size(WG)
fn finish_evaluate(@builtin(local_invocation_index) local: u32) {
    let sets = arrayLength(&output) / 4u;
    var sums = vec4<f32>(0.0);
    for (var w = local; w < sets; w += WG) {
        sums += vec4<f32>(output[4u * w], output[4u * w + 1u], output[4u * w + 2u], output[4u * w + 3u]);
    }
    let total = workgroup_total(sums, local);
    if (local == 0u) {
        output[0] = total.x;
        output[1] = total.y;
        output[2] = total.z;
        output[3] = total.w;
    }
}
