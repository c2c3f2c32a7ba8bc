//! Command-line arguments and the commands behind them.

mod bench;
mod cv;
mod lab;
mod predict;
mod progress;
mod train;

use clap::{Args, Parser, Subcommand, ValueEnum};
use gpumf::choice::Choice;
use gpumf::data::{Duplicates, Format, LoadOptions};
use gpumf::gpu::Precision;
use gpumf::model::Params;
use gpumf::objective::OneClass;

#[derive(Parser)]
#[command(name = "gpumf", version, about = "Matrix factorisation of sparse rating data by SGD on the GPU (wgpu) and the CPU")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

// Parsed once per run, so the size of the largest variant does not matter.
#[allow(clippy::large_enum_variant)]
#[derive(Subcommand)]
enum Command {
    /// Train a model on a rating file and report its test error.
    Train(train::TrainArgs),
    /// Score a saved model on a rating file: the loss's own metrics, or ranking metrics
    /// (--metrics ndcg@20,recall@20).
    Eval(train::EvalArgs),
    /// Cross-validate: train and test on each of k seeded folds of a file, or on given fold
    /// files (e.g. MovieLens u1-u5), and report RMSE and MAE per fold with their spread.
    Cv(cv::CvArgs),
    /// Predict with a saved model: user-item pairs, top-N lists (one user, a file of users or
    /// all of them), or the items or users most like one.
    Predict(predict::PredictArgs),
    /// The lab exercise: dense SGD factorisation, truncated SVD and masked completion.
    Lab(lab::LabArgs),
    /// List the GPU adapters wgpu sees, with the features and limits that matter.
    Info(lab::InfoArgs),
    /// Check the GPU and CPU SGD trainers against the truncated SVD (the optimum).
    Validate(lab::ValidateArgs),
    /// Write a seeded synthetic rating set (low rank plus noise).
    Generate(bench::GenerateArgs),
    /// Time the trainers side by side on generated or real data.
    Bench(bench::BenchArgs),
}

pub fn run() -> anyhow::Result<()> {
    match Cli::parse().command {
        Command::Train(a) => train::train(a),
        Command::Eval(a) => train::eval(a),
        Command::Cv(a) => cv::cv(a),
        Command::Predict(a) => predict::predict(a),
        Command::Lab(a) => lab::lab(a),
        Command::Info(a) => lab::info(a),
        Command::Validate(a) => lab::validate(a),
        Command::Generate(a) => bench::generate(a),
        Command::Bench(a) => bench::bench(a),
    }
}

/// Where to train.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum BackendArg {
    /// A hardware GPU when wgpu finds one; otherwise the CPU, with a notice naming any
    /// software adapter passed over (lavapipe, llvmpipe: slower than the CPU trainer).
    Auto,
    /// The GPU, a software adapter included; an error when there is none.
    Gpu,
    /// The CPU trainer (--threads 1: sequential; more: conflict-free parallel blocks).
    Cpu,
}

/// How rating files are read.
#[derive(Args, Clone, Debug)]
pub struct InputArgs {
    /// Rating-file format; detected from the content by default.
    #[arg(long, value_parser = choice::<Format>(), default_value = "auto")]
    pub format: Format,
    /// Skip malformed lines (and report how many) instead of stopping at the first.
    #[arg(long)]
    pub skip_bad_lines: bool,
    /// --format dense: the value that marks a missing entry, e.g. 99 (empty cells always do).
    #[arg(long, allow_hyphen_values = true)]
    pub missing: Option<String>,
    /// --format dense: leading columns that are not ratings, e.g. 1 for a count per user.
    #[arg(long, default_value_t = 0)]
    pub skip_columns: usize,
    /// A (user, item) pair rated more than once in a file: keep every rating, keep the last,
    /// average them, or stop with an error naming the lines. The load report counts them.
    #[arg(long, value_parser = choice::<Duplicates>(), default_value = "keep")]
    pub duplicates: Duplicates,
    /// Read ratings of this value and above as 1 and the rest as 0: explicit ratings as the
    /// two labels of a binary --loss (e.g. 4 for 4 and 5 stars liked), or with --loss ials or
    /// bpr as events (those below are no event).
    #[arg(long, allow_negative_numbers = true)]
    pub positive_threshold: Option<f32>,
    /// With --loss ials or bpr: the third column counts events (plays, clicks) or weighs them
    /// (0: no event); under ials each becomes a confidence as --confidence says. Repeated pairs
    /// add up with --duplicates sum.
    #[arg(long)]
    pub counts: bool,
    /// Which columns hold the user, the item and the rating (USER,ITEM[,RATING]; without a
    /// rating, each line is an event), by number from 1 (`--columns 1,2,4`: Last.fm's plays)
    /// or by the header's names (`--columns User-ID,ISBN,Book-Rating`), for delimited files
    /// laid out otherwise; further columns are ignored.
    #[arg(long)]
    pub columns: Option<gpumf::data::Columns>,
}

impl InputArgs {
    pub fn options(&self) -> LoadOptions {
        LoadOptions {
            format: self.format,
            skip_bad_lines: self.skip_bad_lines,
            missing: self.missing.clone(),
            skip_columns: self.skip_columns,
            split_column: None,
            duplicates: self.duplicates,
            positive_threshold: self.positive_threshold,
            counts: self.counts,
            columns: self.columns.clone(),
            max_bytes: None,
        }
    }
}

/// The model's hyper-parameters.
#[derive(Args, Clone, Debug)]
pub struct ParamArgs {
    /// Latent factors per user and item [default: 128].
    #[arg(long, short = 'k')]
    pub rank: Option<usize>,
    /// Passes over the training ratings [default: 40; with --loss ials, 15; with --loss bpr, 60].
    #[arg(long)]
    pub epochs: Option<usize>,
    /// Initial learning rate [default: 0.1; with --loss absolute, kl, logistic, hinge or
    /// squared-hinge, 0.02].
    #[arg(long, allow_negative_numbers = true)]
    pub lr: Option<f32>,
    /// Learning rate at epoch t is lr / (1 + lr_decay * t) [default: 0.7; with --loss bpr,
    /// absolute, kl, logistic, hinge or squared-hinge, 0.05].
    #[arg(long, allow_negative_numbers = true)]
    pub lr_decay: Option<f32>,
    /// L2 regularisation of the factors: of a user or item with 100 training ratings; one with n
    /// gets reg·√(100/n) (frequency-scaled), unless --constant-reg. With --loss ials, a row's λ
    /// is reg times its weight (its events' confidences plus --unobserved-weight for every
    /// other pair). [default: 0.09; with --loss ials, 0.025; with --loss bpr, 0.01]
    #[arg(long, allow_negative_numbers = true)]
    pub reg: Option<f32>,
    /// The same --reg and --reg-bias for every user and item, whatever its number of ratings.
    #[arg(long)]
    pub constant_reg: bool,
    /// Train this many models side by side from other seeds and average their predictions,
    /// kept as one model of rank models x rank (measured: 4 models gain 0.0006 RMSE on
    /// MovieLens 100k for 5 times the time).
    #[arg(long, default_value_t = Params::default().models)]
    pub models: usize,
    /// No SVD++ term. By default each user's factors are pulled toward what the items it
    /// rated say of it, learnt from all users (SVD++ style), rather than toward zero: three
    /// passes over the ratings after each epoch, and the model predicts as any other.
    /// (`--no-implicit`, its name before one-class data came, is still accepted.)
    #[arg(long, alias = "no-implicit")]
    pub no_svdpp: bool,
    /// L2 regularisation of the biases, scaled by the ratings as --reg is.
    #[arg(long, default_value_t = Params::default().reg_bias, allow_negative_numbers = true)]
    pub reg_bias: f32,
    /// The lab's pure p_u·q_i model: no global mean, no biases.
    #[arg(long)]
    pub no_biases: bool,
    /// Standard deviation of the initial factors (in rating units, see --no-scale).
    #[arg(long, default_value_t = Params::default().init_std, allow_negative_numbers = true)]
    pub init_std: f32,
    /// Take --lr, --reg and --init-std as they are, in the ratings' own units. By default they
    /// are in units of the ratings' spread (standard deviation), so the same settings suit
    /// 1-5 stars, 0.5-4 or -10..10 alike.
    #[arg(long)]
    pub no_scale: bool,
    /// What training minimises: `squared` error (the default; reports RMSE), `absolute` error
    /// (the median; reports MAE), `kl` (generalised KL divergence for non-negative values such as
    /// counts; non-negative factors), or for two-valued labels (0/1, -1/1, any two values)
    /// `logistic` (predict prints a probability), `hinge` or `squared-hinge` (predict prints the
    /// margin and the class), or for one-class events (plays, clicks, purchases: `user item` or
    /// `user item count` lines) `ials` (the weighted squared loss over every pair, trained by
    /// alternating least squares on the CPU or the GPU, with neither biases nor the SVD++ term)
    /// or `bpr` (pairwise ranking against sampled items without an event, SGD on the CPU or the
    /// GPU) or `bpr-columns` (each event against a sampled user without one on its item); all
    /// report NDCG@20.
    #[arg(long, value_parser = choice::<gpumf::objective::Loss>(), default_value = "squared")]
    pub loss: gpumf::objective::Loss,
    /// --loss ials: the weight of each user-item pair without an event (w0), against an
    /// event's confidence [default: 1.3·√(the share of user-item pairs the training data
    /// names), so sparser data weighs its unseen pairs less].
    #[arg(long, allow_negative_numbers = true)]
    pub unobserved_weight: Option<f32>,
    /// --loss ials: how an event's count c becomes its confidence: `linear` 1 + alpha·c, or
    /// `log` 1 + alpha·ln(1 + c/epsilon).
    #[arg(long, value_parser = choice::<gpumf::objective::Confidence>(), default_value = "linear")]
    pub confidence: gpumf::objective::Confidence,
    /// --loss ials: alpha of --confidence.
    #[arg(long, default_value_t = OneClass::default().alpha, allow_negative_numbers = true)]
    pub alpha: f32,
    /// --loss ials: epsilon of --confidence log.
    #[arg(long, default_value_t = OneClass::default().epsilon, allow_negative_numbers = true)]
    pub epsilon: f32,
    /// --loss ials: conjugate-gradient steps per row and half-epoch.
    #[arg(long, default_value_t = OneClass::default().cg_steps)]
    pub cg_steps: usize,
    /// Non-negative factors (LIBMF's --nmf): each factor is projected to ≥ 0 after every update,
    /// so each user and item is a sum of parts that only add. --loss kl implies it.
    #[arg(long)]
    pub nonneg: bool,
    /// L1 regularisation of the factors beside --reg's L2 (LIBMF's -l1), weighted per user and
    /// item as --reg is: each update shrinks every factor toward zero, and stops it there.
    #[arg(long, default_value_t = Params::default().l1, allow_negative_numbers = true)]
    pub l1: f32,
    /// Seed for the initial factors, the visiting order and random splits.
    #[arg(long, default_value_t = Params::default().seed)]
    pub seed: u64,
    /// Cut the rating matrix into this grid of blocks, users x items (`8` or `16x4`), the same
    /// on every backend. Default: one block where it fits; two per CPU thread and side.
    #[arg(long)]
    pub blocks: Option<gpumf::grid::GridSize>,
    /// Score the test set every N epochs and after the last (the training loss comes from the
    /// update pass every epoch, at no extra cost).
    #[arg(long, default_value_t = Params::default().eval_every)]
    pub eval_every: usize,
}

impl ParamArgs {
    /// The settings given, the rest the loss's defaults ([`Params::for_loss`]).
    pub fn params(&self) -> Params {
        let defaults = Params::for_loss(self.loss);
        Params {
            rank: self.rank.unwrap_or(defaults.rank),
            epochs: self.epochs.unwrap_or(defaults.epochs),
            learning_rate: self.lr.unwrap_or(defaults.learning_rate),
            lr_decay: self.lr_decay.unwrap_or(defaults.lr_decay),
            reg: self.reg.unwrap_or(defaults.reg),
            frequency_reg: !self.constant_reg,
            reg_bias: self.reg_bias,
            biases: defaults.biases && !self.no_biases,
            init_std: self.init_std,
            seed: self.seed,
            blocks: self.blocks,
            eval_every: self.eval_every,
            models: self.models,
            scale: !self.no_scale,
            svdpp: defaults.svdpp && !self.no_svdpp,
            loss: self.loss,
            nonneg: self.nonneg,
            l1: self.l1,
            one_class: OneClass {
                // A job scales it to the data where not given (Job::unobserved_weight).
                unobserved_weight: self.unobserved_weight.unwrap_or(OneClass::default().unobserved_weight),
                confidence: self.confidence,
                alpha: self.alpha,
                epsilon: self.epsilon,
                cg_steps: self.cg_steps,
            },
        }
    }
}

/// A parser for one of the library's named choices, with each name's help in `--help`.
pub fn choice<T: Choice + Send + Sync>() -> impl clap::builder::TypedValueParser<Value = T> {
    use clap::builder::{PossibleValue, PossibleValuesParser, TypedValueParser};
    PossibleValuesParser::new(T::ALL.iter().map(|&(_, name, help)| PossibleValue::new(name).help(help)))
        .map(|name| T::named(&name).expect("clap accepts only the listed names"))
}

/// CPU threads, shared by the commands that train.
pub fn threads(requested: Option<usize>) -> anyhow::Result<usize> {
    Ok(gpumf::resources::threads(requested, "--threads", "threads")?)
}

/// The hyper-parameters and where training runs.
#[derive(Args, Clone, Debug)]
pub struct ModelArgs {
    #[command(flatten)]
    pub params: ParamArgs,
    /// Where to train.
    #[arg(long, value_enum, default_value = "auto")]
    pub backend: BackendArg,
    /// CPU threads: 1 runs the sequential, bit-reproducible trainer; more train
    /// blocks that share no user or item at once.
    /// Default: every core.
    #[arg(long)]
    pub threads: Option<usize>,
    /// How the GPU stores factors (arithmetic is f32 either way).
    #[arg(long, value_parser = choice::<Precision>(), default_value = "f32")]
    pub precision: Precision,
    #[command(flatten)]
    pub gpu: GpuTuningArgs,
}

/// GPU tuning knobs, for `train` and `bench`.
#[derive(Args, Clone, Debug)]
pub struct GpuTuningArgs {
    /// GPU: workgroups per update dispatch.
    #[arg(long)]
    pub workgroups: Option<u32>,
    /// GPU: users per block, e.g. so one block's rows fit the L2 cache.
    #[arg(long)]
    pub user_block_rows: Option<usize>,
    /// GPU: lanes of a subgroup per rating, a power of two up to the subgroup size
    /// (default: the fewest that hold a factor row in one vec4 each).
    #[arg(long)]
    pub lanes_per_rating: Option<u32>,
    /// GPU: the most gpumf allocates on the device (e.g. 512MiB, 8GiB). When ratings and factors
    /// need more, the ratings stay in host memory and stream through upload buffers each epoch.
    /// Default: the adapter's memory as its driver reports it, less a tenth (`gpumf info`).
    #[arg(long, value_parser = gpumf::resources::parse_size)]
    pub gpu_memory: Option<u64>,
    /// GPU: how streamed ratings reach the device (default: mapped where the adapter allows it).
    #[arg(long, value_parser = choice::<gpumf::gpu::Upload>())]
    pub upload: Option<gpumf::gpu::Upload>,
    /// GPU: ratings updated at once, at most (default: users·items/(users+items) of a block,
    /// so that Hogwild's write conflicts stay rare).
    #[arg(long)]
    pub in_flight: Option<u32>,
}

impl GpuTuningArgs {
    pub fn options(&self, precision: gpumf::gpu::Precision) -> gpumf::gpu::GpuOptions {
        gpumf::gpu::GpuOptions {
            precision,
            workgroups: self.workgroups,
            user_block_rows: self.user_block_rows,
            lanes_per_rating: self.lanes_per_rating,
            in_flight: self.in_flight,
            gpu_memory: self.gpu_memory,
            upload: self.upload,
            ..Default::default()
        }
    }
}

impl ModelArgs {
    pub fn params(&self) -> Params {
        self.params.params()
    }

    /// Where `--backend` asks to train.
    pub fn device(&self) -> gpumf::job::Device {
        match self.backend {
            BackendArg::Auto => gpumf::job::Device::Auto,
            BackendArg::Cpu => gpumf::job::Device::Cpu,
            BackendArg::Gpu => gpumf::job::Device::Gpu,
        }
    }

    pub fn threads(&self) -> anyhow::Result<usize> {
        threads(self.threads)
    }
}

/// Output controls shared by commands that train.
#[derive(Args, Clone, Debug)]
pub struct OutputArgs {
    /// Print a machine-readable JSON summary on stdout instead of the text report.
    #[arg(long)]
    pub json: bool,
    /// No progress bar and no per-epoch lines.
    #[arg(long, short)]
    pub quiet: bool,
}

#[cfg(test)]
mod tests {
    use super::Cli;
    use clap::CommandFactory;

    /// `--help` is the manual at hand: every flag of every command says what it does.
    #[test]
    fn every_flag_has_help() {
        let cli = Cli::command();
        cli.clone().debug_assert();
        let silent: Vec<String> = cli
            .get_subcommands()
            .flat_map(|command| command.get_arguments().filter(|a| a.get_help().is_none() && !a.is_positional()).map(move |a| format!("{} --{}", command.get_name(), a.get_id())))
            .collect();
        assert!(silent.is_empty(), "flags without help: {silent:?}");
    }
}
