//! What a stack knows of the view it runs in.

use std::sync::Arc;

use crate::ids::{Endpoint, GroupName, Rank, View};

/// The view a stack is built for, and this member's place in it.
#[derive(Clone, Debug)]
pub struct ViewState {
    pub group: GroupName,
    pub endpoint: Endpoint,
    pub view: Arc<View>,
    pub rank: Rank,
}

impl ViewState {
    /// The state of `endpoint` in `view`; `None` if it is not a member.
    pub fn new(group: GroupName, endpoint: Endpoint, view: Arc<View>) -> Option<Self> {
        let rank = view.rank_of(endpoint)?;
        Some(ViewState { group, endpoint, view, rank })
    }

    /// A one-member view, as a layer sees it when a stack spec is checked.
    pub fn singleton(group: GroupName, endpoint: Endpoint) -> Self {
        let view = Arc::new(View::initial(vec![endpoint]));
        ViewState { group, endpoint, view, rank: Rank(0) }
    }
}
