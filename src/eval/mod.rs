//! Evaluation of parsed build files: generator expansion, `${var}`
//! interpolation and the static checks `b9 check` runs before any build.

pub mod check;
pub mod claims;
pub mod dirs;
pub mod env;
pub mod expand;
pub mod outputs;
pub mod plan;
pub mod subst;
pub mod unsubstituted;
