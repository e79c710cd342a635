//! Loading and calling plugins.
