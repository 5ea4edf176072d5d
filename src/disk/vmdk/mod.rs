//! VMDK: monolithicSparse and streamOptimized, written and read in-project.
