//! (skeleton; see the module owner's branch)
