// Pairwise ranking (BPR) for the one-class losses, composed after sgd.wgsl in place of its
// update when the loss is pairwise. A record names an event (user, item) and, in its third word
// (the rating's value, as bits), the row the host drew against it: an item without an event of
// the user's (`bpr`), or a user without an event on the item (`bpr-columns`); UNKNOWN when
// none was drawn. The host draws them each epoch (src/update.rs, draw_pairs), so the CPU and
// the GPU pair the same rows. The loss's snippet defines which side is the anchor:
// anchor_of(r), positive_of(r), and the rows, biases and weights of each side. The step
// mirrors update.rs's pairwise_update: with x = s_a,positive − s_a,drawn and g = σ(−x),
//   anchor   += lr(g(q_pos − q_drawn) − w·λ·anchor)
//   q_pos    += lr(g·anchor − w·λ·q_pos)
//   q_drawn  += lr(−g·anchor − w·λ·q_drawn)
// and the other side's biases likewise. Groups of lanes take records as sgd_update does
// (update_stride).

struct Pair {
    anchor: array<vec4<f32>, CHUNKS>,
    positive: array<vec4<f32>, CHUNKS>,
    drawn: array<vec4<f32>, CHUNKS>,
    // This lane's shares of anchor·positive and anchor·drawn.
    dots: vec2<f32>,
}

fn load_pair(a: u32, pos: u32, neg: u32, lane: u32) -> Pair {
    var rows: Pair;
    var partial = vec2<f32>(0.0);
    for (var c = 0u; c < CHUNKS; c++) {
        let f = lane + c * LANES;
        if (f < K4) {
            rows.anchor[c] = anchor_row(a * K4 + f);
            rows.positive[c] = other_row(pos * K4 + f);
            rows.drawn[c] = other_row(neg * K4 + f);
            partial += vec2<f32>(dot(rows.anchor[c], rows.positive[c]), dot(rows.anchor[c], rows.drawn[c]));
        }
    }
    rows.dots = partial;
    return rows;
}

@compute @workgroup_size(WG)
fn pairwise_update(ids: GroupIds) {
    var sums = vec4<f32>(0.0);
    let lane = group_lane(ids);
    let lr = params.learning_rate;
    let biases = params.use_biases != 0u;
    let at = update_stride(ids);
    for (var base = at.first; at.first < at.groups && base < at.count; base += at.groups) {
        let i = base + group_offset(ids);
        var r = Rating(0u, 0u, 0.0);
        if (at.g < at.groups && i < at.count) {
            r = ratings[i];
        }
        let neg = bitcast<u32>(r.value);
        let live = at.g < at.groups && i < at.count && neg != UNKNOWN;
        let a = anchor_of(r);
        let pos = positive_of(r);
        var rows: Pair;
        var b_pos = 0.0;
        var b_neg = 0.0;
        if (live) {
            rows = load_pair(a, pos, neg, lane);
            if (biases) {
                b_pos = other_bias(pos);
                b_neg = other_bias(neg);
            }
        }
        let x = (group_sum(rows.dots.x, ids) - group_sum(rows.dots.y, ids)) + (b_pos - b_neg);
        if (!live) {
            continue;
        }
        let slopes = loss_slopes(x, 1.0);
        if (lane == 0u) {
            sums += loss_terms(x, 1.0);
        }
        let step = slopes.x;
        let reg_a = anchor_weight(a) * params.reg;
        let w_pos = other_weight(pos);
        let w_neg = other_weight(neg);
        for (var c = 0u; c < CHUNKS; c++) {
            let f = lane + c * LANES;
            if (f < K4) {
                let p = rows.anchor[c];
                let qi = rows.positive[c];
                let qj = rows.drawn[c];
                set_anchor_row(a * K4 + f, p + lr * (step * (qi - qj) - reg_a * p));
                set_other_row(pos * K4 + f, qi + lr * (step * p - w_pos * params.reg * qi));
                set_other_row(neg * K4 + f, qj + lr * (-step * p - w_neg * params.reg * qj));
            }
        }
        if (biases && lane == 0u) {
            set_other_bias(pos, b_pos + lr * (step - w_pos * params.reg_bias * b_pos));
            set_other_bias(neg, b_neg + lr * (-step - w_neg * params.reg_bias * b_neg));
        }
    }
    add_workgroup_sums(sums, ids);
}
