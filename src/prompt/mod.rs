//! Pure message builders: what planbox asks a model, as a function of the goal, the inputs'
//! profiles, the plan and what earlier attempts did. No IO.

mod coding;
mod planning;
pub mod variables;

pub use coding::*;
pub use planning::*;
