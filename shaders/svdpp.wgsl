// The SVD++ term (src/svdpp/), appended to sgd.wgsl when training with it: sgd_update
// pulls each user row toward its prior z (user_decay) and adds ε·q to the user's share
// (add_share, in the epochs that gather); before an epoch these passes move the items'
// vectors y by their users' shares and recompute z, moving the user rows with it. The header
// defines ITEM_STEP, ITEM_REG and CURVATURE beside K4.
//
// The passes give a thread one vec4 of a row in a grid-stride loop, so nothing is reduced
// across threads but the one mean, in one workgroup (workgroup_total, sgd.wgsl's).

// Bound beside the user block in every window.
@group(0) @binding(9) var<storage, read_write> prior: array<Factor>;
@group(0) @binding(10) var<storage, read_write> share: array<vec4<f32>>;
// The passes': each user's items, user u's at user_start[u] .. user_start[u + 1], and each
// item's users, item j's at item_start[j] .. item_start[j + 1].
@group(0) @binding(11) var<storage, read> user_start: array<u32>;
@group(0) @binding(12) var<storage, read> user_items: array<u32>;
@group(0) @binding(13) var<storage, read> item_start: array<u32>;
@group(0) @binding(14) var<storage, read> item_users: array<u32>;
// Σ |N(u)| over each item's users (src/svdpp/mod.rs, Reach).
@group(0) @binding(15) var<storage, read> item_reach: array<f32>;
// The ratings' mean |q_i|² in rating units, one float.
@group(0) @binding(16) var<storage, read_write> mean_norm: array<f32>;
// y, K4 vec4s an item.
@group(0) @binding(17) var<storage, read_write> item_vectors: array<vec4<f32>>;
// Each item's users in runs of at most a few hundred (so no thread sums a popular item's users
// alone): run r is item_users[run_start[r] .. run_start[r + 1]], item j's runs are
// item_runs[j] .. item_runs[j + 1], and run_sums holds each run's Σ |N(u)|^-½ share_u.
@group(0) @binding(18) var<storage, read> run_start: array<u32>;
@group(0) @binding(19) var<storage, read> item_runs: array<u32>;
@group(0) @binding(20) var<storage, read_write> run_sums: array<vec4<f32>>;

const SVDPP_WG: u32 = 64u;

// The user row p's decay, p + pull·(z − p): toward its prior z, as src/update.rs's
// step_factors writes it.
fn user_decay(index: u32, p: vec4<f32>, pull: f32) -> vec4<f32> {
    return fma(vec4<f32>(pull), vec4<f32>(prior[index]) - p, p);
}

// ε·q times the epoch's share weight; nothing read or written where that is 0 (the epochs
// before the last ahead of the passes: src/svdpp/mod.rs, share_weight).
fn add_share(index: u32, slope: f32, q: vec4<f32>) {
    if (params.share_weight != 0.0) {
        share[index] += (slope * params.share_weight) * q;
    }
}

// A term of the passes' sums rounded to the nearest bfloat16 (ties to even): y for the users'
// sums, each user's part for y's gradient, as the CPU's passes read them (src/svdpp/rounded.rs,
// RoundedRows).
fn round_to_bf16(v: vec4<f32>) -> vec4<f32> {
    let bits = bitcast<vec4<u32>>(v);
    let even = (bits >> vec4<u32>(16u)) & vec4<u32>(1u);
    return bitcast<vec4<f32>>((bits + vec4<u32>(0x7FFFu) + even) & vec4<u32>(0xFFFF0000u));
}

fn inverse_sqrt_count(u: u32) -> f32 {
    return 1.0 / sqrt(f32(user_start[u + 1u] - user_start[u]));
}

// mean_norm[0] = Σ_j n_j |q_j|² / Σ_j n_j, in rating units; one workgroup.
@compute @workgroup_size(WG)
fn svdpp_mean_norm(@builtin(local_invocation_index) local: u32) {
    let items = arrayLength(&item_start) - 1u;
    var sum = 0.0;
    for (var j = local; j < items; j += WG) {
        var s = 0.0;
        for (var f = 0u; f < K4; f++) {
            let q = vec4<f32>(item_factors[j * K4 + f]);
            s += dot(q, q);
        }
        sum += f32(item_start[j + 1u] - item_start[j]) * s;
    }
    let total = workgroup_total(vec4<f32>(sum, 0.0, 0.0, 0.0), local);
    if (local == 0u) {
        mean_norm[0] = total.x / max(f32(item_start[items]), 1.0) * params.error_scale * params.error_scale;
    }
}

// Each run's Σ |N(u)|^-½ share_u, each term rounded to bfloat16 as the CPU rounds it, a
// thread per (run, vec4); svdpp_items adds an item's runs.
@compute @workgroup_size(SVDPP_WG)
fn svdpp_item_runs(@builtin(global_invocation_id) id: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>) {
    let runs = arrayLength(&run_start) - 1u;
    for (var x = id.x; x < runs * K4; x += groups.x * SVDPP_WG) {
        let r = x / K4;
        var sum = vec4<f32>(0.0);
        for (var t = run_start[r]; t < run_start[r + 1u]; t++) {
            let u = item_users[t];
            sum += round_to_bf16(inverse_sqrt_count(u) * share[u * K4 + x % K4]);
        }
        run_sums[x] = sum;
    }
}

// y_j's step, as item_step in src/svdpp/mod.rs.
@compute @workgroup_size(SVDPP_WG)
fn svdpp_items(@builtin(global_invocation_id) id: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>) {
    let items = arrayLength(&item_runs) - 1u;
    for (var x = id.x; x < items * K4; x += groups.x * SVDPP_WG) {
        let j = x / K4;
        var gradient = vec4<f32>(0.0);
        for (var r = item_runs[j]; r < item_runs[j + 1u]; r++) {
            gradient += run_sums[r * K4 + x % K4];
        }
        let reach = item_reach[j];
        let decay = params.reg * item_reg_weight[j] * ITEM_REG * reach;
        let y = item_vectors[x];
        item_vectors[x] = y + (gradient - decay * y) / (1.0 / (ITEM_STEP * params.learning_rate) + CURVATURE * mean_norm[0] * reach + decay);
    }
}

// z afresh, w moved by its change, and the share cleared for the next epoch.
@compute @workgroup_size(SVDPP_WG)
fn svdpp_users(@builtin(global_invocation_id) id: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>) {
    let users = arrayLength(&user_start) - 1u;
    for (var x = id.x; x < users * K4; x += groups.x * SVDPP_WG) {
        let u = x / K4;
        let first = user_start[u];
        let end = user_start[u + 1u];
        var sum = vec4<f32>(0.0);
        for (var t = first; t < end; t++) {
            sum += round_to_bf16(item_vectors[user_items[t] * K4 + x % K4]);
        }
        var fresh = vec4<f32>(0.0);
        if (end > first) {
            fresh = inverse_sqrt_count(u) * sum;
        }
        let old = vec4<f32>(prior[x]);
        user_factors[x] = Factor(project(vec4<f32>(user_factors[x]) + fresh - old));
        prior[x] = Factor(fresh);
        share[x] = vec4<f32>(0.0);
    }
}
