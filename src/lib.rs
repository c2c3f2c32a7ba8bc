//! gpumf: masked matrix factorisation of sparse rating data by SGD, on the GPU (WGSL compute
//! shaders through wgpu) and on the CPU, validated against the truncated SVD.
//!
//! The path through the crate: [`data`] loads ratings into a [`problem::Problem`];
//! [`model::Params`] configures training; [`training::train`] runs a [`training::Backend`]
//! ([`cpu`] or [`gpu`], each a [`solver::Solver`] over the blocks of [`schedule`]) and returns
//! a [`model::Model`]; [`metrics`] scores it; [`svd`] gives
//! the dense optimum for validation; [`lab`] reproduces the classic exercise.

// The module docs explain the design to contributors, naming the private pieces that carry it
// (`cargo doc --document-private-items` renders them); a link to one is not a mistake.
#![allow(rustdoc::private_intra_doc_links)]

pub mod bench;
pub mod cache;
pub mod choice;
pub mod grid;
pub mod cpu;
pub mod data;
pub mod distributed;
pub mod ensemble;
mod fastmath;
mod error;
pub mod gpu;
pub mod interrupt;
pub mod job;
pub(crate) mod svdpp;
pub mod lab;
pub mod metrics;
pub mod model;
pub mod objective;
pub mod output;
pub mod problem;
pub mod ranking;
pub mod resources;
mod rng;
pub mod schedule;
pub mod search;
pub mod solver;
pub mod svd;
pub mod training;
pub mod update;
pub mod validate;
pub mod vector;

pub use error::{Error, Result};
