//! The lab exercise, reproduced exactly: SVD optimum, dense SGD, masked completion.

use gpumf::lab::{exercise_mask, exercise_matrix, sgd_factorise, sgd_factorise_masked, svd_factorise};
use gpumf::metrics::{frobenius_error, masked_loss};
use gpumf::svd::truncated_svd;

const SVD_LOSS: f64 = 0.3492 * 0.3492;

#[test]
fn svd_singular_values_and_rank2_loss_match_the_exercise() {
    let a = exercise_matrix();
    let svd = truncated_svd(a.view(), 2);
    let s = &svd.all_singular_values;
    assert!((s[0] - 5.3339).abs() < 1e-3 && (s[1] - 0.6959).abs() < 1e-3 && (s[2] - 0.3492).abs() < 1e-3, "{s:?}");
    let (us, v) = svd_factorise(a.view(), 2);
    let loss = frobenius_error(a.view(), us.dot(&v.t()).view());
    assert!((loss - s[2] * s[2]).abs() < 1e-9, "loss {loss} vs sigma3^2 {}", s[2] * s[2]);
    assert!((loss - 0.1219).abs() < 1e-3);
    assert!((svd.optimal_loss() - loss).abs() < 1e-9);
}

fn sgd_losses(epochs: usize) -> (f64, Vec<f64>) {
    let a = exercise_matrix();
    let (us, v) = svd_factorise(a.view(), 2);
    let svd_loss = frobenius_error(a.view(), us.dot(&v.t()).view());
    let losses = (0..20)
        .map(|seed| {
            let (u, v) = sgd_factorise(a.view(), 2, epochs, 0.01, seed);
            frobenius_error(a.view(), u.dot(&v.t()).view())
        })
        .collect();
    (svd_loss, losses)
}

#[test]
fn sgd_at_1000_epochs_has_median_within_1_percent_and_never_beats_svd() {
    let (svd_loss, mut losses) = sgd_losses(1000);
    assert!((svd_loss - SVD_LOSS).abs() < 1e-3);
    for l in &losses {
        assert!(*l >= svd_loss - 1e-9, "SGD loss {l} below the SVD optimum {svd_loss}");
    }
    losses.sort_by(f64::total_cmp);
    let median = (losses[9] + losses[10]) / 2.0;
    assert!(median <= svd_loss * 1.01, "median {median} vs SVD {svd_loss}");
}

#[test]
fn sgd_at_3000_epochs_every_seed_within_a_tenth_of_a_percent() {
    let (svd_loss, losses) = sgd_losses(3000);
    for (seed, l) in losses.iter().enumerate() {
        assert!(*l >= svd_loss - 1e-9 && *l <= svd_loss * 1.001, "seed {seed}: loss {l} vs SVD {svd_loss}");
    }
}

#[test]
fn masked_sgd_fits_the_observed_entries_and_completes_the_rest() {
    let (a, mask) = (exercise_matrix(), exercise_mask());
    for seed in 0..20 {
        let (u, v) = sgd_factorise_masked(a.view(), mask.view(), 2, 3000, 0.01, seed);
        let completed = u.dot(&v.t());
        let loss = masked_loss(a.view(), completed.view(), mask.view());
        assert!(loss <= 1e-3, "seed {seed}: observed-entry loss {loss}");
        if seed == 0 {
            println!(
                "completed (1,0) = {:.4} (true 3.3359), (2,1) = {:.4} (true 0.5301)",
                completed[[1, 0]],
                completed[[2, 1]]
            );
        }
    }
}

#[test]
fn sgd_is_reproducible_for_a_seed() {
    let a = exercise_matrix();
    assert_eq!(sgd_factorise(a.view(), 2, 50, 0.01, 7), sgd_factorise(a.view(), 2, 50, 0.01, 7));
    assert_ne!(sgd_factorise(a.view(), 2, 50, 0.01, 7), sgd_factorise(a.view(), 2, 50, 0.01, 8));
}
