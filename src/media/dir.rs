//! `CI_DIR`: a copy of the tree with modes.
