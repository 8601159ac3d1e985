#![doc = include_str!("../README.md")]
#![warn(missing_docs)]

mod catalog;
pub mod check;
mod error;
pub mod estimate;
mod health;
mod money;
mod plan;
mod task;

pub use catalog::{
    BUILTIN_CATALOG, ModelPrice, ModelRef, OffPeak, PeakSchedule, PriceCatalog, PriceTier, Rates,
};
pub use error::{Result, RouteError};
pub use health::{
    Admission, Circuit, HealthConfig, HealthSnapshot, HealthTracker, Outcome, ProviderHealth,
};
pub use money::{Money, Rate};
pub use plan::{
    Candidate, KeyInfo, Preferences, Rank, RoutePlan, RoutePlanner, RouteRequest, SkipReason,
    Skipped,
};
pub use task::Task;
