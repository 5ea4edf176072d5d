//! YAML values (SPEC §3.1, §3.2): parsing, the merge rules and rendering.
