//! ext4 file systems for `EmptyImage`: creation and population from a host directory.
