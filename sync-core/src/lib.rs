//! Haven client engine (see issue 3). The public API grows here.
