// Implicit feedback (src/implicit.rs), appended to sgd.wgsl when training with it: each user
// row is pulled toward its prior z (sgd_update reads it through user_prior), and after each
// epoch these passes move the items' vectors y by the epoch's gradient and recompute z, moving
// the user rows with it. The header defines ITEM_STEP and CURVATURE beside K4.
//
// Each pass gives a thread one element (an item, a rating, or one vec4 of a row) in a
// grid-stride loop: nothing is reduced across threads, so no barriers. The ratings binding holds
// the training ratings sorted by user, user u's at user_start[u] .. user_start[u + 1].

@group(0) @binding(9) var<storage, read_write> prior: array<Factor>;
@group(0) @binding(10) var<storage, read> user_start: array<u32>;
@group(0) @binding(11) var<storage, read> item_start: array<u32>;
// Each item's users, item j's at item_start[j] .. item_start[j + 1].
@group(0) @binding(12) var<storage, read> item_users: array<u32>;
// Each rating's error in rating units, by the ratings' order.
@group(0) @binding(13) var<storage, read_write> errors: array<f32>;
// Each user's Σ ε·q_i over its ratings (K4 vec4s a user), and Σ |q_i|².
@group(0) @binding(14) var<storage, read_write> shares: array<vec4<f32>>;
@group(0) @binding(15) var<storage, read_write> share_bound: array<f32>;
// Each item's |q_j|² in rating units.
@group(0) @binding(16) var<storage, read_write> item_norm: array<f32>;
// y, K4 vec4s an item.
@group(0) @binding(17) var<storage, read_write> item_vectors: array<vec4<f32>>;
// Each item's factor of λ in y's decay: its regularisation weight × ITEM_REG × Σ |N(u)|.
@group(0) @binding(18) var<storage, read> item_implicit_reg: array<f32>;

const IMPLICIT_WG: u32 = 64u;

fn user_prior(index: u32) -> vec4<f32> {
    return vec4<f32>(prior[index]);
}

fn inverse_sqrt_count(u: u32) -> f32 {
    return 1.0 / sqrt(f32(user_start[u + 1u] - user_start[u]));
}

@compute @workgroup_size(IMPLICIT_WG)
fn implicit_item_norms(@builtin(global_invocation_id) id: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>) {
    let items = arrayLength(&item_norm);
    for (var j = id.x; j < items; j += groups.x * IMPLICIT_WG) {
        var s = 0.0;
        for (var f = 0u; f < K4; f++) {
            let q = vec4<f32>(item_factors[j * K4 + f]);
            s += dot(q, q);
        }
        item_norm[j] = s * params.error_scale * params.error_scale;
    }
}

// Each rating's error with the epoch's final factors (unclipped, as in training).
@compute @workgroup_size(IMPLICIT_WG)
fn implicit_errors(@builtin(global_invocation_id) id: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>) {
    let count = arrayLength(&errors);
    for (var t = id.x; t < count; t += groups.x * IMPLICIT_WG) {
        let r = ratings[t];
        var s = 0.0;
        for (var f = 0u; f < K4; f++) {
            s += dot(vec4<f32>(user_factors[r.user * K4 + f]), vec4<f32>(item_factors[r.item * K4 + f]));
        }
        var prediction = params.mean + s;
        if (params.use_biases != 0u) {
            prediction += user_bias[r.user] + item_bias[r.item];
        }
        errors[t] = (r.value - prediction) * params.error_scale;
    }
}

@compute @workgroup_size(IMPLICIT_WG)
fn implicit_shares(@builtin(global_invocation_id) id: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>) {
    let users = arrayLength(&user_start) - 1u;
    for (var x = id.x; x < users * K4; x += groups.x * IMPLICIT_WG) {
        let u = x / K4;
        var share = vec4<f32>(0.0);
        var bound = 0.0;
        for (var t = user_start[u]; t < user_start[u + 1u]; t++) {
            let i = ratings[t].item;
            share += errors[t] * vec4<f32>(item_factors[i * K4 + x % K4]);
            bound += item_norm[i];
        }
        shares[x] = share;
        if (x % K4 == 0u) {
            share_bound[u] = bound;
        }
    }
}

// y_j += (g_j − ρ_j y_j) / (1/(ITEM_STEP·lr) + CURVATURE·c_j + ρ_j), as ImplicitFeedback::after_epoch.
@compute @workgroup_size(IMPLICIT_WG)
fn implicit_items(@builtin(global_invocation_id) id: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>) {
    let items = arrayLength(&item_start) - 1u;
    for (var x = id.x; x < items * K4; x += groups.x * IMPLICIT_WG) {
        let j = x / K4;
        var gradient = vec4<f32>(0.0);
        var curvature = 0.0;
        for (var t = item_start[j]; t < item_start[j + 1u]; t++) {
            let u = item_users[t];
            gradient += inverse_sqrt_count(u) * shares[u * K4 + x % K4];
            curvature += share_bound[u];
        }
        let decay = params.reg * item_implicit_reg[j];
        let y = item_vectors[x];
        item_vectors[x] = y + (gradient - decay * y) / (1.0 / (ITEM_STEP * params.learning_rate) + CURVATURE * curvature + decay);
    }
}

// z afresh, and w moved by its change.
@compute @workgroup_size(IMPLICIT_WG)
fn implicit_users(@builtin(global_invocation_id) id: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>) {
    let users = arrayLength(&user_start) - 1u;
    for (var x = id.x; x < users * K4; x += groups.x * IMPLICIT_WG) {
        let u = x / K4;
        let first = user_start[u];
        let end = user_start[u + 1u];
        var sum = vec4<f32>(0.0);
        for (var t = first; t < end; t++) {
            sum += item_vectors[ratings[t].item * K4 + x % K4];
        }
        var fresh = vec4<f32>(0.0);
        if (end > first) {
            fresh = inverse_sqrt_count(u) * sum;
        }
        let old = vec4<f32>(prior[x]);
        user_factors[x] = Factor(vec4<f32>(user_factors[x]) + fresh - old);
        prior[x] = Factor(fresh);
    }
}
