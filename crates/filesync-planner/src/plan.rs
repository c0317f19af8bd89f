//! The planning algorithm.

use crate::{Action, FolderState, PlanContext};

pub fn plan(_state: &FolderState, _ctx: &PlanContext) -> Vec<Action> {
    Vec::new()
}
