// Alternating least squares for the one-class loss (src/cpu/als.rs says what it solves): the
// Gramian of the fixed side, then each row's normal equations
//   (w0·G + Σ_events (c − w0)·q qᵀ + λ_row·I) x = Σ_events c·q
// by conjugate gradient from the row as it stands, one workgroup a row. The CPU's solver does
// the same arithmetic in another order, so the two agree to rounding (tests/gpu.rs).

struct AlsParams {
    // Rows of the side being solved, rows of the fixed side, the rank.
    rows: u32,
    others: u32,
    k: u32,
    steps: u32,
    // w0, the weight of each pair without an event.
    unobserved_weight: f32,
    // The first row of the band solved here (rows, start and lambda are the band's).
    first_row: u32,
}

@group(0) @binding(0) var<uniform> params: AlsParams;
// The side being solved, k floats a row.
@group(0) @binding(1) var<storage, read_write> rows: array<f32>;
// The fixed side.
@group(0) @binding(2) var<storage, read> other: array<f32>;
// The fixed side's Gramian, k×k.
@group(0) @binding(3) var<storage, read_write> gram: array<f32>;
// Row r's events (r counted from the band's first row): other rows index[start[r] ..
// start[r + 1]], confidences weight[...].
@group(0) @binding(4) var<storage, read> start: array<u32>;
@group(0) @binding(5) var<storage, read> index: array<u32>;
@group(0) @binding(6) var<storage, read> weight: array<f32>;
// λ of each row (the frequency-scaled regularisation, from the host).
@group(0) @binding(7) var<storage, read> lambda: array<f32>;

const WG: u32 = 64u;
// The largest rank this kernel solves (the host refuses larger).
const MAX_K: u32 = 256u;

var<workgroup> x: array<f32, MAX_K>;
var<workgroup> r: array<f32, MAX_K>;
var<workgroup> p: array<f32, MAX_K>;
var<workgroup> ap: array<f32, MAX_K>;
var<workgroup> partial: array<f32, WG>;

// G[a][b] = Σ_j other[j][a]·other[j][b], one thread an entry, one chunk of the other side's
// rows a dispatch (rows first_row .. first_row + rows): the first chunk sets G, the others add
// to it. Mesa's lavapipe ends a long loop early without a word (tens of thousands of rows in
// one loop came out wrong), and a long dispatch can trip a desktop driver's watchdog.
@compute @workgroup_size(16, 16)
fn gramian(@builtin(global_invocation_id) id: vec3<u32>) {
    let k = params.k;
    if (id.x >= k || id.y >= k) {
        return;
    }
    var s = 0.0;
    for (var j = params.first_row; j < params.first_row + params.rows; j++) {
        s += other[j * k + id.x] * other[j * k + id.y];
    }
    if (params.first_row == 0u) {
        gram[id.x * k + id.y] = s;
    } else {
        gram[id.x * k + id.y] += s;
    }
}

// The workgroup's sum of `v`, the same value in every thread.
fn total(v: f32, local: u32) -> f32 {
    partial[local] = v;
    workgroupBarrier();
    for (var s = WG / 2u; s > 0u; s >>= 1u) {
        if (local < s) {
            partial[local] += partial[local + s];
        }
        workgroupBarrier();
    }
    return workgroupUniformLoad(&partial[0]);
}

fn other_at(j: u32, d: u32) -> f32 {
    return other[j * params.k + d];
}

// ap = A·v, v being x (which 0) or p (which 1): the Gramian's and λ's terms, then each event's.
fn apply(row: u32, which: u32, local: u32) {
    let k = params.k;
    let w0 = params.unobserved_weight;
    for (var d = local; d < k; d += WG) {
        var s = 0.0;
        for (var e = 0u; e < k; e++) {
            s += gram[d * k + e] * select(p[e], x[e], which == 0u);
        }
        ap[d] = w0 * s + lambda[row] * select(p[d], x[d], which == 0u);
    }
    for (var e = start[row]; e < start[row + 1u]; e++) {
        let j = index[e];
        var part = 0.0;
        for (var d = local; d < k; d += WG) {
            part += other_at(j, d) * select(p[d], x[d], which == 0u);
        }
        let t = (weight[e] - w0) * total(part, local);
        for (var d = local; d < k; d += WG) {
            ap[d] += t * other_at(j, d);
        }
    }
    workgroupBarrier();
}

@compute @workgroup_size(64)
fn solve(@builtin(workgroup_id) group: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>, @builtin(local_invocation_index) local: u32) {
    let row = group.x + group.y * groups.x;
    if (row >= params.rows) {
        return;
    }
    let k = params.k;
    for (var d = local; d < k; d += WG) {
        x[d] = rows[(params.first_row + row) * k + d];
    }
    workgroupBarrier();
    apply(row, 0u, local);
    // r = b − A·x, b = Σ c·q; p = r.
    for (var d = local; d < k; d += WG) {
        var b = 0.0;
        for (var e = start[row]; e < start[row + 1u]; e++) {
            b += weight[e] * other_at(index[e], d);
        }
        r[d] = b - ap[d];
        p[d] = r[d];
    }
    var part = 0.0;
    for (var d = local; d < k; d += WG) {
        part += r[d] * r[d];
    }
    var rr = total(part, local);
    for (var step = 0u; step < params.steps; step++) {
        if (rr <= 1.17549435e-38) {
            break;
        }
        apply(row, 1u, local);
        part = 0.0;
        for (var d = local; d < k; d += WG) {
            part += p[d] * ap[d];
        }
        let alpha = rr / total(part, local);
        part = 0.0;
        for (var d = local; d < k; d += WG) {
            x[d] += alpha * p[d];
            r[d] -= alpha * ap[d];
            part += r[d] * r[d];
        }
        let next = total(part, local);
        let beta = next / rr;
        for (var d = local; d < k; d += WG) {
            p[d] = r[d] + beta * p[d];
        }
        rr = next;
        workgroupBarrier();
    }
    for (var d = local; d < k; d += WG) {
        rows[(params.first_row + row) * k + d] = x[d];
    }
}
